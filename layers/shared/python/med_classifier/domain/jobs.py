"""Retraining jobs: their record, states and ids (stored by a JobStore adapter).

A job is written by three parties: the function that starts a job (Pending), the job itself
(InProgress, then its outcome), and the services' state-change events (SageMaker or
Batch, through EventBridge). States only move forward and a terminal state is final,
so late or repeated events never undo what is recorded.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

PENDING, IN_PROGRESS, COMPLETED, FAILED, STOPPED = "Pending", "InProgress", "Completed", "Failed", "Stopped"
TERMINAL_STATES = (COMPLETED, FAILED, STOPPED)
STATES = (PENDING, IN_PROGRESS, *TERMINAL_STATES)
# What a finished job concluded (set by the job itself).
PROMOTED, REJECTED = "promoted", "rejected"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_job_id(model_id: str, now: datetime | None = None) -> str:
    """Unique, sortable, and a valid SageMaker training-job and Batch job name
    (letters, digits, hyphens; at most 63 characters)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{model_id[:40]}-{stamp}-{secrets.token_hex(3)}"


@dataclass
class JobRecord:
    job_id: str
    model: str
    trigger: str  # "uploads" (threshold reached) or "manual" (POST .../retrain)
    backend: str  # "sagemaker" or "batch"
    state: str = PENDING
    created_at: str = field(default_factory=utc_now)
    updated_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    uploads: int | None = None  # uploads counted since the previous job when this one was triggered
    reason: str | None = None  # why it was started (manual requests may say)
    backend_job: str | None = None  # the training job's name / Batch job id
    service_status: str | None = None  # the service's own status word, as last reported
    outcome: str | None = None  # "promoted" / "rejected", once the job has decided
    version: str | None = None  # the version the job trained (published only if promoted)
    production_version: str | None = None  # production when the job evaluated (the one it had to beat)
    reasons: list[str] = field(default_factory=list)  # why the gate rejected it
    metrics: dict[str, float] = field(default_factory=dict)
    failure_reason: str | None = None

    def public(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class JobRequest:
    """What a launcher needs to start one job."""

    job_id: str
    model: str
    hyperparameters: dict[str, str] = field(default_factory=dict)
