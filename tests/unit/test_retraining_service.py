"""The retraining loop's decisions (med_classifier.domain.retraining.Retraining) with in-memory
counter, jobs table and launcher: when a job starts, what it records, what happens when
it cannot start, and what a state change does. The DynamoDB adapters are tested against
moto in tests/integration/test_retraining_loop.py."""

import logging
from dataclasses import asdict

import pytest

from med_classifier.domain.errors import Conflict, ServiceUnavailable
from med_classifier.domain.jobs import COMPLETED, FAILED, IN_PROGRESS, PENDING, STOPPED, TERMINAL_STATES, public_failure
from med_classifier.domain.retraining import MANUAL_TRIGGER, UPLOADS_TRIGGER, JobStateChange, Retraining
from med_classifier.domain.uploads import CounterState, UploadedObject
from tests.helpers.fakes import MemoryCounter, MemoryJobs, RecordingLauncher


def service(threshold=3, overrides=None, launcher=None):
    return Retraining(MemoryCounter(), MemoryJobs(), launcher or RecordingLauncher(), (threshold, overrides or {}))


def upload(i, model="chest-ct"):
    return UploadedObject("bucket", f"uploads/{model}/normal/{i}.png", model, "normal")


def test_a_job_starts_when_pending_uploads_reach_the_threshold_not_before():
    retraining = service(threshold=3)
    assert [retraining.record_upload(upload(i)).started for i in range(2)] == [None, None]
    outcome = retraining.record_upload(upload(2))
    assert outcome.counted and outcome.upload == upload(2)
    job = outcome.started
    assert (job.model, job.trigger, job.backend, job.uploads, job.state) == (
        "chest-ct",
        UPLOADS_TRIGGER,
        "sagemaker",
        3,
        PENDING,
    )
    (request,) = retraining.launcher.started
    assert (request.job_id, request.model, request.hyperparameters) == (job.job_id, "chest-ct", {})
    stored = retraining.jobs.get(job.job_id)
    arn = job.job_id  # the training job's name (its ARN would show the account id)
    assert stored.backend_job == arn == job.backend_job


def test_per_model_thresholds_override_the_default():
    retraining = service(threshold=100, overrides={"chest-ct": 1})
    assert (retraining.threshold("chest-ct"), retraining.threshold("skin-lesion")) == (1, 100)
    assert retraining.record_upload(upload(1)).started is not None
    assert retraining.record_upload(upload(1, "skin-lesion")).started is None


def test_a_redelivered_upload_is_not_counted_but_may_start_a_due_job():
    retraining = service(threshold=1, launcher=RecordingLauncher(error=RuntimeError("capacity")))
    with pytest.raises(ServiceUnavailable):
        retraining.record_upload(upload(1))
    retraining.launcher.error = None
    again = retraining.record_upload(upload(1))
    assert not again.counted and again.started is not None


def test_a_job_that_cannot_start_is_failed_and_gives_its_uploads_back(caplog):
    error = RuntimeError("ResourceLimitExceeded: 0 instances for arn:aws:iam::123456789012:role/secret")
    retraining = service(threshold=2, launcher=RecordingLauncher(error=error))
    retraining.record_upload(upload(1))
    with (
        caplog.at_level(logging.ERROR, logger="med_classifier.domain.retraining"),
        pytest.raises(ServiceUnavailable) as info,
    ):
        retraining.record_upload(upload(2))
    (job,) = retraining.jobs.records.values()
    assert info.value.message == (
        f"The retraining job for 'chest-ct' could not be started; try again later. Job id: {job.job_id}."
    )
    assert info.value.details == [{"job_id": job.job_id, "failure_code": "launch_failed"}]
    assert info.value.__cause__ is error and info.value.status_code == 503
    # Callers see a code and a sentence; the service's words (an account id here) stay in the logs.
    assert (job.state, job.failure_code, job.failure_reason) == (
        FAILED,
        "launch_failed",
        "The training service did not start the job. The details are in the logs.",
    )
    assert retraining.counter.state("chest-ct").pending == 2
    assert retraining.counter.state("chest-ct").active_job is None
    assert retraining.counter.state("chest-ct").last_job == job.job_id
    assert f"could not start {job.job_id}" in caplog.messages
    assert "123456789012" in caplog.text


def test_a_manual_job_records_its_reason_and_hyperparameters_and_ignores_the_threshold():
    retraining = service(threshold=50)
    job = retraining.start_manual("chest-ct", reason="new scanner", hyperparameters={"epochs": "3"})
    assert (job.trigger, job.reason, job.uploads) == (MANUAL_TRIGGER, "new scanner", 0)
    assert retraining.launcher.started[0].hyperparameters == {"epochs": "3"}


def test_a_manual_job_while_one_runs_is_a_conflict_naming_it():
    retraining = service()
    running = retraining.start_manual("chest-ct")
    with pytest.raises(Conflict) as info:
        retraining.start_manual("chest-ct")
    assert info.value.message == (
        f"A retraining job for 'chest-ct' is already running: {running.job_id}. "
        f"GET /models/chest-ct/retrain/{running.job_id} shows it."
    )
    assert info.value.details == [{"active_job": running.job_id}]
    assert len(retraining.launcher.started) == 1


def test_a_progress_event_records_the_state_and_keeps_the_model_claimed():
    retraining = service(threshold=1)
    job = retraining.record_upload(upload(1)).started
    record = retraining.on_state_change(JobStateChange(job.job_id, IN_PROGRESS, "InProgress"))
    assert (record.state, record.service_status) == (IN_PROGRESS, "InProgress")
    assert retraining.counter.state("chest-ct").active_job == job.job_id


@pytest.mark.parametrize("state", TERMINAL_STATES)
def test_a_terminal_event_releases_the_model_and_starts_the_next_due_job(state):
    retraining = service(threshold=1)
    first = retraining.record_upload(upload(1)).started
    retraining.record_upload(upload(2))  # arrives while the first job runs
    record = retraining.on_state_change(
        JobStateChange(first.job_id, state, "X", failure_code="job_error", detail="why")
    )
    assert (record.state, record.failure_code, record.failure_reason) == (
        state,
        "job_error",
        public_failure("job_error"),
    )
    assert len(retraining.launcher.started) == 2
    assert retraining.counter.state("chest-ct").active_job == retraining.launcher.started[1].job_id


def test_a_terminal_event_for_a_job_that_no_longer_holds_the_model_starts_nothing():
    retraining = service(threshold=1)
    first = retraining.record_upload(upload(1)).started
    retraining.on_state_change(JobStateChange(first.job_id, COMPLETED, "Completed"))
    second_upload = retraining.record_upload(upload(2)).started
    retraining.record_upload(upload(3))
    # A repeated "Completed" for the first job: the second one holds the model, nothing is released or started.
    retraining.on_state_change(JobStateChange(first.job_id, STOPPED, "Stopped"))
    assert retraining.counter.state("chest-ct").active_job == second_upload.job_id
    assert len(retraining.launcher.started) == 2


def test_status_shows_the_counter_against_the_models_threshold_and_its_recent_jobs():
    retraining = service(threshold=10, overrides={"chest-ct": 2})
    for i in range(7):
        retraining.record_upload(upload(i))
        if retraining.counter.state("chest-ct").active_job:
            retraining.on_state_change(JobStateChange(retraining.counter.state("chest-ct").active_job, COMPLETED, "C"))
    status = retraining.status("chest-ct", recent=2)
    assert status.threshold == 2 and status.total_uploads == 7
    assert len(status.jobs) == 2 and all(job.model == "chest-ct" for job in status.jobs)
    assert len(retraining.status("chest-ct").jobs) == 3  # all three that ran
    for i in range(7, 15):
        retraining.record_upload(upload(i))
        if retraining.counter.state("chest-ct").active_job:
            retraining.on_state_change(JobStateChange(retraining.counter.state("chest-ct").active_job, COMPLETED, "C"))
    assert len(retraining.status("chest-ct").jobs) == 5  # seven ran: the five latest by default


def test_a_started_job_is_logged_with_its_trigger_uploads_and_backend(caplog):
    retraining = service(threshold=2)
    retraining.record_upload(upload(1))
    with caplog.at_level(logging.INFO, logger="med_classifier.domain.retraining"):
        job = retraining.record_upload(upload(2)).started
    assert f"started {job.job_id} (uploads, 2 uploads pending) on sagemaker" in caplog.messages


def test_status_names_the_counters_fields():
    retraining = service(threshold=5)
    retraining.counter.states["m"] = CounterState("m", 12, 3, "job-2", "job-1")
    status = retraining.status("m")
    assert asdict(status) == {
        "total_uploads": 12,
        "uploads_since_last_job": 3,
        "threshold": 5,
        "active_job": "job-2",
        "last_job": "job-1",
        "jobs": [],
    }
