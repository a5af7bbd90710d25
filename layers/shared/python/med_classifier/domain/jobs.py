"""Retraining jobs: their record, states and ids (stored by a JobStore adapter).

A job is written by three parties: the function that starts a job (Pending), the job itself
(InProgress, then its outcome), and the services' state-change events (SageMaker or
Batch, through EventBridge). States only move forward and a terminal state is final,
so late or repeated events never undo what is recorded.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Literal, get_args

from pydantic import ConfigDict, Field

JobState = Literal["Pending", "InProgress", "Completed", "Failed", "Stopped"]
STATES: tuple[str, ...] = get_args(JobState)
PENDING, IN_PROGRESS, COMPLETED, FAILED, STOPPED = STATES
TERMINAL_STATES = (COMPLETED, FAILED, STOPPED)
# What a finished job concluded (set by the job itself).
Outcome = Literal["promoted", "rejected"]
PROMOTED, REJECTED = get_args(Outcome)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_job_id(model_id: str, now: datetime | None = None) -> str:
    """Unique, sortable, and a valid SageMaker training-job and Batch job name
    (letters, digits, hyphens; at most 63 characters)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{model_id[:40]}-{stamp}-{secrets.token_hex(3)}"


# The one definition of a job: the jobs table stores it, and the API returns it as it is (POST
# /models/{model}/retrain, GET /models/{model}/retrain/{job_id}, the model view's recent jobs).
@dataclass
class JobRecord:
    """One retraining job: what started it, where it runs, its state and what it concluded."""

    # Every field is always in the JSON, so the response schema requires them all.
    __pydantic_config__ = ConfigDict(json_schema_serialization_defaults_required=True)

    job_id: Annotated[str, Field(description="Unique, sortable; also the SageMaker training job / Batch job name")]
    model: str
    trigger: Annotated[str, Field(description='"uploads" (threshold reached) or "manual" (POST .../retrain)')]
    backend: Annotated[str, Field(description='"sagemaker" or "batch"')]
    state: Annotated[JobState, Field(description="Only moves forward; Completed, Failed and Stopped are final")] = (
        PENDING
    )
    created_at: str = field(default_factory=utc_now)
    updated_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    uploads: Annotated[
        int | None, Field(description="Uploads counted since the previous job when this one started")
    ] = None
    reason: Annotated[str | None, Field(description="Why it was started (manual requests may say)")] = None
    backend_job: Annotated[str | None, Field(description="The training job's name / Batch job id")] = None
    service_status: Annotated[str | None, Field(description="The service's own status word, as last reported")] = None
    outcome: Annotated[Outcome | None, Field(description="Once the job has decided (set by the job itself)")] = None
    version: Annotated[str | None, Field(description="The version the job trained (published only if promoted)")] = None
    production_version: Annotated[
        str | None, Field(description="Production when the job evaluated: the version it had to beat")
    ] = None
    reasons: Annotated[list[str], Field(description="Why the gate rejected it")] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    failure_reason: str | None = None


@dataclass(frozen=True)
class JobRequest:
    """What a launcher needs to start one job."""

    job_id: str
    model: str
    hyperparameters: dict[str, str] = field(default_factory=dict)
