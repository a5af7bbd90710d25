"""S3 model store: immutable versions plus a production pointer per model.

Layout (DESIGN.md):
    models/{model}/{version}/model.onnx
    models/{model}/{version}/model.pt | model.weights.h5   native weights (image models; manifest.native_weights)
    models/{model}/{version}/manifest.json
    models/{model}/production.json   {"version", "sha256", "promoted_at", "previous"}

A version is written completely or not at all: model and native weights first, manifest
last (a version without a manifest is invisible), and anything written is deleted again on
failure.
The pointer only ever moves to a version that was read back and verified.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ..domain.errors import IntegrityError
from ..domain.manifest import Manifest, NativeWeights, ProductionPointer, sha256_hex
from ..domain.ports import ModelVersion
from .aws_clients import BucketAdapter

MODELS_PREFIX = "models/"


NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def _not_found(exc: Exception) -> bool:
    """S3 said the key does not exist; every other error (access, throttling, network) is not
    "nothing there" and must propagate."""
    from botocore.exceptions import ClientError  # loaded with the client by now: no cold-start cost

    return isinstance(exc, ClientError) and exc.response["Error"]["Code"] in NOT_FOUND_CODES


def _precondition_failed(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError) and exc.response["Error"]["Code"] in ("PreconditionFailed", "412")


class ModelStore(BucketAdapter):
    """The ModelReader adapter, plus the writes training needs (publish, promote)."""

    # keys -----------------------------------------------------------------
    @staticmethod
    def version_prefix(model_id: str, version: str) -> str:
        return f"{MODELS_PREFIX}{model_id}/{version}/"

    @staticmethod
    def pointer_key(model_id: str) -> str:
        return f"{MODELS_PREFIX}{model_id}/production.json"

    # reads ----------------------------------------------------------------
    def _get(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:
            if _not_found(exc):
                return None
            raise

    def _child_prefixes(self, prefix: str) -> list[str]:
        names: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            for entry in page.get("CommonPrefixes", []):
                names.append(entry["Prefix"][len(prefix) : -1])  # a common prefix ends with the delimiter
        return sorted(names)

    def list_model_ids(self) -> list[str]:
        return self._child_prefixes(MODELS_PREFIX)

    def list_versions(self, model_id: str) -> list[str]:
        """Versions that have a manifest (complete ones), oldest first."""
        prefix = f"{MODELS_PREFIX}{model_id}/"
        return [
            v for v in self._child_prefixes(prefix) if self._exists(self.version_prefix(model_id, v) + "manifest.json")
        ]

    def _exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except Exception as exc:
            if _not_found(exc):
                return False
            raise

    def read_pointer(self, model_id: str) -> ProductionPointer | None:
        raw = self._get(self.pointer_key(model_id))
        if raw is None:
            return None
        try:
            return ProductionPointer.model_validate_json(raw)
        except ValueError as exc:
            raise IntegrityError(f"{model_id}: production.json is not a valid pointer: {exc}") from exc

    def read_manifest(self, model_id: str, version: str) -> Manifest:
        raw = self._get(self.version_prefix(model_id, version) + "manifest.json")
        if raw is None:
            raise IntegrityError(f"{model_id}/{version}: manifest.json is missing")
        try:
            manifest = Manifest.model_validate_json(raw)
        except ValueError as exc:
            raise IntegrityError(f"{model_id}/{version}: manifest.json is invalid: {exc}") from exc
        if manifest.model_id != model_id or manifest.version != version:
            raise IntegrityError(f"{model_id}/{version}: manifest names {manifest.model_id}/{manifest.version}")
        return manifest

    def read_version(self, model_id: str, version: str, expected_sha256: str | None = None) -> ModelVersion:
        """Manifest and ONNX bytes of a version, verified against the manifest (and pointer)."""
        manifest = self.read_manifest(model_id, version)
        onnx = self._get(self.version_prefix(model_id, version) + "model.onnx")
        if onnx is None:
            raise IntegrityError(f"{model_id}/{version}: model.onnx is missing")
        actual = sha256_hex(onnx)
        if actual != manifest.onnx_sha256:
            raise IntegrityError(
                f"{model_id}/{version}: model.onnx sha256 {actual[:12]}… does not match the manifest's "
                f"{manifest.onnx_sha256[:12]}…"
            )
        if expected_sha256 is not None and expected_sha256 != actual:
            raise IntegrityError(
                f"{model_id}/{version}: production.json expects sha256 {expected_sha256[:12]}…, "
                f"model.onnx has {actual[:12]}…"
            )
        return ModelVersion(manifest=manifest, onnx=onnx)

    def read_native_weights(self, manifest: Manifest) -> bytes | None:
        """The version's native weights, verified against its manifest; None when the manifest
        records none (a version published before they were kept, or a tabular model)."""
        described = manifest.native_weights
        if described is None:
            return None
        name = f"{manifest.model_id}/{manifest.version}/{described.file}"
        data = self._get(self.version_prefix(manifest.model_id, manifest.version) + described.file)
        if data is None:
            raise IntegrityError(f"{name} is missing")
        actual = sha256_hex(data)
        if actual != described.sha256 or len(data) != described.size_bytes:
            raise IntegrityError(
                f"{name} sha256 {actual[:12]}… ({len(data)} bytes) does not match the manifest's "
                f"{described.sha256[:12]}… ({described.size_bytes} bytes)"
            )
        return data

    # writes ---------------------------------------------------------------
    def publish(
        self, manifest: Manifest, onnx: bytes, *, promote: bool = True, native_weights: bytes | None = None
    ) -> ProductionPointer | None:
        """Write a complete new version (with its native weights when the manifest describes
        them); move the pointer to it when ``promote``."""
        if sha256_hex(onnx) != manifest.onnx_sha256 or len(onnx) != manifest.onnx_bytes:
            raise IntegrityError("manifest's onnx_sha256/onnx_bytes do not describe the model bytes")
        _check_native_weights(manifest.native_weights, native_weights)
        files = [("model.onnx", onnx, "application/octet-stream")]
        if manifest.native_weights is not None:
            files.append((manifest.native_weights.file, native_weights, "application/octet-stream"))
        files.append(("manifest.json", manifest.model_dump_json(indent=2).encode(), "application/json"))
        prefix = self.version_prefix(manifest.model_id, manifest.version)
        if self._exists(prefix + "model.onnx") or self._exists(prefix + "manifest.json"):
            raise IntegrityError(f"{manifest.model_id}/{manifest.version} already exists: versions are immutable")
        written: list[str] = []
        try:
            for name, body, content_type in files:
                try:
                    self.client.put_object(
                        Bucket=self.bucket,
                        Key=prefix + name,
                        Body=body,
                        ContentType=content_type,
                        ChecksumAlgorithm="SHA256",
                        # Create only: S3 refuses to replace an object that exists (even one written since
                        # the check above), and the training role may write version files only so.
                        IfNoneMatch="*",
                    )
                except Exception as exc:
                    if _precondition_failed(exc):
                        raise IntegrityError(
                            f"{manifest.model_id}/{manifest.version} already exists: versions are immutable"
                        ) from None
                    raise
                written.append(prefix + name)
            self.read_version(manifest.model_id, manifest.version)
            self.read_native_weights(manifest)
        except BaseException:
            for key in written:
                try:
                    self.client.delete_object(Bucket=self.bucket, Key=key)
                except Exception:  # best effort: the original error matters more
                    pass
            raise
        return self.promote(manifest.model_id, manifest.version) if promote else None

    def promote(self, model_id: str, version: str) -> ProductionPointer:
        """Point production at ``version`` after verifying it end to end."""
        checked = self.read_version(model_id, version)
        current = self.read_pointer_or_none(model_id)
        pointer = ProductionPointer(
            version=version,
            sha256=checked.manifest.onnx_sha256,
            promoted_at=datetime.now(UTC),
            previous=current.version if current and current.version != version else None,
        )
        self.client.put_object(
            Bucket=self.bucket,
            Key=self.pointer_key(model_id),
            Body=pointer.model_dump_json(indent=2).encode(),
            ContentType="application/json",
        )
        return pointer

    def read_pointer_or_none(self, model_id: str) -> ProductionPointer | None:
        """The pointer, or None when it is missing or unreadable (a new pointer replaces it)."""
        try:
            return self.read_pointer(model_id)
        except IntegrityError:
            return None


def _check_native_weights(described: NativeWeights | None, data: bytes | None) -> None:
    """The manifest's native_weights and the bytes given to publish agree: both absent, or the
    bytes are the ones it describes."""
    if described is None and data is None:
        return
    if described is None or data is None:
        raise IntegrityError("native weights and the manifest's native_weights must be given together")
    if sha256_hex(data) != described.sha256 or len(data) != described.size_bytes:
        raise IntegrityError("manifest's native_weights sha256/size_bytes do not describe the weights bytes")
