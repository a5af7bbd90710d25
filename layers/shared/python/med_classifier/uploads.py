"""Labelled image uploads for retraining: a presigned POST straight to S3.

The client never streams the image through Lambda (6 MB payload limit, cost): it gets
a short-lived presigned POST whose policy pins the key, the content type and the size.
S3 enforces the policy; moto does not, so the tests check the policy itself.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Callable

from .errors import InvalidInput, UnknownModel, UnsupportedMediaType
from .manifest import Manifest

UPLOAD_CONTENT_TYPES = {"image/jpeg": "jpg", "image/png": "png"}
UPLOADS_PREFIX = "uploads/"
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
DEFAULT_EXPIRES_SECONDS = 900


@dataclass(frozen=True)
class UploadTicket:
    model_id: str
    label: str
    key: str
    url: str
    fields: dict[str, str]
    content_type: str
    max_bytes: int
    expires_in: int


def upload_key(model_id: str, label: str, upload_id: str, extension: str) -> str:
    return f"{UPLOADS_PREFIX}{model_id}/{label}/{upload_id}.{extension}"


def upload_limits() -> tuple[int, int]:
    return (int(os.environ.get("MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES)),
            int(os.environ.get("UPLOAD_URL_EXPIRES_SECONDS", DEFAULT_EXPIRES_SECONDS)))


def presigned_upload(client, bucket: str, manifest: Manifest | None, model_id: str, label: str,
                     content_type: str, new_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> UploadTicket:
    """A presigned POST for one labelled image of `model_id` (its production manifest
    says which labels exist). Raises UnknownModel, InvalidInput or UnsupportedMediaType."""
    if manifest is None:
        raise UnknownModel(f"No model named {model_id!r}. GET /models lists the models.")
    if manifest.input.kind != "image":
        raise InvalidInput(f"Model {model_id!r} takes feature rows; uploads are labelled images for image models.")
    if label not in manifest.classes:
        raise InvalidInput(f"Unknown label {label!r} for {model_id!r}; expected one of {manifest.classes}.",
                           details=[{"labels": manifest.classes}])
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in UPLOAD_CONTENT_TYPES:
        raise UnsupportedMediaType(f"content_type {content_type!r} is not accepted: use image/jpeg or image/png.")
    max_bytes, expires_in = upload_limits()
    key = upload_key(model_id, label, new_id(), UPLOAD_CONTENT_TYPES[media_type])
    post = client.generate_presigned_post(
        Bucket=bucket, Key=key, Fields={"Content-Type": media_type},
        Conditions=[{"bucket": bucket}, ["eq", "$key", key], ["eq", "$Content-Type", media_type],
                    ["content-length-range", 1, max_bytes]],
        ExpiresIn=expires_in)
    return UploadTicket(model_id=model_id, label=label, key=key, url=post["url"], fields=post["fields"],
                        content_type=media_type, max_bytes=max_bytes, expires_in=expires_in)
