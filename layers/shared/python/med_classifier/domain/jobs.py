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

# Why a job failed, as callers see it: a stable code and a short sentence. The services' and
# exceptions' own texts (role ARNs, account ids, stack traces) go to the logs, never to callers.
FAILURE_MESSAGES: dict[str, str] = {
    "launch_failed": "The training service did not start the job.",
    "launch_lost": "The job was claimed but never launched (its starter stopped first).",
    "job_not_found": "The training service has no record of the job.",
    "lease_expired": "The job held the model past its maximum runtime plus a margin; the model was freed.",
    "max_runtime_exceeded": "The job ran past its maximum runtime and was stopped.",
    "algorithm_error": "The training code failed.",
    "client_error": "The training service refused the job's configuration.",
    "capacity_error": "The training service had no capacity for the job.",
    "service_error": "The training service failed.",
    "stopped": "The job was stopped.",
    "job_error": "The job failed.",
}
FailureCode = Literal[tuple(FAILURE_MESSAGES)]  # type: ignore[valid-type]


def public_failure(code: str) -> str:
    """The sentence callers see for a failure code (details stay in the logs)."""
    return FAILURE_MESSAGES[code] + " The details are in the logs."


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
    requested_by: Annotated[
        str | None, Field(description="The Cognito sub of the ml-admin who asked for a manual job (uploads: none)")
    ] = None
    backend_job: Annotated[str | None, Field(description="The training job's name / Batch job id")] = None
    service_status: Annotated[str | None, Field(description="The service's own status word, as last reported")] = None
    outcome: Annotated[Outcome | None, Field(description="Once the job has decided (set by the job itself)")] = None
    version: Annotated[str | None, Field(description="The version the job trained (published only if promoted)")] = None
    production_version: Annotated[
        str | None, Field(description="Production when the job evaluated: the version it had to beat")
    ] = None
    reasons: Annotated[list[str], Field(description="Why the gate rejected it")] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    failure_code: Annotated[
        FailureCode | None, Field(description="Why it failed, as a stable code (the details are in the logs)")
    ] = None
    failure_reason: Annotated[str | None, Field(description="Why it failed, in one short sentence")] = None
    fine_tuned_from: Annotated[
        str | None,
        Field(description="The production version whose native weights it fine-tuned (none: from scratch)"),
    ] = None
    deltas: Annotated[
        dict[str, float],
        Field(description="Candidate minus production_version on the candidate's test set, per compared metric"),
    ] = field(default_factory=dict)


@dataclass(frozen=True)
class JobRequest:
    """What a launcher needs to start one job."""

    job_id: str
    model: str
    hyperparameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobStateChange:
    """A job's state as the service reports it (an EventBridge event, or DescribeTrainingJob /
    DescribeJobs when the reconciler asks). `detail` is the service's own text: logged, never
    shown to callers."""

    job_id: str
    state: str
    service_status: str
    failure_code: str | None = None
    detail: str | None = None
