"""The functions that run no model, called on their sample events in an interpreter that has
only their layers (tests/unit/test_function_layers.py) against moto in server mode: importing a
handler is not enough, since a package imported lazily on a request path would be missing only
then. One labelled upload and one manual retrain go through the whole loop: the retraining API
signs the upload and starts a job, the counter counts the upload, the job-state function records
the job's end and the reconciler checks the claims; the drift monitor reports on its schedule."""

from __future__ import annotations

import json

import pytest

from med_classifier.adapters.model_store import ModelStore
from scripts.local_resources import provision
from scripts.local_stack import MotoServer, aws_client, free_port
from tests.helpers.image_models import colour_candidate
from tests.helpers.models import REPO_ROOT, publish
from tests.helpers.sample_events import EVENTS, for_model, job_failed, sample_event, upload_notification
from tests.helpers.uploads import put_upload
from tests.unit.test_function_layers import function_environment, report, run_in_lambda_path

pytestmark = pytest.mark.slow  # starts moto in server mode and one interpreter per function

MODEL, LABEL = "colour-test", "green"  # a hand-built image model: nothing is trained


@pytest.fixture(scope="module")
def moto_url():
    server = MotoServer(port=free_port()).start()
    try:
        env = json.loads((EVENTS / "env.json").read_text())["Parameters"]
        provision(lambda service: aws_client(service, server.url), REPO_ROOT / "template.yaml", env)
        publish(ModelStore(env["MODELS_BUCKET"], aws_client("s3", server.url)), colour_candidate(MODEL))
        yield server.url
    finally:
        server.stop()


def call(function: str, events: list[dict], moto_url: str, tmp_path) -> dict:
    """{"modules": top-level modules imported, "results": the handler's answers}."""
    environment = function_environment(function, {"AWS_ENDPOINT_URL": moto_url})
    directory = tmp_path / function
    directory.mkdir()
    return report(run_in_lambda_path(function, directory, events=events, environment=environment), directory)


def api_calls(moto_url: str, tmp_path) -> tuple[dict, str, str]:
    upload = for_model(sample_event("api-create-upload.json"), MODEL)
    upload["body"] = json.dumps({"label": LABEL, "content_type": "image/png"})
    retrain = for_model(sample_event("api-retrain.json"), MODEL)
    retrain["body"] = json.dumps({"reason": "layer test"})
    called = call("RetrainingApiFunction", [upload, retrain], moto_url, tmp_path)
    signed, started = called["results"]
    assert (signed["statusCode"], started["statusCode"]) == (201, 202), called["results"]
    return called, json.loads(signed["body"])["fields"]["key"], json.loads(started["body"])["job_id"]


def test_the_retraining_loop_runs_with_only_the_layers_of_its_functions(moto_url, tmp_path):
    api, key, job_id = api_calls(moto_url, tmp_path)
    # The image the presigned POST would carry, with its uploader: the counter reads its header
    # and metadata (without Pillow, which its layers lack) and leaves it in place.
    s3, bucket = aws_client("s3", moto_url), function_environment("UploadCounterFunction")["UPLOADS_BUCKET"]
    put_upload(s3, bucket, key)
    counter = call("UploadCounterFunction", [upload_notification(key)], moto_url, tmp_path)
    assert counter["results"] == [{"batchItemFailures": []}]
    assert s3.list_objects_v2(Bucket=bucket, Prefix="quarantine/")["KeyCount"] == 0
    assert s3.list_objects_v2(Bucket=bucket, Prefix=key)["KeyCount"] == 1
    # The job is running in moto: the reconciler asks the training service about it and leaves it be.
    reconciler = call("ReconcilerFunction", [sample_event("eventbridge-scheduled-reconcile.json")], moto_url, tmp_path)
    assert reconciler["results"] == [{"active": 1, "freed": 0, "actions": {job_id: "running"}}]
    job_state = call("JobStateFunction", [job_failed(job_id, MODEL)], moto_url, tmp_path)
    assert job_state["results"] == [{"recorded": True, "job_id": job_id, "state": "Failed"}]
    for name, called in {"api": api, "counter": counter, "reconciler": reconciler, "job state": job_state}.items():
        assert set(called["modules"]) & {"onnxruntime", "PIL"} == set(), name
    assert "numpy" in api["modules"]
    assert {"numpy"} & {*counter["modules"], *reconciler["modules"], *job_state["modules"]} == set()


def test_the_drift_monitor_runs_with_only_its_layers(moto_url, tmp_path):
    # Pure-Python drift (domain/drift.py): the service layer has no numpy, and the run must not need it.
    called = call("DriftMonitorFunction", [sample_event("eventbridge-scheduled-drift.json")], moto_url, tmp_path)
    (result,) = called["results"]
    assert result["statuses"] == {MODEL: "insufficient_data"} and result["drifting"] == [], result
    assert set(called["modules"]) & {"numpy", "onnxruntime", "PIL"} == set()
