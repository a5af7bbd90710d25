"""Fault injection: the retraining loop and serving recover by themselves. The functions run as
Lambda runs them, against moto with the template's tables, queues and buckets; faults are
injected where they happen on AWS: a starter process killed between claim and launch, a job
state-change event that never arrives, throttled or conflicting DynamoDB and S3 requests
(botocore's before-call hook answers with the service's error), a corrupt model version."""

import json
import time

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.awsrequest import AWSResponse
from moto import mock_aws
from moto.sagemaker.models import sagemaker_backends

from med_classifier.adapters.model_store import ModelStore
from med_classifier.domain.jobs import COMPLETED, FAILED
from med_classifier.domain.retraining import LAUNCH_GRACE_SECONDS
from scripts.local_resources import provision
from tests.helpers.models import REPO_ROOT, LambdaContext, breast_cancer_candidate, load_function_module, publish
from tests.helpers.uploads import put_upload

ENV = {
    k: v
    for k, v in json.loads((REPO_ROOT / "events" / "env.json").read_text())["Parameters"].items()
    if k != "AWS_ENDPOINT_URL"
}
PREDICT_EVENT = json.loads((REPO_ROOT / "events" / "api-predict-breast-cancer.json").read_text())


@pytest.fixture
def aws(monkeypatch):
    with mock_aws():
        for name, value in ENV.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("RETRAIN_THRESHOLDS", json.dumps({"chest-ct": 2}))
        yield provision(
            lambda service: boto3.client(service, region_name="us-east-1"), REPO_ROOT / "template.yaml", ENV
        )


def inject(client, operation: str, errors: list[dict]) -> list[dict]:
    """Answers the next len(errors) `operation` calls of `client` with these errors, as the service
    would (status 400/503 with the error's code); later calls reach moto. Returns the calls seen."""
    seen = []

    def answer(params, **_):
        seen.append(params)
        if not errors:
            return None
        error = errors.pop(0)
        status = error.pop("status", 400)
        return AWSResponse("https://injected", status, {}, None), {"Error": error, **error.pop("extra", {})}

    client.meta.events.register(f"before-call.{client.meta.service_model.service_id.hyphenize()}.{operation}", answer)
    return seen


def sqs_event(*keys: str, message: str = "m1") -> dict:
    body = json.dumps(
        {
            "Records": [
                {
                    "eventName": "ObjectCreated:Post",
                    "s3": {"bucket": {"name": ENV["UPLOADS_BUCKET"]}, "object": {"key": k}},
                }
                for k in keys
            ]
        }
    )
    record = {"messageId": message, "receiptHandle": "r", "body": body, "attributes": {}, "messageAttributes": {}}
    return {"Records": [record | {"eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:q"}]}


def count(counter, *keys: str, message: str = "m1") -> list[str]:
    """Uploads `keys` (a PNG with its uploader each, which the counter checks before it counts) and
    delivers one SQS message announcing them; returns the message ids left for redelivery."""
    s3 = boto3.client("s3", region_name="us-east-1")
    for uploaded in keys:
        put_upload(s3, ENV["UPLOADS_BUCKET"], uploaded)
    response = counter.lambda_handler(sqs_event(*keys, message=message), LambdaContext("UploadCounterFunction", 256))
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def key(i: int) -> str:
    return f"uploads/chest-ct/normal/{i}.png"


def reconcile(reconciler, after_seconds: float = 0) -> dict:
    service = reconciler._service()
    service.clock = lambda: time.time() + after_seconds
    return reconciler.lambda_handler({"detail-type": "Scheduled Event", "detail": {}}, LambdaContext("Reconciler", 256))


def test_a_counter_killed_between_claim_and_launch_is_recovered_by_the_reconciler(aws):
    counter, reconciler = load_function_module("upload_counter"), load_function_module("reconciler")
    assert count(counter, key(1)) == []

    def killed(record):
        raise SystemExit("the function's process died")  # after the claim, before the job exists

    counter._service().jobs.create = killed
    with pytest.raises(SystemExit):
        count(counter, key(2), message="m2")
    stuck = counter._service().counter.state("chest-ct")
    assert stuck.active_job is not None and (stuck.pending, stuck.claimed_uploads) == (0, 2)

    fresh = load_function_module("upload_counter")  # SQS redelivers to a new container: the model stays claimed
    assert count(fresh, key(2), message="m2") == [] and count(fresh, key(3), message="m3") == []
    assert fresh._service().counter.state("chest-ct").active_job == stuck.active_job
    assert fresh._service().jobs.recent("chest-ct") == []

    assert reconcile(reconciler) == {"active": 1, "freed": 0, "actions": {stuck.active_job: "starting"}}
    result = reconcile(reconciler, after_seconds=LAUNCH_GRACE_SECONDS + 1)
    assert result == {"active": 1, "freed": 1, "actions": {stuck.active_job: "released"}}

    # The two claimed uploads went back to pending with the third: due, so the next job started at once.
    state = fresh._service().counter.state("chest-ct")
    (job,) = fresh._service().jobs.recent("chest-ct")
    assert state.active_job == job.job_id != stuck.active_job and (state.pending, job.uploads) == (0, 3)
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    assert sagemaker.describe_training_job(TrainingJobName=job.job_id)["TrainingJobName"] == job.job_id


def test_a_lost_end_event_is_recovered_from_the_service_and_the_next_job_starts(aws):
    counter, reconciler = load_function_module("upload_counter"), load_function_module("reconciler")
    count(counter, key(1), key(2))
    (job,) = counter._service().jobs.recent("chest-ct")
    count(counter, key(3), key(4), message="m2")  # due again, but the model is claimed
    # SageMaker ended the job (moto's jobs end at once); its state-change event never arrives.
    assert reconcile(reconciler)["actions"] == {job.job_id: "ended"}
    ended = counter._service().jobs.get(job.job_id)
    assert (ended.state, ended.service_status) == (COMPLETED, "Completed")
    (second, _) = counter._service().jobs.recent("chest-ct")
    assert counter._service().counter.state("chest-ct").active_job == second.job_id != job.job_id


def test_a_failure_found_by_the_reconciler_shows_a_code_and_keeps_the_services_words_in_the_logs(aws, caplog):
    counter, reconciler = load_function_module("upload_counter"), load_function_module("reconciler")
    count(counter, key(1), key(2))
    (job,) = counter._service().jobs.recent("chest-ct")
    training_job = sagemaker_backends["123456789012"]["us-east-1"].training_jobs[job.job_id]
    words = "AlgorithmError: Traceback (most recent call last) ... arn:aws:iam::123456789012:role/secret"
    training_job.training_job_status, training_job.failure_reason = "Failed", words
    assert reconcile(reconciler)["actions"] == {job.job_id: "ended"}

    api = load_function_module("retraining_api")
    event = json.loads((REPO_ROOT / "events" / "api-retrain.json").read_text())
    event |= {"httpMethod": "GET", "resource": "/models/{model}/retrain/{job_id}", "body": None}
    event |= {"path": f"/models/chest-ct/retrain/{job.job_id}"}
    event["pathParameters"] = {"model": "chest-ct", "job_id": job.job_id}
    response = api.lambda_handler(event, LambdaContext("RetrainingApiFunction", 512))
    shown = json.loads(response["body"])
    assert (response["statusCode"], shown["state"], shown["failure_code"]) == (200, FAILED, "algorithm_error")
    assert shown["failure_reason"] == "The training code failed. The details are in the logs."
    assert "123456789012" not in response["body"] and "Traceback" not in response["body"]
    assert words in caplog.text


def test_a_throttled_count_is_redelivered_and_counted_exactly_once(aws):
    counter = load_function_module("upload_counter")
    client = counter._service().counter.client
    calls = inject(client, "TransactWriteItems", [{"Code": "ThrottlingException", "Message": "Rate exceeded"}])
    with pytest.raises(BatchProcessingError):  # the whole batch failed: the invocation fails, SQS redelivers
        count(counter, key(1))
    assert counter._service().counter.state("chest-ct").total == 0
    assert count(counter, key(1)) == [] and count(counter, key(1)) == []  # redelivered, then duplicated
    assert counter._service().counter.state("chest-ct").total == 1 and len(calls) == 3


def test_conflicting_transactions_are_retried_inside_the_function_and_count_once(aws):
    counter = load_function_module("upload_counter")
    adapter = counter._service().counter
    adapter._sleep = lambda seconds: None
    conflict = {
        "Code": "TransactionCanceledException",
        "Message": "Transaction cancelled",
        "extra": {"CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}]},
    }
    calls = inject(adapter.client, "TransactWriteItems", [dict(conflict), dict(conflict)])
    assert count(counter, key(1)) == []
    state = adapter.state("chest-ct")
    assert (state.total, state.pending, len(calls)) == (1, 1, 3)


@pytest.fixture
def served(aws):
    store = ModelStore(ENV["MODELS_BUCKET"], boto3.client("s3", region_name="us-east-1"))
    first = publish(store, breast_cancer_candidate())
    return store, first


def predict(module) -> tuple[int, dict]:
    response = module.lambda_handler(PREDICT_EVENT, LambdaContext())
    return response["statusCode"], json.loads(response["body"])


def test_a_throttled_model_store_answers_503_when_cold_and_keeps_serving_when_warm(served, monkeypatch):
    _, first = served
    monkeypatch.setenv("POINTER_REFRESH_SECONDS", "0")
    cold = load_function_module("predict")
    slow_down = {"Code": "SlowDown", "Message": "Please reduce your request rate.", "status": 503}
    inject(cold.model_store().client, "GetObject", [dict(slow_down) for _ in range(10)])
    status, body = predict(cold)
    assert status == 503 and body["error"]["code"] == "model_unavailable"
    assert body["error"]["message"] == "Model store unreachable for 'breast-cancer'."

    warm = load_function_module("predict")
    assert predict(warm)[0] == 200
    inject(warm.model_store().client, "GetObject", [dict(slow_down) for _ in range(10)])
    status, body = predict(warm)  # the pointer refresh fails; the loaded version serves on
    assert (status, body["version"]) == (200, first.version)


def test_a_corrupt_version_is_refused_while_the_previous_one_serves(served, monkeypatch):
    store, first = served
    monkeypatch.setenv("POINTER_REFRESH_SECONDS", "0")
    module = load_function_module("predict")
    assert predict(module)[1]["version"] == first.version
    second = publish(store, breast_cancer_candidate(seed=7))
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket=ENV["MODELS_BUCKET"], Key=f"models/breast-cancer/{second.version}/model.onnx", Body=b"corrupt")
    status, body = predict(module)
    assert (status, body["version"]) == (200, first.version)
    health = json.loads(
        module.lambda_handler(json.loads((REPO_ROOT / "events" / "api-health.json").read_text()), LambdaContext())[
            "body"
        ]
    )
    assert health["models"]["breast-cancer"]["refused"] == {
        second.version: "failed its integrity checks (hash, manifest or ONNX); the details are in the logs."
    }


def test_uploads_announced_from_another_bucket_are_ignored(aws):
    counter = load_function_module("upload_counter")
    body = {"eventName": "ObjectCreated:Post", "s3": {"bucket": {"name": "someone-elses"}, "object": {"key": key(1)}}}
    put_upload(boto3.client("s3", region_name="us-east-1"), ENV["UPLOADS_BUCKET"], key(2))
    event = sqs_event(key(2))
    event["Records"][0]["body"] = json.dumps({"Records": [body, *json.loads(event["Records"][0]["body"])["Records"]]})
    assert counter.lambda_handler(event, LambdaContext("UploadCounterFunction", 256))["batchItemFailures"] == []
    assert counter._service().counter.state("chest-ct").total == 1  # only the uploads bucket's object


def test_the_sample_scheduled_event_runs_the_reconciler(aws):
    event = json.loads((REPO_ROOT / "events" / "eventbridge-scheduled-reconcile.json").read_text())
    assert event["detail-type"] == "Scheduled Event"
    reconciler = load_function_module("reconciler")
    assert reconciler.lambda_handler(event, LambdaContext("ReconcilerFunction", 256)) == {
        "active": 0,
        "freed": 0,
        "actions": {},
    }
