"""What the domain needs from the outside world, as Protocols. Adapters (S3, DynamoDB,
SageMaker/Batch) implement them; unit tests' in-memory fakes implement the same ones, and
a test checks both against these signatures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only: serving imports this module, and need not load the job domain
    from datetime import datetime

    from .jobs import JobRecord, JobRequest, JobStateChange
    from .manifest import GoldenExample, Manifest, ProductionPointer
    from .upload_checks import StoredUpload
    from .uploads import Claim, CounterState, UploadedObject


@dataclass(frozen=True)
class ModelVersion:
    manifest: Manifest
    onnx: bytes


@runtime_checkable
class ModelReader(Protocol):
    """Reads published versions and production pointers (the S3 model store)."""

    def list_model_ids(self) -> list[str]: ...

    def list_versions(self, model_id: str) -> list[str]: ...

    def read_pointer(self, model_id: str) -> ProductionPointer | None: ...

    def read_pointer_or_none(self, model_id: str) -> ProductionPointer | None: ...

    def read_manifest(self, model_id: str, version: str) -> Manifest: ...

    def read_version(self, model_id: str, version: str, expected_sha256: str | None = None) -> ModelVersion: ...


@runtime_checkable
class CounterStore(Protocol):
    """Per-model upload counters and the claim (with a lease) that lets exactly one job run per model."""

    def count(self, upload: UploadedObject) -> bool: ...

    def state(self, model: str) -> CounterState: ...

    def claim(
        self, model: str, job_id: str, threshold: int | None, *, now: float, lease_seconds: float
    ) -> Claim | None: ...

    def release(self, model: str, job_id: str, restore_pending: int = 0) -> bool: ...

    def active_claims(self) -> list[CounterState]: ...


@runtime_checkable
class JobStore(Protocol):
    """The retraining jobs' records; states only move forward."""

    def create(self, record: JobRecord) -> None: ...

    def get(self, job_id: str) -> JobRecord | None: ...

    def recent(self, model_id: str, limit: int = 5) -> list[JobRecord]: ...

    def set_state(
        self,
        job_id: str,
        state: str,
        *,
        service_status: str | None = None,
        failure_code: str | None = None,
        failure_reason: str | None = None,
        backend_job: str | None = None,
        at: str | None = None,
    ) -> bool: ...

    def set_backend_job(self, job_id: str, backend_job: str) -> bool: ...


@runtime_checkable
class Launcher(Protocol):
    """Starts a retraining job on a backend (SageMaker or Batch) and returns the service's job
    id; reports a job's state as the service sees it (None: the service does not know it)."""

    backend: str

    def start(self, job: JobRequest) -> str: ...

    def describe(self, job: JobRecord) -> JobStateChange | None: ...


@runtime_checkable
class UploadSigner(Protocol):
    """Signs a POST that lets a client put one object under `key`, with `uploader` as its metadata, and
    nothing else."""

    def presigned_post(
        self, key: str, content_type: str, max_bytes: int, expires_in: int, uploader: str
    ) -> tuple[str, dict[str, str]]: ...


@runtime_checkable
class UploadStore(Protocol):
    """The uploads bucket's objects as the upload counter checks them. Each method raises
    upload_checks.UploadGone when the object is no longer there."""

    def stat(self, key: str) -> StoredUpload: ...

    def read_prefix(self, key: str, length: int) -> bytes: ...

    def quarantine(self, key: str, target: str, reason: str, stored: StoredUpload) -> None: ...


@runtime_checkable
class GoldenPredictor(Protocol):
    """Sends a model's golden examples to one function version and returns its predictions, one per
    example; raises release_check.ReleaseCallFailed when the version does not answer 200."""

    target: str  # what is called, for the report (a function version)

    def predict(self, model_id: str, examples: list[GoldenExample]) -> list[dict]: ...


@runtime_checkable
class DeploymentReporter(Protocol):
    """Tells the deployment service (CodeDeploy) how a lifecycle hook ended: "Succeeded" or "Failed"."""

    def report(self, deployment_id: str, execution_id: str, status: str) -> None: ...


@runtime_checkable
class CaptureWriter(Protocol):
    """Writes one batch of a model's capture records (domain/capture.py) as one object."""

    def write_captures(self, model_id: str, records: list[dict], written_at: datetime) -> str: ...


@runtime_checkable
class MonitoringStore(CaptureWriter, Protocol):
    """The captures of a window, and the drift reports (domain/drift.py)."""

    def read_captures(self, model_id: str, since: datetime, until: datetime) -> list[dict]: ...

    def write_report(self, model_id: str, report: dict, generated_at: datetime) -> list[str]: ...

    def latest_report(self, model_id: str) -> dict | None: ...
