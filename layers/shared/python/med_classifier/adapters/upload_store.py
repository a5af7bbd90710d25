"""The UploadStore adapter: the uploads bucket's objects as the upload counter checks them
(HeadObject, a ranged GetObject) and moves the refused ones to quarantine (CopyObject, then
DeleteObject of the original).

A missing object is UploadGone: S3 answers 404 for it because the function may list the
bucket (without s3:ListBucket it would answer 403, indistinguishable from a missing permission).
Every other error propagates: the message is retried, and a good object is never quarantined
because S3 hiccuped.
"""

from __future__ import annotations

from ..domain.upload_checks import REASON_KEY, UPLOADER_KEY, StoredUpload, UploadGone
from .aws_clients import BucketAdapter

_MISSING = {"404", "NoSuchKey", "NotFound"}
# S3 user metadata holds at most 2 KB: an uploader (a Cognito sub is 36 characters) is kept to this.
MAX_UPLOADER_CHARS = 256


class S3UploadStore(BucketAdapter):
    def _gone(self, exc: Exception) -> bool:
        response = getattr(exc, "response", None) or {}
        return str(response.get("Error", {}).get("Code")) in _MISSING

    def stat(self, key: str) -> StoredUpload:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.ClientError as exc:
            if self._gone(exc):
                raise UploadGone(key) from None
            raise
        return StoredUpload(
            size=int(head.get("ContentLength", 0)),
            metadata=dict(head.get("Metadata") or {}),
            content_type=head.get("ContentType") or "",
        )

    def read_prefix(self, key: str, length: int) -> bytes:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes=0-{length - 1}")["Body"]
        except self.client.exceptions.ClientError as exc:
            if self._gone(exc):
                raise UploadGone(key) from None
            raise
        with body:
            return body.read(length)

    def quarantine(self, key: str, target: str, reason: str, stored: StoredUpload) -> None:
        """Copies the object to `target` with the reason in its metadata, then deletes it.
        Repeated after a crash between the two, the copy is rewritten and the delete done."""
        metadata = {REASON_KEY: reason}
        if stored.uploader:
            metadata[UPLOADER_KEY] = stored.uploader[:MAX_UPLOADER_CHARS]
        try:
            self.client.copy_object(
                Bucket=self.bucket,
                Key=target,
                CopySource={"Bucket": self.bucket, "Key": key},
                MetadataDirective="REPLACE",
                Metadata=metadata,
                ContentType=stored.content_type or "application/octet-stream",
                TaggingDirective="REPLACE",  # no tags: copying them would need s3:GetObjectTagging
            )
        except self.client.exceptions.ClientError as exc:
            if self._gone(exc):
                raise UploadGone(key) from None
            raise
        self.client.delete_object(Bucket=self.bucket, Key=key)
