"""The retraining loop's decisions: count an upload, start exactly one job when a model
has enough new uploads (or when asked), and follow the job's state to its end.

Knows nothing about Lambda, SQS or EventBridge: the functions translate their events
into these calls. The counter, jobs table and launcher are passed in: anything that
implements the CounterStore, JobStore and Launcher Protocols (domain.ports).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import Conflict, ServiceUnavailable
from .jobs import (
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    PENDING,
    STOPPED,
    TERMINAL_STATES,
    JobRecord,
    JobRequest,
    JobStateChange,
    new_job_id,
    public_failure,
)
from .ports import CounterStore, JobStore, Launcher
from .uploads import CounterState, UploadedObject

log = logging.getLogger(__name__)

UPLOADS_TRIGGER, MANUAL_TRIGGER = "uploads", "manual"
# Longer than any starter's Lambda timeout: a claim older than this without a launched job
# belongs to a starter that died.
LAUNCH_GRACE_SECONDS = 600
LEASE_MARGIN_SECONDS = 3600
SAGEMAKER_FAILURE_CODES = {
    "AlgorithmError": "algorithm_error",
    "ClientError": "client_error",
    "CapacityError": "capacity_error",
    "InternalServerError": "service_error",
}

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


def _sagemaker_failure(status: str, detail: dict) -> str | None:
    reason = str(detail.get("FailureReason") or "")
    if status == "Stopped":
        timed_out = detail.get("SecondaryStatus") == "MaxRuntimeExceeded" or "MaxRuntime" in reason
        return "max_runtime_exceeded" if timed_out else "stopped"
    if status != "Failed":
        return None
    return SAGEMAKER_FAILURE_CODES.get(reason.partition(":")[0].strip(), "job_error")


def _batch_failure(status: str, reason: object) -> str | None:
    if status != "FAILED":
        return None
    return "max_runtime_exceeded" if "timeout" in str(reason).lower() else "job_error"


def state_change_from_event(source: str, detail: dict) -> JobStateChange | None:
    """A SageMaker training-job or Batch job state-change event's detail (the same shape as
    DescribeTrainingJob's and DescribeJobs' answers) → JobStateChange; None for statuses this
    product does not track and for events that name no job."""
    if source == "aws.sagemaker":
        name, status, states = detail.get("TrainingJobName"), detail.get("TrainingJobStatus"), SAGEMAKER_STATES
    elif source == "aws.batch":
        name, status, states = detail.get("jobName"), detail.get("status"), BATCH_STATES
    else:
        return None
    if not isinstance(name, str) or not name or not isinstance(status, str) or status not in states:
        return None
    if source == "aws.sagemaker":
        code, reason = _sagemaker_failure(status, detail), detail.get("FailureReason")
    else:
        # Batch gives a reason for every ending ("Essential container in task exited"): keep failures' only.
        container = detail.get("container")
        reason = detail.get("statusReason") or (container.get("reason") if isinstance(container, dict) else None)
        code = _batch_failure(status, reason)
    return JobStateChange(name, states[status], status, code, str(reason) if code and reason else None)


@dataclass(frozen=True)
class Recovery:
    """How the loop recovers when a starter dies between claim and launch, or a job's end is
    never reported: the claim's lease, and how long a claim may stay unlaunched."""

    lease_seconds: float = 3 * 3600 + 3600
    launch_grace_seconds: float = LAUNCH_GRACE_SECONDS

    @classmethod
    def for_max_runtime(cls, max_runtime_seconds: float) -> Recovery:
        # The service stops the job at its max runtime; the margin covers its stop, its event and clock skew.
        return cls(lease_seconds=max_runtime_seconds + LEASE_MARGIN_SECONDS)


@dataclass(frozen=True)
class Reconciled:
    """What the reconciler found for one active claim, and did."""

    model: str
    job_id: str
    action: str  # "running", "starting" (within the launch grace), "ended", "released"
    state: str | None = None


class Retraining:
    def __init__(
        self,
        counter: CounterStore,
        jobs: JobStore,
        launcher: Launcher | None,
        thresholds: tuple[int, dict[str, int]],
        recovery: Recovery | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.counter = counter
        self.jobs = jobs
        self.launcher = launcher
        self.default_threshold, self.threshold_overrides = thresholds
        self.recovery = recovery or Recovery()
        self.clock = clock

    def threshold(self, model: str) -> int:
        return self.threshold_overrides.get(model, self.default_threshold)

    def record_upload(self, upload: UploadedObject) -> UploadOutcome:
        counted = self.counter.count(upload)
        # Also after a redelivery: the first delivery may have counted and then failed to start the job.
        return UploadOutcome(upload, counted, self.start_if_due(upload.model))

    def start_if_due(self, model: str) -> JobRecord | None:
        return self._start(model, UPLOADS_TRIGGER, self.threshold(model))

    def start_manual(
        self,
        model: str,
        reason: str | None = None,
        hyperparameters: dict[str, str] | None = None,
        requested_by: str | None = None,
    ) -> JobRecord:
        job = self._start(model, MANUAL_TRIGGER, None, reason, hyperparameters, requested_by)
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
        requested_by: str | None = None,
    ) -> JobRecord | None:
        job_id = new_job_id(model)
        claim = self.counter.claim(
            model, job_id, threshold, now=self.clock(), lease_seconds=self.recovery.lease_seconds
        )
        if claim is None:
            return None
        if claim.took_over:
            log.warning("%s took over the expired claim of %s on %s", job_id, claim.took_over, model)
            self._fail(claim.took_over, "lease_expired")
        record = JobRecord(
            job_id=job_id,
            model=model,
            trigger=trigger,
            backend=self.launcher.backend,
            uploads=claim.uploads,
            reason=reason,
            requested_by=requested_by,
        )
        try:
            self.jobs.create(record)
            record.backend_job = self.launcher.start(JobRequest(job_id, model, dict(hyperparameters or {})))
        except Exception as exc:
            # Never leave the model claimed by a job that did not start: give the uploads back.
            log.exception("could not start %s", job_id)
            try:
                self._fail(job_id, "launch_failed")
            finally:
                self.counter.release(model, job_id, restore_pending=claim.uploads)
            raise ServiceUnavailable(
                f"The retraining job for {model!r} could not be started; try again later. Job id: {job_id}.",
                details=[{"job_id": job_id, "failure_code": "launch_failed"}],
            ) from exc
        self.jobs.set_backend_job(job_id, record.backend_job)
        log.info("started %s (%s, %s uploads pending) on %s", job_id, trigger, claim.uploads, self.launcher.backend)
        return record

    def _fail(self, job_id: str, code: str) -> bool:
        return self.jobs.set_state(job_id, FAILED, failure_code=code, failure_reason=public_failure(code))

    def on_state_change(self, change: JobStateChange) -> JobRecord | None:
        """Records a service-reported state. At a terminal state the model's claim ends,
        and if enough uploads arrived meanwhile the next job starts. Returns the job's
        record (None for jobs this product did not start)."""
        record = self.jobs.get(change.job_id)
        if record is None:
            return None
        if change.detail:  # the service's own words stay in the logs
            log.warning("%s: %s (%s): %s", change.job_id, change.service_status, change.failure_code, change.detail)
        self.jobs.set_state(
            change.job_id,
            change.state,
            service_status=change.service_status,
            failure_code=change.failure_code,
            failure_reason=public_failure(change.failure_code) if change.failure_code else None,
        )
        if change.state in TERMINAL_STATES:
            self._free(record.model, change.job_id)
        return self.jobs.get(change.job_id)

    def _free(self, model: str, job_id: str, restore_pending: int = 0) -> None:
        """Ends `job_id`'s claim and starts the next job if enough uploads are pending."""
        if self.counter.release(model, job_id, restore_pending=restore_pending):
            self.start_if_due(model)

    def reconcile(self) -> list[Reconciled]:
        """Compares every active claim with the jobs table and the service, and ends what has
        ended: a claim whose starter died before launching (its uploads go back to pending), a
        job whose end event was lost, a job the service does not know. Run on a schedule."""
        results = []
        for claim in self.counter.active_claims():
            try:
                results.append(self._reconcile(claim))
            except Exception:  # one model's trouble must not stop the others' recovery
                log.exception("could not reconcile %s of %s", claim.active_job, claim.model)
        return results

    def _reconcile(self, claim: CounterState) -> Reconciled:
        model, job_id = claim.model, claim.active_job
        record = self.jobs.get(job_id)
        change = self.launcher.describe(record) if record is not None else None
        if change is not None and change.state not in TERMINAL_STATES:
            # Still running at the service (perhaps finishing after recording its own outcome): keep the claim.
            if change.state != record.state:  # set_state never moves a state back
                self.jobs.set_state(job_id, change.state, service_status=change.service_status)
            return Reconciled(model, job_id, "running", change.state)
        if change is not None:  # ended at the service; its state-change event was lost
            return Reconciled(model, job_id, "ended", self.on_state_change(change).state)
        if record is not None and record.state in TERMINAL_STATES:
            self._free(model, job_id)  # the service no longer knows it; its end is recorded
            return Reconciled(model, job_id, "released", record.state)
        if claim.claimed_at is not None and self.clock() - claim.claimed_at < self.recovery.launch_grace_seconds:
            return Reconciled(model, job_id, "starting", record.state if record else None)
        # Claimed long ago and unknown to the service: its starter died before launching it.
        launched = record is not None and record.backend_job is not None
        code = "job_not_found" if launched else "launch_lost"
        log.warning("%s of %s: %s; freeing the model", job_id, model, code)
        if record is not None:
            self._fail(job_id, code)
        self._free(model, job_id, restore_pending=0 if launched else claim.claimed_uploads)
        return Reconciled(model, job_id, "released", FAILED if record is not None else None)

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
