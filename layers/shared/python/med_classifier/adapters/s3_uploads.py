"""The UploadSigner adapter: S3 presigned POSTs whose policy pins the bucket, the key, the
content type, the size and the uploader (user metadata `uploader`, read by the upload counter)."""

from __future__ import annotations

from .aws_clients import BucketAdapter

UPLOADER_FIELD = "x-amz-meta-uploader"  # S3 stores it as the object's user metadata "uploader"


class S3UploadSigner(BucketAdapter):
    @property
    def client_options(self) -> dict:
        from botocore.config import Config

        # Signature V4: S3 refuses V2-signed POST policies in newer regions and for KMS-encrypted buckets.
        return {"config": Config(signature_version="s3v4")}

    def presigned_post(
        self, key: str, content_type: str, max_bytes: int, expires_in: int, uploader: str
    ) -> tuple[str, dict[str, str]]:
        post = self.client.generate_presigned_post(
            Bucket=self.bucket,
            Key=key,
            Fields={"Content-Type": content_type, UPLOADER_FIELD: uploader},
            Conditions=[
                {"bucket": self.bucket},
                ["eq", "$key", key],
                ["eq", "$Content-Type", content_type],
                ["eq", f"${UPLOADER_FIELD}", uploader],
                ["content-length-range", 1, max_bytes],
            ],
            ExpiresIn=expires_in,
        )
        return post["url"], post["fields"]
