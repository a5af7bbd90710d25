"""Turn an HTTP request body into image files: a raw JPEG/PNG body, or JSON with
base64 images. Size and count limits live here so every adapter enforces the same."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from ..domain.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

JSON = "application/json"
IMAGE_CONTENT_TYPES = ("image/jpeg", "image/png")
MEDIA_TYPES = (*IMAGE_CONTENT_TYPES, JSON)  # what the route accepts (request_guard checks it first)
MEDIA_TYPE_HINT = 'image/jpeg or image/png, or application/json with {"images": ["<base64>", ...]}'
# Lambda's synchronous payload limit is 6 MB and a binary body arrives base64-encoded
# (4/3 larger), so a raw image above ~4 MB could never reach the function on AWS.
DEFAULT_MAX_IMAGE_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_IMAGES = 16


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_images: int = DEFAULT_MAX_IMAGES


def _too_large(model_id: str, what: str, max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{what} is larger than {max_bytes} bytes. Send a smaller (downscaled) image, or upload it to S3 "
        f"with POST /models/{model_id}/uploads.",
        details=[{"max_image_bytes": max_bytes, "upload_path": f"/models/{model_id}/uploads"}],
    )


@dataclass(frozen=True)
class ImageRequest:
    images: list[bytes]
    explain: bool = False  # the JSON body's "explain" (a raw image body has only the query parameter)


def images_from_body(
    model_id: str, content_type: str | None, body: bytes, limits: ImageLimits = ImageLimits()
) -> ImageRequest:
    """The image files in a request body, and whether its JSON asks for explanations. Raises
    UnsupportedMediaType, PayloadTooLarge or InvalidInput; image bytes are not decoded here
    (preprocessing does that)."""
    max_bytes, max_images = limits.max_bytes, limits.max_images
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type in IMAGE_CONTENT_TYPES:
        if not body:
            raise InvalidInput("The request body is empty: send the image file as the body.")
        if len(body) > max_bytes:
            raise _too_large(model_id, "The image", max_bytes)
        return ImageRequest([body])
    if not media_type:
        raise UnsupportedMediaType(f"The request has no Content-Type: send {MEDIA_TYPE_HINT}.")
    if media_type != JSON:
        raise UnsupportedMediaType(f"Content-Type {media_type!r} is not accepted here: send {MEDIA_TYPE_HINT}.")
    # Base64 inflates by 4/3; JSON adds a little. Refuse before parsing a huge document.
    if len(body) > max_images * max_bytes * 4 // 3 + 4096:
        raise _too_large(model_id, "The request", max_bytes)
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # request_guard refuses these first, with a 400
        raise InvalidInput(
            "The body is neither an image nor JSON. Send image/jpeg or image/png, or "
            '{"images": ["<base64>", ...]} as application/json.'
        ) from None
    if (
        not isinstance(document, dict)
        or not isinstance(document.get("images"), list)
        or set(document) - {"images", "explain"}
    ):
        raise InvalidInput('Expected {"images": ["<base64 JPEG or PNG>", ...]} for an image model.')
    explain = document.get("explain", False)
    if not isinstance(explain, bool):
        raise InvalidInput('"explain" must be true or false.')
    encoded = document["images"]
    if not encoded:
        raise InvalidInput('"images" is empty: send at least one image.')
    if len(encoded) > max_images:
        raise PayloadTooLarge(
            f"{len(encoded)} images in one request; at most {max_images} are accepted.",
            details=[{"max_images": max_images}],
        )
    return ImageRequest(
        [_decode_base64(model_id, index, item, max_bytes) for index, item in enumerate(encoded)], explain
    )


def _decode_base64(model_id: str, index: int, item, max_bytes: int) -> bytes:
    if not isinstance(item, str):
        raise InvalidInput(f"images[{index}] must be a base64 string.")
    if item.startswith("data:"):  # data:image/png;base64,....
        item = item.split(",", 1)[1] if "," in item else ""
    if len(item) > max_bytes * 4 // 3 + 4:
        raise _too_large(model_id, f"images[{index}]", max_bytes)
    try:
        data = base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"images[{index}] is not valid base64.") from None
    if not data:
        raise InvalidInput(f"images[{index}] is empty.")
    if len(data) > max_bytes:  # the length check above is on the base64 text, a few bytes loose
        raise _too_large(model_id, f"images[{index}]", max_bytes)
    return data


def image_request_body() -> dict:
    """The OpenAPI requestBody of an image model's predict route: what images_from_body accepts."""
    from .schemas import ImagesRequest

    raw = {"schema": {"type": "string", "format": "binary"}}
    return {
        "required": True,
        "description": "One JPEG or PNG file as the body, or JSON with one or many base64-encoded files",
        "content": {
            **{media_type: raw for media_type in IMAGE_CONTENT_TYPES},
            "application/json": {"schema": ImagesRequest.model_json_schema()},
        },
    }
