"""Labelled uploads written straight to the uploads bucket, as the presigned POST leaves them:
a real image with its uploader in the object's metadata (x-amz-meta-uploader), which the
upload counter checks before it counts the object (med_classifier.domain.upload_checks)."""

from __future__ import annotations

import io

UPLOADER = "0f6e8a52-1c5d-4e0b-9d7a-2b6c3e4f5a61"  # a Cognito user's sub


def labelled_png(size: tuple[int, int] = (32, 32)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (120, 40, 40)).save(out, "PNG")
    return out.getvalue()


def put_upload(s3, bucket: str, key: str, body: bytes | None = None, uploader: str | None = UPLOADER) -> None:
    """Puts an object under `key` that the counter counts (by default: a PNG and an uploader);
    uploader=None leaves the metadata out."""
    metadata = {} if uploader is None else {"uploader": uploader}
    content_type = "image/jpeg" if key.endswith(".jpg") else "image/png"
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=labelled_png() if body is None else body,
        ContentType=content_type,
        Metadata=metadata,
    )
