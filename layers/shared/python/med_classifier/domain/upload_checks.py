"""An uploaded object is checked before it counts toward retraining: it carries its uploader
and is a JPEG or PNG image within the upload limits. One that fails is moved to the
quarantine prefix with the reason and never counted, so training never reads it.

Only the header is read (the first bytes of the object; more only when a JPEG's frame header
lies further in): the counter's layer has no Pillow, and decoding is the training job's work.
The object store is an UploadStore (domain.ports): S3 on AWS, a dict in unit tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import InvalidInput
from .image_files import ImageHeader, InvalidImageHeader, TruncatedImageHeader, image_header
from .preprocessing import DEFAULT_MAX_PIXELS
from .uploads import DEFAULT_MAX_UPLOAD_BYTES, UploadedObject

if TYPE_CHECKING:
    from .ports import UploadStore

QUARANTINE_PREFIX = "quarantine/"
UPLOADER_KEY = "uploader"  # S3 user metadata: the x-amz-meta-uploader header
REASON_KEY = "quarantine-reason"
# Enough for a PNG's IHDR and the segments before a JPEG's frame header in any camera's file;
# a JPEG whose frame header lies further in (large ICC profiles) is read on, 8 times more each time.
HEADER_READ_BYTES = 64 * 1024
ACCEPTED, QUARANTINED, GONE = "accepted", "quarantined", "gone"


class RefusedUpload(InvalidInput):
    """An uploaded object that fails a check; its message is the quarantine reason."""

    code = "refused_upload"


class UploadGone(Exception):
    """The object is no longer there: moved to quarantine by an earlier delivery, or deleted."""


@dataclass(frozen=True)
class UploadChecks:
    max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class StoredUpload:
    """What the store says about an object without reading it."""

    size: int
    metadata: Mapping[str, str]
    content_type: str = ""

    @property
    def uploader(self) -> str:
        return (self.metadata.get(UPLOADER_KEY) or "").strip()


@dataclass(frozen=True)
class Admission:
    upload: UploadedObject
    verdict: str  # ACCEPTED, QUARANTINED or GONE
    reason: str | None = None  # why it was quarantined

    @property
    def accepted(self) -> bool:
        return self.verdict == ACCEPTED


def quarantine_key(key: str) -> str:
    return QUARANTINE_PREFIX + key


def check_upload(stored: StoredUpload, read: Callable[[int], bytes], checks: UploadChecks) -> ImageHeader:
    """The image header of an object that passes every check. `read(n)` returns the object's
    first n bytes (fewer if it is shorter). Raises RefusedUpload with the reason."""
    if not stored.uploader:
        raise RefusedUpload("The object has no uploader: its metadata 'uploader' is missing or empty.")
    if stored.size == 0:
        raise RefusedUpload("The object is empty.")
    if stored.size > checks.max_bytes:
        raise RefusedUpload(f"The object is {stored.size} bytes; at most {checks.max_bytes} are accepted.")
    header = _read_header(stored.size, read)
    if header.pixels > checks.max_pixels:
        raise RefusedUpload(
            f"The image is {header.width}x{header.height} pixels ({header.pixels}); "
            f"at most {checks.max_pixels} pixels are accepted."
        )
    return header


def _read_header(size: int, read: Callable[[int], bytes]) -> ImageHeader:
    length = min(size, HEADER_READ_BYTES)
    while True:
        data = read(length)
        try:
            return image_header(data)
        except TruncatedImageHeader as exc:
            if len(data) < length or length >= size:  # the whole object was read
                raise RefusedUpload(exc.message) from None
        except InvalidImageHeader as exc:
            raise RefusedUpload(exc.message) from None
        length = min(size, length * 8)


class UploadGate:
    """Admits an uploaded object to counting, or moves it to quarantine. Idempotent: an object
    already moved (a redelivered notification) is GONE, neither counted nor an error. Any other
    error of the store propagates, so the message is retried and a good object never
    quarantined for a store's hiccup."""

    def __init__(self, store: UploadStore, checks: UploadChecks | None = None):
        self.store = store
        self.checks = checks or UploadChecks()

    def admit(self, upload: UploadedObject) -> Admission:
        try:
            stored = self.store.stat(upload.key)
            try:
                check_upload(stored, lambda length: self.store.read_prefix(upload.key, length), self.checks)
            except RefusedUpload as refused:
                self.store.quarantine(upload.key, quarantine_key(upload.key), refused.message, stored)
                return Admission(upload, QUARANTINED, refused.message)
        except UploadGone:
            return Admission(upload, GONE)
        return Admission(upload, ACCEPTED)
