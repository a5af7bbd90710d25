"""In-memory fakes of the domain's Protocols (med_classifier.domain.ports), for unit tests.
tests/unit/test_ports.py checks that they, and the AWS adapters, implement the Protocols
with the same signatures."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from med_classifier.domain.errors import IntegrityError
from med_classifier.domain.jobs import STATES, TERMINAL_STATES, JobRecord, JobRequest, JobStateChange
from med_classifier.domain.manifest import Manifest, ProductionPointer
from med_classifier.domain.ports import ModelVersion
from med_classifier.domain.upload_checks import REASON_KEY, StoredUpload, UploadGone
from med_classifier.domain.uploads import Claim, CounterState, UploadedObject


@dataclass
class MemoryStore:
    """A ModelReader over a dict of version -> (manifest, onnx bytes)."""

    versions: dict
    pointer: ProductionPointer | None = None
    pointer_error: Exception | None = None

    def list_model_ids(self) -> list[str]:
        return sorted({manifest.model_id for manifest, _ in self.versions.values()})

    def list_versions(self, model_id: str) -> list[str]:
        return sorted(v for v, (manifest, _) in self.versions.items() if manifest.model_id == model_id)

    def read_pointer(self, model_id: str) -> ProductionPointer | None:
        if self.pointer_error:
            raise self.pointer_error
        return self.pointer

    def read_pointer_or_none(self, model_id: str) -> ProductionPointer | None:
        try:
            return self.read_pointer(model_id)
        except IntegrityError:
            return None

    def read_manifest(self, model_id: str, version: str) -> Manifest:
        if version not in self.versions:
            raise IntegrityError(f"{model_id}/{version}: manifest.json is missing")
        return self.versions[version][0]

    def read_version(self, model_id: str, version: str, expected_sha256: str | None = None) -> ModelVersion:
        manifest, onnx = self.versions[version]
        if expected_sha256 and expected_sha256 != manifest.onnx_sha256:
            raise IntegrityError("sha mismatch")
        return ModelVersion(manifest=manifest, onnx=onnx)


class MemoryCounter:
    """A CounterStore in a dict."""

    def __init__(self):
        self.states: dict[str, CounterState] = {}
        self.seen: set[str] = set()

    def state(self, model: str) -> CounterState:
        return self.states.get(model, CounterState(model))

    def count(self, upload: UploadedObject) -> bool:
        if upload.key in self.seen:
            return False
        self.seen.add(upload.key)
        state = self.state(upload.model)
        self.states[upload.model] = replace(state, total=state.total + 1, pending=state.pending + 1)
        return True

    def claim(
        self, model: str, job_id: str, threshold: int | None, *, now: float, lease_seconds: float
    ) -> Claim | None:
        state = self.state(model)
        held = state.active_job and not (state.lease_expires_at is not None and state.lease_expires_at < now)
        if held or (threshold is not None and state.pending < threshold):
            return None
        self.states[model] = replace(
            state,
            active_job=job_id,
            last_job=job_id,
            pending=0,
            claimed_at=now,
            lease_expires_at=now + lease_seconds,
            claimed_uploads=state.pending,
        )
        return Claim(uploads=state.pending, took_over=state.active_job)

    def release(self, model: str, job_id: str, restore_pending: int = 0) -> bool:
        state = self.state(model)
        if state.active_job != job_id:
            return False
        self.states[model] = replace(
            state,
            active_job=None,
            pending=state.pending + restore_pending,
            claimed_at=None,
            lease_expires_at=None,
            claimed_uploads=0,
        )
        return True

    def active_claims(self) -> list[CounterState]:
        return [state for state in self.states.values() if state.active_job]


class MemoryJobs:
    """A JobStore in a dict; states only move forward, as the DynamoDB table's conditions ensure."""

    def __init__(self):
        self.records: dict[str, JobRecord] = {}

    def create(self, record: JobRecord) -> None:
        assert record.job_id not in self.records
        self.records[record.job_id] = replace(record)

    def get(self, job_id: str) -> JobRecord | None:
        record = self.records.get(job_id)
        return replace(record) if record else None

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
    ) -> bool:
        record = self.records.get(job_id)
        if record is None or record.state in TERMINAL_STATES or STATES.index(state) < STATES.index(record.state):
            return False
        record.state, record.service_status = state, service_status
        record.failure_code, record.failure_reason = failure_code, failure_reason
        record.backend_job = backend_job or record.backend_job
        return True

    def set_backend_job(self, job_id: str, backend_job: str) -> bool:
        self.records[job_id].backend_job = backend_job
        return True

    def recent(self, model_id: str, limit: int = 5) -> list[JobRecord]:
        mine = [r for r in self.records.values() if r.model == model_id]
        return sorted(mine, key=lambda r: r.job_id, reverse=True)[:limit]


class RecordingLauncher:
    """A Launcher that records the jobs it is asked to start (or fails with the given error), and
    reports the states set in `service_states` (job id → JobStateChange; absent: the service does
    not know the job)."""

    backend = "sagemaker"

    def __init__(self, error: Exception | None = None):
        self.started, self.error = [], error
        self.service_states: dict[str, JobStateChange] = {}

    def start(self, job: JobRequest) -> str:
        if self.error:
            raise self.error
        self.started.append(job)
        self.service_states[job.job_id] = JobStateChange(job.job_id, "InProgress", "InProgress")
        return job.job_id  # what SageMakerLauncher returns: the training job's name

    def describe(self, job: JobRecord) -> JobStateChange | None:
        return self.service_states.get(job.job_id)


class MemoryUploads:
    """An UploadStore over a dict of key -> (bytes, user metadata). Records the lengths read;
    `errors[method]` are raised, one per call of that method, before anything else (a store's hiccups)."""

    def __init__(self, objects: dict[str, tuple[bytes, dict]] | None = None):
        self.objects = dict(objects or {})
        self.reads: list[int] = []
        self.errors: dict[str, list[Exception]] = {}

    def _get(self, method: str, key: str) -> tuple[bytes, dict]:
        if self.errors.get(method):
            raise self.errors[method].pop(0)
        if key not in self.objects:
            raise UploadGone(key)
        return self.objects[key]

    def stat(self, key: str) -> StoredUpload:
        data, metadata = self._get("stat", key)
        return StoredUpload(size=len(data), metadata=dict(metadata), content_type="image/png")

    def read_prefix(self, key: str, length: int) -> bytes:
        data, _ = self._get("read_prefix", key)
        self.reads.append(length)
        return data[:length]

    def quarantine(self, key: str, target: str, reason: str, stored: StoredUpload) -> None:
        data, _ = self._get("quarantine", key)
        self.objects[target] = (data, {REASON_KEY: reason})
        del self.objects[key]


class MemoryMonitoring:
    """A MonitoringStore in lists: each written capture batch with its model and time, and the reports.
    `fail_writes` makes write_captures raise (a store that is down)."""

    def __init__(self):
        self.batches: list[tuple[str, list[dict], datetime]] = []
        self.reports: dict[str, list[dict]] = {}
        self.fail_writes = False

    def write_captures(self, model_id: str, records: list[dict], written_at: datetime) -> str:
        if self.fail_writes:
            raise ConnectionError("monitoring store unreachable")
        self.batches.append((model_id, list(records), written_at))
        return f"captures/{model_id}/{len(self.batches)}.jsonl"

    def read_captures(self, model_id: str, since: datetime, until: datetime) -> list[dict]:
        return [
            record
            for model, records, _ in self.batches
            if model == model_id
            for record in records
            if since <= datetime.fromisoformat(record["captured_at"]) <= until
        ]

    def write_report(self, model_id: str, report: dict, generated_at: datetime) -> list[str]:
        self.reports.setdefault(model_id, []).append(report)
        return [f"drift/{model_id}/latest.json"]

    def latest_report(self, model_id: str) -> dict | None:
        return self.reports.get(model_id, [None])[-1]
