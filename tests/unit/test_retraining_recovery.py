"""The retraining loop recovers by itself (med_classifier.domain.retraining): the claim's lease,
and the scheduled reconciler that ends what the events did not, with in-memory fakes and a
clock the tests move. The DynamoDB and SageMaker/Batch adapters are tested against moto and
botocore's Stubber in tests/integration/test_retraining_faults.py and tests/unit/test_adapters.py."""

import logging

import pytest

from med_classifier.domain.errors import Conflict
from med_classifier.domain.jobs import COMPLETED, FAILED, IN_PROGRESS, PENDING, JobStateChange, public_failure
from med_classifier.domain.retraining import (
    LAUNCH_GRACE_SECONDS,
    LEASE_MARGIN_SECONDS,
    Reconciled,
    Recovery,
    Retraining,
)
from med_classifier.domain.uploads import UploadedObject
from tests.helpers.fakes import MemoryCounter, MemoryJobs, RecordingLauncher

MAX_RUNTIME = 100


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class DiesOnCreate(MemoryJobs):
    """The starter's process dies after its claim, before the job is recorded or launched."""

    dying = True

    def create(self, record):
        if self.dying:
            raise SystemExit("killed")
        super().create(record)


def loop(threshold=2, jobs=None):
    clock = Clock()
    retraining = Retraining(
        MemoryCounter(),
        jobs or MemoryJobs(),
        RecordingLauncher(),
        (threshold, {}),
        Recovery.for_max_runtime(MAX_RUNTIME),
        clock,
    )
    return retraining, clock


def upload(i, model="chest-ct"):
    return UploadedObject("bucket", f"uploads/{model}/normal/{i}.png", model, "normal")


def test_the_lease_is_the_max_runtime_plus_a_margin():
    assert Recovery.for_max_runtime(MAX_RUNTIME).lease_seconds == MAX_RUNTIME + LEASE_MARGIN_SECONDS == 3700
    assert Recovery().launch_grace_seconds == LAUNCH_GRACE_SECONDS == 600


def test_a_claim_records_when_it_was_taken_its_lease_and_its_uploads():
    retraining, clock = loop(threshold=2)
    retraining.record_upload(upload(1))
    job = retraining.record_upload(upload(2)).started
    state = retraining.counter.state("chest-ct")
    assert (state.active_job, state.claimed_at, state.lease_expires_at, state.claimed_uploads, state.pending) == (
        job.job_id,
        clock.now,
        clock.now + MAX_RUNTIME + LEASE_MARGIN_SECONDS,
        2,
        0,
    )


def test_an_expired_lease_is_taken_over_and_its_job_recorded_as_failed(caplog):
    retraining, clock = loop()
    stuck = retraining.start_manual("chest-ct")
    clock.now += MAX_RUNTIME + LEASE_MARGIN_SECONDS  # the lease ends now: still held
    with pytest.raises(Conflict):
        retraining.start_manual("chest-ct")
    clock.now += 0.001
    with caplog.at_level(logging.WARNING, logger="med_classifier.domain.retraining"):
        fresh = retraining.start_manual("chest-ct")
    assert retraining.counter.state("chest-ct").active_job == fresh.job_id
    old = retraining.jobs.get(stuck.job_id)
    assert (old.state, old.failure_code, old.failure_reason) == (
        FAILED,
        "lease_expired",
        public_failure("lease_expired"),
    )
    assert f"{fresh.job_id} took over the expired claim of {stuck.job_id} on chest-ct" in caplog.messages


def test_a_starter_killed_between_claim_and_launch_is_recovered_and_the_next_upload_starts_a_job(caplog):
    jobs = DiesOnCreate()
    retraining, clock = loop(threshold=2, jobs=jobs)
    retraining.record_upload(upload(1))
    with pytest.raises(SystemExit):
        retraining.start_manual("chest-ct")  # claims the one pending upload, then the process dies
    claimed = retraining.counter.state("chest-ct")
    assert claimed.active_job is not None and claimed.pending == 0 and claimed.claimed_uploads == 1
    jobs.dying = False

    clock.now += LAUNCH_GRACE_SECONDS - 1  # its starter may still be launching it
    assert retraining.reconcile() == [Reconciled("chest-ct", claimed.active_job, "starting", None)]
    assert retraining.counter.state("chest-ct").active_job == claimed.active_job

    clock.now += 1
    with caplog.at_level(logging.WARNING, logger="med_classifier.domain.retraining"):
        assert retraining.reconcile() == [Reconciled("chest-ct", claimed.active_job, "released", None)]
    assert caplog.messages == [f"{claimed.active_job} of chest-ct: launch_lost; freeing the model"]
    freed = retraining.counter.state("chest-ct")
    assert (freed.active_job, freed.pending, freed.claimed_uploads) == (None, 1, 0)  # its upload is pending again
    assert retraining.launcher.started == []  # 1 pending < threshold 2

    job = retraining.record_upload(upload(2)).started
    assert job is not None and job.uploads == 2 and retraining.launcher.started[0].job_id == job.job_id


def test_a_recovered_claim_whose_uploads_are_due_starts_the_next_job_at_once():
    jobs = DiesOnCreate()
    retraining, clock = loop(threshold=2, jobs=jobs)
    retraining.record_upload(upload(1))
    with pytest.raises(SystemExit):
        retraining.record_upload(upload(2))
    jobs.dying = False
    clock.now += LAUNCH_GRACE_SECONDS
    (result,) = retraining.reconcile()
    assert result.action == "released"
    (started,) = retraining.launcher.started
    assert retraining.counter.state("chest-ct").active_job == started.job_id
    assert retraining.jobs.get(started.job_id).uploads == 2


def test_a_job_whose_end_event_was_lost_is_ended_from_the_service_and_the_next_due_job_starts():
    retraining, clock = loop(threshold=1)
    job = retraining.record_upload(upload(1)).started
    retraining.record_upload(upload(2))  # arrives while the job runs: due once it ends
    retraining.launcher.service_states[job.job_id] = JobStateChange(job.job_id, COMPLETED, "Completed")
    assert retraining.reconcile() == [Reconciled("chest-ct", job.job_id, "ended", COMPLETED)]  # no event came
    assert retraining.jobs.get(job.job_id).service_status == "Completed"
    (_, second) = retraining.launcher.started
    assert retraining.counter.state("chest-ct").active_job == second.job_id


def test_a_failure_the_service_reports_to_the_reconciler_is_recorded_as_a_code_and_logged(caplog):
    retraining, _ = loop(threshold=1)
    job = retraining.record_upload(upload(1)).started
    detail = "AlgorithmError: Traceback ... arn:aws:iam::123456789012:role/secret"
    retraining.launcher.service_states[job.job_id] = JobStateChange(
        job.job_id, FAILED, "Failed", "algorithm_error", detail
    )
    with caplog.at_level(logging.WARNING, logger="med_classifier.domain.retraining"):
        (result,) = retraining.reconcile()
    record = retraining.jobs.get(job.job_id)
    assert (result.action, record.state, record.failure_code) == ("ended", FAILED, "algorithm_error")
    assert record.failure_reason == "The training code failed. The details are in the logs."
    assert f"{job.job_id}: Failed (algorithm_error): {detail}" in caplog.messages
    assert retraining.counter.state("chest-ct").active_job is None


def test_a_running_job_keeps_its_claim_and_its_state_follows_the_service():
    retraining, clock = loop(threshold=1)
    job = retraining.record_upload(upload(1)).started
    assert retraining.jobs.get(job.job_id).state == PENDING
    clock.now += 10 * LAUNCH_GRACE_SECONDS
    assert retraining.reconcile() == [Reconciled("chest-ct", job.job_id, "running", IN_PROGRESS)]
    record = retraining.jobs.get(job.job_id)
    assert (record.state, record.service_status) == (IN_PROGRESS, "InProgress")
    assert retraining.counter.state("chest-ct").active_job == job.job_id


def test_a_job_that_recorded_its_end_keeps_the_claim_while_the_service_still_runs_it():
    retraining, _ = loop(threshold=1)
    job = retraining.record_upload(upload(1)).started
    retraining.jobs.set_state(job.job_id, COMPLETED)  # the job recorded its outcome; its process is finishing
    (result,) = retraining.reconcile()
    assert (result.action, result.state) == ("running", IN_PROGRESS)
    assert retraining.jobs.get(job.job_id).state == COMPLETED  # never moved back
    assert retraining.counter.state("chest-ct").active_job == job.job_id


def test_a_claim_whose_ended_job_the_service_no_longer_knows_is_released():
    retraining, _ = loop(threshold=1)
    job = retraining.record_upload(upload(1)).started
    retraining.jobs.set_state(job.job_id, COMPLETED)
    del retraining.launcher.service_states[job.job_id]  # Batch forgets jobs some days after they end
    assert retraining.reconcile() == [Reconciled("chest-ct", job.job_id, "released", COMPLETED)]
    assert retraining.counter.state("chest-ct").active_job is None


def test_a_lost_end_event_of_a_job_that_recorded_its_own_end_frees_the_model():
    retraining, _ = loop(threshold=1)
    job = retraining.record_upload(upload(1)).started
    retraining.jobs.set_state(job.job_id, COMPLETED)
    retraining.launcher.service_states[job.job_id] = JobStateChange(job.job_id, COMPLETED, "Completed")
    (result,) = retraining.reconcile()
    assert (result.action, result.state) == ("ended", COMPLETED)
    assert retraining.counter.state("chest-ct").active_job is None


def test_a_launched_job_the_service_does_not_know_is_failed_after_the_grace_and_its_uploads_stay_used():
    retraining, clock = loop(threshold=2)
    retraining.record_upload(upload(1))
    job = retraining.record_upload(upload(2)).started
    del retraining.launcher.service_states[job.job_id]
    clock.now += LAUNCH_GRACE_SECONDS - 1
    assert retraining.reconcile() == [Reconciled("chest-ct", job.job_id, "starting", PENDING)]
    clock.now += 1
    assert retraining.reconcile() == [Reconciled("chest-ct", job.job_id, "released", FAILED)]
    record = retraining.jobs.get(job.job_id)
    assert (record.state, record.failure_code) == (FAILED, "job_not_found")
    # The job was launched: its two uploads were used, not given back (which would start another job).
    state = retraining.counter.state("chest-ct")
    assert (state.pending, state.active_job, len(retraining.launcher.started)) == (0, None, 1)


def test_a_recorded_job_that_never_launched_gives_its_uploads_back():
    class DiesOnLaunch(RecordingLauncher):
        def start(self, job):
            raise SystemExit("killed")

    retraining, clock = loop(threshold=1)
    retraining.launcher = DiesOnLaunch()
    with pytest.raises(SystemExit):
        retraining.record_upload(upload(1))
    (pending_job,) = retraining.jobs.records.values()
    clock.now += LAUNCH_GRACE_SECONDS
    retraining.launcher = RecordingLauncher()
    (result,) = retraining.reconcile()
    record = retraining.jobs.get(pending_job.job_id)
    assert (result.action, record.state, record.failure_code) == ("released", FAILED, "launch_lost")
    (restarted,) = retraining.launcher.started  # the upload went back to pending and is due again
    assert retraining.jobs.get(restarted.job_id).uploads == 1


def test_one_models_trouble_does_not_stop_the_others_recovery(caplog):
    class Flaky(RecordingLauncher):
        def describe(self, job):
            if job.model == "skin-lesion":
                raise RuntimeError("ThrottlingException")
            return super().describe(job)

    retraining, _ = loop(threshold=1)
    retraining.launcher = Flaky()
    broken = retraining.record_upload(upload(1, "skin-lesion")).started
    fine = retraining.record_upload(upload(1)).started
    retraining.launcher.service_states[fine.job_id] = JobStateChange(fine.job_id, COMPLETED, "Completed")
    with caplog.at_level(logging.ERROR, logger="med_classifier.domain.retraining"):
        results = retraining.reconcile()
    assert [(r.job_id, r.action) for r in results] == [(fine.job_id, "ended")]
    assert f"could not reconcile {broken.job_id} of skin-lesion" in caplog.messages
    assert retraining.counter.state("skin-lesion").active_job == broken.job_id


def test_nothing_to_reconcile_without_claims():
    retraining, _ = loop()
    assert retraining.reconcile() == []
