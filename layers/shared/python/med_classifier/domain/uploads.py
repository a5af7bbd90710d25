"""Labelled image uploads for retraining: the upload layout, the presigned-POST ticket a
client gets, and the objects an S3 notification announces.

The client never streams the image through Lambda (6 MB payload limit, cost): it gets
a short-lived presigned POST whose policy pins the key, the content type and the size.
An UploadSigner adapter signs it; S3 enforces the policy (moto does not, so the tests
check the policy itself).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

from .errors import InvalidInput, NotSignedIn, UnknownModel, UnsupportedMediaType
from .manifest import Manifest, is_valid_model_id

if TYPE_CHECKING:
    from .ports import UploadSigner

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    expires_in: int = DEFAULT_EXPIRES_SECONDS


def presigned_upload(
    signer: UploadSigner,
    manifest: Manifest | None,
    model_id: str,
    label: str,
    content_type: str,
    limits: UploadLimits,
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    *,
    uploader: str,
) -> UploadTicket:
    """A presigned POST for one labelled image of `model_id` (its production manifest
    says which labels exist), whose policy fixes the object's `uploader` metadata (the caller's
    Cognito sub: who wrote this training data). Raises UnknownModel, InvalidInput,
    UnsupportedMediaType, or NotSignedIn without an uploader."""
    if not uploader:
        raise NotSignedIn("Only a signed-in user may upload training data: the upload records who sent it.")
    if manifest is None:
        raise UnknownModel(f"No model named {model_id!r}. GET /models lists the models.")
    if manifest.input.kind != "image":
        raise InvalidInput(f"Model {model_id!r} takes feature rows; uploads are labelled images for image models.")
    if label not in manifest.classes:
        raise InvalidInput(
            f"Unknown label {label!r} for {model_id!r}; expected one of {manifest.classes}.",
            details=[{"labels": manifest.classes}],
        )
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in UPLOAD_CONTENT_TYPES:
        raise UnsupportedMediaType(f"content_type {content_type!r} is not accepted: use image/jpeg or image/png.")
    key = upload_key(model_id, label, new_id(), UPLOAD_CONTENT_TYPES[media_type])
    url, fields = signer.presigned_post(key, media_type, limits.max_bytes, limits.expires_in, uploader)
    return UploadTicket(
        model_id=model_id,
        label=label,
        key=key,
        url=url,
        fields=fields,
        content_type=media_type,
        max_bytes=limits.max_bytes,
        expires_in=limits.expires_in,
    )


# --- what an S3 notification announces -------------------------------------------------


@dataclass(frozen=True)
class UploadedObject:
    bucket: str
    key: str
    model: str
    label: str
    size: int = 0


@dataclass(frozen=True)
class CounterState:
    model: str
    total: int = 0
    pending: int = 0
    active_job: str | None = None
    last_job: str | None = None
    # The active job's claim: when it was taken (epoch seconds), when another starter may take
    # it over, and how many uploads it took from pending (given back if the job never starts).
    claimed_at: float | None = None
    lease_expires_at: float | None = None
    claimed_uploads: int = 0


@dataclass(frozen=True)
class Claim:
    """A won claim: the uploads it took from pending, and the job whose expired lease it took over."""

    uploads: int
    took_over: str | None = None


def parse_upload_key(bucket: str, key: str, size: int = 0) -> UploadedObject | None:
    """uploads/<model>/<label>/<name>.<jpg|png> → UploadedObject; anything else → None."""
    parts = key.split("/")
    if len(parts) != 4 or f"{parts[0]}/" != UPLOADS_PREFIX or not is_valid_model_id(parts[1]) or not parts[2]:
        return None
    stem, _, extension = parts[3].rpartition(".")
    if not stem or extension.lower() not in set(UPLOAD_CONTENT_TYPES.values()):
        return None
    return UploadedObject(bucket=bucket, key=key, model=parts[1], label=parts[2], size=size)


def uploads_in_notification(body: str, bucket: str | None = None) -> list[UploadedObject]:
    """The uploaded objects an S3 event notification (an SQS message body) announces.
    S3's s3:TestEvent and objects outside the uploads layout announce none; with `bucket`,
    records from any other bucket are ignored and logged (the queue's policy admits the
    whole account). Raises ValueError for a body that is not an S3 notification at all."""
    try:
        message = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"message body is not JSON: {exc}") from None
    except RecursionError:  # S3 never nests this deep: not a notification
        raise ValueError("message body is nested too deeply to be an S3 event notification") from None
    if not isinstance(message, dict):
        raise ValueError("message body is not an S3 event notification")
    if message.get("Event") == "s3:TestEvent":
        return []
    if not isinstance(message.get("Records"), list):
        raise ValueError("message body is not an S3 event notification (no Records)")
    found = []
    for index, record in enumerate(message["Records"]):
        if not isinstance(record, dict):
            raise ValueError(f"Records[{index}] is not an object")
        if not str(record.get("eventName")).startswith("ObjectCreated:"):
            continue
        try:
            record_bucket, created = record["s3"]["bucket"]["name"], record["s3"]["object"]
            # S3 URL-encodes keys in notifications (spaces as '+').
            key, size = unquote_plus(created["key"]), int(created.get("size") or 0)
        except (AttributeError, KeyError, OverflowError, TypeError, ValueError) as exc:
            raise ValueError(
                f"Records[{index}] is an ObjectCreated record without s3.bucket.name and "
                f"s3.object.key: {type(exc).__name__}"
            ) from None
        if bucket is not None and record_bucket != bucket:
            log.warning("ignoring Records[%d]: bucket %r is not the uploads bucket %r", index, record_bucket, bucket)
            continue
        upload = parse_upload_key(record_bucket, key, size)
        if upload is not None:
            found.append(upload)
    return found
