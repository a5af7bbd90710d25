"""The retraining loop over HTTP against the local stack: presigned POSTs, real uploads
to S3 (moto), S3 → SQS → UploadCounter, exactly one SageMaker job, the job run as a
local process, EventBridge state changes, and the new version served without a
redeploy; then a job the gate rejects, which leaves production serving."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from scripts.local_stack import aws_client
from scripts.upload_labelled import upload
from tests.e2e.conftest import JOB_TIMEOUT, RETRAIN_THRESHOLDS
from tests.helpers.polling import wait_for
from tests.helpers.retraining_http import ended_job, job_status, model_view, served_version
from tests.helpers.tokens import subject
from training.datasets import chest_ct

MODEL = "chest-ct"
THRESHOLD = RETRAIN_THRESHOLDS[MODEL]


def images(tmp_path, count):
    paths = []
    for i in range(count):
        label = chest_ct.CLASSES[i % 2]
        path = tmp_path / f"{label}-{i}.png"
        path.write_bytes(chest_ct.example_image(label))
        paths.append((label, path))
    return paths


def uploaded_objects(stack) -> int:
    listing = stack["s3"].list_objects_v2(Bucket=stack["env"]["UPLOADS_BUCKET"], Prefix=f"uploads/{MODEL}/")
    return listing.get("KeyCount", 0)


def test_uploads_past_the_threshold_retrain_once_and_the_new_version_is_served(stack, tmp_path):
    # Compared with the counter as this test finds it: other tests may have run first.
    before = wait_for(
        lambda: (view := model_view(stack, MODEL))["retraining"]["active_job"] is None and view,
        JOB_TIMEOUT,
        "no job to be running before the uploads",
    )
    production, counter = before["production_version"], before["retraining"]
    assert counter["threshold"] == THRESHOLD and counter["uploads_since_last_job"] < THRESHOLD
    jobs_before = {job["job_id"] for job in counter["jobs"]}
    objects_before = uploaded_objects(stack)
    assert served_version(stack, MODEL, chest_ct.example_image("normal")) == production

    # More than one threshold's worth at once, uploaded concurrently: one job, not two (and not a
    # second one when it ends: fewer than a threshold's worth remain pending).
    batch = images(tmp_path, 2 * THRESHOLD - 1 - counter["uploads_since_last_job"])
    clinician = stack["tokens"]["clinician"]  # sent to the API only: the form goes to S3 without it
    with ThreadPoolExecutor(max_workers=len(batch)) as pool, requests.Session() as plain:
        keys = list(pool.map(lambda item: upload(plain, stack["url"], MODEL, item[0], item[1], clinician), batch))
    uploaded_at = time.monotonic()
    assert len(set(keys)) == len(batch) and all(k.startswith(f"uploads/{MODEL}/") for k in keys)
    # Each object records who uploaded it (the presigned policy fixed the metadata).
    s3 = aws_client("s3", stack["moto_url"])
    uploaders = {s3.head_object(Bucket=stack["env"]["UPLOADS_BUCKET"], Key=k)["Metadata"].get("uploader") for k in keys}
    assert uploaders == {subject(clinician)}

    # S3 delivers at least once: a repeated notification for an uploaded object does not count again.
    sqs = aws_client("sqs", stack["moto_url"])
    sqs.send_message(
        QueueUrl=stack["resources"].queue_urls["UploadQueue"],
        MessageBody=json.dumps(
            {
                "Records": [
                    {
                        "eventName": "ObjectCreated:Post",
                        "s3": {
                            "bucket": {"name": stack["env"]["UPLOADS_BUCKET"]},
                            "object": {"key": keys[0], "size": 10},
                        },
                    }
                ]
            }
        ),
    )

    total = counter["total_uploads"] + len(batch)
    counted = wait_for(
        lambda: (view := model_view(stack, MODEL))["retraining"]["total_uploads"] == total and view,
        60,
        "the counter to count every upload once",
    )
    jobs = [job for job in counted["retraining"]["jobs"] if job["job_id"] not in jobs_before]
    assert len(jobs) == 1, jobs
    job = jobs[0]
    assert job["trigger"] == "uploads" and job["backend"] == "sagemaker" and job["uploads"] >= THRESHOLD
    assert counted["retraining"]["active_job"] == job["job_id"]

    finished = ended_job(stack, MODEL, job["job_id"], JOB_TIMEOUT)
    assert finished["state"] == "Completed", finished
    assert finished["outcome"] == "promoted", finished
    assert finished["production_version"] == production and finished["version"] != production
    assert finished["started_at"] and finished["ended_at"] and finished["metrics"]["test_accuracy"] > 0
    new_version = finished["version"]

    png = chest_ct.example_image("normal")
    wait_for(lambda: served_version(stack, MODEL, png) == new_version, 30, "predict to answer with the new version")
    elapsed = time.monotonic() - uploaded_at
    print(
        f"\n[loop] threshold-crossing uploads -> new version serving: {elapsed:.1f} s; job record: "
        + json.dumps(
            {
                k: finished[k]
                for k in (
                    "job_id",
                    "state",
                    "service_status",
                    "outcome",
                    "version",
                    "uploads",
                    "created_at",
                    "started_at",
                    "ended_at",
                )
            }
        )
    )

    after = model_view(stack, MODEL)
    assert after["production_version"] == new_version
    manifest = stack["store"].read_manifest(MODEL, new_version)
    assert manifest.training_data.n_uploads == objects_before + len(batch)  # every labelled upload of the model
    # The job's EventBridge "Completed" released the model: no job active, the rest of the uploads pending.
    wait_for(lambda: model_view(stack, MODEL)["retraining"]["active_job"] is None, 30, "the model to be released")
    pending = counter["uploads_since_last_job"] + len(batch) - job["uploads"]
    assert model_view(stack, MODEL)["retraining"]["uploads_since_last_job"] == pending
    assert job_status(stack, MODEL, job["job_id"])["service_status"] == "Completed"  # SageMaker's word, via EventBridge
    (ran,) = [j for j in stack["emulation"].jobs.jobs if j.name == job["job_id"]]
    assert ran.status == "Completed" and ran.exit_code == 0
    # The reconciler ran on its schedule all along (every 2 s here) and did not end the running job early:
    # the job's own outcome (promoted) and SageMaker's "Completed" were recorded, not a reconciler's verdict.
    (reconciler,) = [s for s in stack["emulation"].schedules if s.schedule.function_id == "ReconcilerFunction"]
    assert reconciler.invocations > 0


def test_a_job_the_gate_rejects_leaves_production_serving(stack, impossible_gate_job):
    url = f"{stack['url']}/models/{MODEL}/retrain"
    anonymous = stack["http"].post(url, json={}, headers={"Authorization": None}, timeout=30)
    assert (anonymous.status_code, anonymous.json()) == (401, {"message": "Unauthorized"})
    as_clinician = {"Authorization": stack["tokens"]["clinician"]}
    assert stack["http"].post(url, json={}, headers=as_clinician, timeout=30).status_code == 403
    # The session's ml-admin started a job with a gate no model passes (tests/e2e/conftest.py).
    job = impossible_gate_job
    started = job.started.json()
    assert started["trigger"] == "manual" and started["state"] == "Pending"
    assert started["requested_by"] == subject(stack["tokens"]["ml-admin"])
    assert job.conflict.status_code == 409 and started["job_id"] in job.conflict.json()["error"]["message"]

    assert (job.finished["state"], job.finished["outcome"]) == ("Completed", "rejected"), job.finished
    assert any("test_accuracy" in reason for reason in job.finished["reasons"]), job.finished["reasons"]
    assert job.production_after == job.production_before
    assert job.served_after == job.production_before
    assert job.versions_after == job.versions_before  # nothing half-published


@pytest.mark.parametrize(
    "body, status, message",
    [
        (
            {"label": "not-a-class", "content_type": "image/png"},
            422,
            "Unknown label 'not-a-class' for 'chest-ct'; expected one of ['normal', 'adenocarcinoma'].",
        ),
        (
            {"label": "normal", "content_type": "image/gif"},
            415,
            "content_type 'image/gif' is not accepted: use image/jpeg or image/png.",
        ),
    ],
)
def test_bad_upload_requests_are_4xx_over_http(stack, body, status, message):
    response = stack["http"].post(f"{stack['url']}/models/{MODEL}/uploads", json=body, timeout=30)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"] == message
