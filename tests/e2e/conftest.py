"""The local stack, started by the tests themselves: moto server + the Docker-free SAM runner, and the
one retraining job that several modules check."""

from dataclasses import dataclass

import pytest
import requests

from tests.helpers.local_stack import running_moto, running_stack
from tests.helpers.polling import wait_for
from tests.helpers.retraining_http import ended_job, model_view, served_version
from training.datasets import chest_ct

BUCKET = "med-classifier-models-e2e"
# chest-ct retrains after 4 uploads, skin-lesion after 5 (README's upload script); the others never do here.
RETRAIN_THRESHOLDS = {"chest-ct": 4, "skin-lesion": 5}


@pytest.fixture(scope="session")
def moto_server():
    with running_moto() as server:
        yield server


@pytest.fixture(scope="session")
def stack(moto_server, tmp_path_factory):
    with running_stack(moto_server, tmp_path_factory, bucket=BUCKET, retrain_thresholds=RETRAIN_THRESHOLDS) as running:
        yield running


JOB_TIMEOUT = 300
IMPOSSIBLE_GATE = {"reason": "e2e: impossible gate", "gate": {"min": {"test_accuracy": 1.01}}}


@dataclass
class RejectedJob:
    """A manual chest-ct job with a gate no model passes, from start to end."""

    started: requests.Response  # the 202
    conflict: requests.Response  # a second request while it ran
    finished: dict  # GET /models/chest-ct/retrain/{job_id} once it ended
    production_before: str
    production_after: str
    served_after: str  # the version predict answered with afterwards
    versions_before: list[str]
    versions_after: list[str]


@pytest.fixture(scope="session")
def impossible_gate_job(stack) -> RejectedJob:
    """Started once for the session (as the session's ml-admin) and checked by test_contract.py (its 202,
    409 and job record against the document) and test_retraining_loop_over_http.py (rejected, nothing
    published, production still serving): one training job where each module used to run its own."""
    model = "chest-ct"
    wait_for(lambda: model_view(stack, model)["retraining"]["active_job"] is None, JOB_TIMEOUT, "no job to run")
    production_before = model_view(stack, model)["production_version"]
    versions_before = stack["store"].list_versions(model)
    url = f"{stack['url']}/models/{model}/retrain"
    started = stack["http"].post(url, json=IMPOSSIBLE_GATE, timeout=30)
    conflict = stack["http"].post(url, json={}, timeout=30)
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    finished = ended_job(stack, model, job_id, JOB_TIMEOUT)
    return RejectedJob(
        started=started,
        conflict=conflict,
        finished=finished,
        production_before=production_before,
        production_after=model_view(stack, model)["production_version"],
        served_after=served_version(stack, model, chest_ct.example_image("normal")),
        versions_before=versions_before,
        versions_after=stack["store"].list_versions(model),
    )
