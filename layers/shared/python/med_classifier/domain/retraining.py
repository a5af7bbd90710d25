"""The retraining loop's decisions: count an upload, start exactly one job when a model
has enough new uploads (or when asked), and follow the job's state to its end.

Knows nothing about Lambda, SQS or EventBridge: the functions translate their events
into these calls. The counter, jobs table and launcher are passed in: anything that
implements the CounterStore, JobStore and Launcher Protocols (domain.ports).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .errors import Conflict
from .jobs import COMPLETED, FAILED, IN_PROGRESS, PENDING, STOPPED, TERMINAL_STATES, JobRecord, JobRequest, new_job_id
from .ports import CounterStore, JobStore, Launcher
from .uploads import CounterState, UploadedObject

log = logging.getLogger(__name__)

UPLOADS_TRIGGER, MANUAL_TRIGGER = "uploads", "manual"

# The services' status words → the jobs table's states.
SAGEMAKER_STATES = {
    "InProgress": IN_PROGRESS,
    "Stopping": IN_PROGRESS,
    "Completed": COMPLETED,
    "Failed": FAILED,
    "Stopped": STOPPED,
}
BATCH_STATES = {
    "SUBMITTED": PENDING,
    "PENDING": PENDING,
    "RUNNABLE": PENDING,
    "STARTING": IN_PROGRESS,
    "RUNNING": IN_PROGRESS,
    "SUCCEEDED": COMPLETED,
    "FAILED": FAILED,
}


@dataclass(frozen=True)
class UploadOutcome:
    upload: UploadedObject
    counted: bool  # False: counted before (a redelivery)
    started: JobRecord | None  # the job this upload's arrival started, if any


@dataclass(frozen=True)
class RetrainingStatus:
    """A model's upload counter against its threshold, and its recent jobs (GET /models/{model})."""

    total_uploads: int
    uploads_since_last_job: int
    threshold: int
    active_job: str | None
    last_job: str | None
    jobs: list[JobRecord]


@dataclass(frozen=True)
class JobStateChange:
    job_id: str
    state: str
    service_status: str
    failure_reason: str | None = None


def state_change_from_event(source: str, detail: dict) -> JobStateChange | None:
    """A SageMaker training-job or Batch job state-change event's detail → JobStateChange;
    None for statuses this product does not track and for events that name no job."""
    if source == "aws.sagemaker":
        name, status = detail.get("TrainingJobName"), detail.get("TrainingJobStatus")
        state = SAGEMAKER_STATES.get(status)
        reason = detail.get("FailureReason")  # also says why a job was Stopped
    elif source == "aws.batch":
        name, status = detail.get("jobName"), detail.get("status")
        state = BATCH_STATES.get(status)
        # Batch gives a reason for every ending ("Essential container in task exited"): keep failures' only.
        reason = None
        if state == FAILED:
            reason = detail.get("statusReason") or (detail.get("container") or {}).get("reason")
    else:
        return None
    if not name or state is None:
        return None
    return JobStateChange(name, state, status, reason)


class Retraining:
    def __init__(
        self, counter: CounterStore, jobs: JobStore, launcher: Launcher | None, thresholds: tuple[int, dict[str, int]]
    ):
        self.counter = counter
        self.jobs = jobs
        self.launcher = launcher
        self.default_threshold, self.threshold_overrides = thresholds

    def threshold(self, model: str) -> int:
        return self.threshold_overrides.get(model, self.default_threshold)

    def record_upload(self, upload: UploadedObject) -> UploadOutcome:
        counted = self.counter.count(upload)
        # Also after a redelivery: the first delivery may have counted and then failed to start the job.
        return UploadOutcome(upload, counted, self.start_if_due(upload.model))

    def start_if_due(self, model: str) -> JobRecord | None:
        return self._start(model, UPLOADS_TRIGGER, self.threshold(model))

    def start_manual(
        self, model: str, reason: str | None = None, hyperparameters: dict[str, str] | None = None
    ) -> JobRecord:
        job = self._start(model, MANUAL_TRIGGER, None, reason, hyperparameters)
        if job is None:
            active = self.counter.state(model).active_job
            raise Conflict(
                f"A retraining job for {model!r} is already running: {active}. "
                f"GET /models/{model}/retrain/{active} shows it.",
                details=[{"active_job": active}],
            )
        return job

    def _start(
        self,
        model: str,
        trigger: str,
        threshold: int | None,
        reason: str | None = None,
        hyperparameters: dict[str, str] | None = None,
    ) -> JobRecord | None:
        job_id = new_job_id(model)
        pending = self.counter.claim(model, job_id, threshold)
        if pending is None:
            return None
        record = JobRecord(
            job_id=job_id, model=model, trigger=trigger, backend=self.launcher.backend, uploads=pending, reason=reason
        )
        try:
            self.jobs.create(record)
            record.backend_job = self.launcher.start(JobRequest(job_id, model, dict(hyperparameters or {})))
        except Exception as exc:
            # Never leave the model claimed by a job that did not start: give the uploads back.
            log.exception("could not start %s", job_id)
            try:
                self.jobs.set_state(job_id, FAILED, failure_reason=f"could not start the job: {exc}")
            finally:
                self.counter.release(model, job_id, restore_pending=pending)
            raise
        self.jobs.set_backend_job(job_id, record.backend_job)
        log.info("started %s (%s, %s uploads pending) on %s", job_id, trigger, pending, self.launcher.backend)
        return record

    def on_state_change(self, change: JobStateChange) -> JobRecord | None:
        """Records a service-reported state. At a terminal state the model's claim ends,
        and if enough uploads arrived meanwhile the next job starts. Returns the job's
        record (None for jobs this product did not start)."""
        record = self.jobs.get(change.job_id)
        if record is None:
            return None
        self.jobs.set_state(
            change.job_id, change.state, service_status=change.service_status, failure_reason=change.failure_reason
        )
        if change.state in TERMINAL_STATES:
            if self.counter.release(record.model, change.job_id):
                self.start_if_due(record.model)
        return self.jobs.get(change.job_id)

    def status(self, model: str, recent: int = 5) -> RetrainingStatus:
        """The counter against the model's threshold and its `recent` latest jobs, newest first."""
        state: CounterState = self.counter.state(model)
        return RetrainingStatus(
            total_uploads=state.total,
            uploads_since_last_job=state.pending,
            threshold=self.threshold(model),
            active_job=state.active_job,
            last_job=state.last_job,
            jobs=self.jobs.recent(model, recent),
        )
