"""The retraining loop's decisions against moto, with tables and queues created from
template.yaml: counting once per object, exactly one job per threshold (also under
concurrent uploads), state changes, launch failures, and the three functions."""

import copy
import dataclasses
import json
import threading

import boto3
import pytest
from moto import mock_aws

from med_classifier.adapters.jobs_table import JobsTable
from med_classifier.adapters.launchers import SageMakerLauncher
from med_classifier.adapters.model_store import ModelStore
from med_classifier.adapters.upload_counter import UploadCounter
from med_classifier.domain.errors import ServiceUnavailable
from med_classifier.domain.jobs import COMPLETED, FAILED, IN_PROGRESS, PENDING, PROMOTED, JobRecord
from med_classifier.domain.retraining import JobStateChange, Retraining
from med_classifier.domain.uploads import UploadedObject
from med_classifier.settings import UploadCounterSettings
from scripts.local_resources import provision
from tests.helpers.fakes import RecordingLauncher
from tests.helpers.image_models import colour_candidate
from tests.helpers.models import REPO_ROOT, LambdaContext, breast_cancer_candidate, load_function_module, publish
from tests.helpers.sample_events import sample_event
from tests.helpers.uploads import put_upload

ENV = {
    k: v
    for k, v in json.loads((REPO_ROOT / "events" / "env.json").read_text())["Parameters"].items()
    if k != "AWS_ENDPOINT_URL"
}
API_EVENT = json.loads((REPO_ROOT / "events" / "api-predict-breast-cancer.json").read_text())
# As API Gateway's authorizer passes an ml-admin, who may call every route (tests/e2e/test_auth_over_http.py
# sends the other roles).
ML_ADMIN_CLAIMS = json.loads((REPO_ROOT / "events" / "api-retrain.json").read_text())["requestContext"]["authorizer"]
API_EVENT["requestContext"]["authorizer"] = ML_ADMIN_CLAIMS


@pytest.fixture
def aws(monkeypatch):
    with mock_aws():
        for name, value in ENV.items():
            monkeypatch.setenv(name, value)
        resources = provision(
            lambda service: boto3.client(service, region_name="us-east-1"), REPO_ROOT / "template.yaml", ENV
        )
        yield resources


def service(launcher, threshold=5):
    return Retraining(
        UploadCounter(ENV["UPLOAD_COUNTS_TABLE"]), JobsTable(ENV["JOBS_TABLE"]), launcher, (threshold, {})
    )


def upload(i, model="chest-ct", label="normal"):
    return UploadedObject(ENV["UPLOADS_BUCKET"], f"uploads/{model}/{label}/{i}.png", model, label)


def test_the_local_uploads_bucket_gets_the_templates_cors_rules(aws):
    # The web page POSTs the presigned form from the API's origin straight to the bucket.
    (rule,) = boto3.client("s3", region_name="us-east-1").get_bucket_cors(Bucket=ENV["UPLOADS_BUCKET"])["CORSRules"]
    assert rule["AllowedMethods"] == ["POST"] and rule["AllowedOrigins"] == ["*"] and rule["MaxAgeSeconds"] == 3600


def test_each_object_counts_once_however_often_it_is_delivered(aws):
    retraining = service(RecordingLauncher(), threshold=100)
    assert [retraining.record_upload(upload(1)).counted for _ in range(3)] == [True, False, False]
    retraining.record_upload(upload(2))
    state = retraining.counter.state("chest-ct")
    assert (state.total, state.pending) == (2, 2)


class AtomicRequests:
    """A DynamoDB client whose requests are each atomic, as DynamoDB's are (moto's are
    not: it reads, checks and writes without a lock). Threads still interleave between
    requests, which is where a flaw in the counting or claiming logic would show."""

    def __init__(self, client):
        self._client, self._lock = client, threading.Lock()
        self.exceptions = client.exceptions

    def __getattr__(self, name):
        method = getattr(self._client, name)

        def atomic(*args, **kwargs):
            with self._lock:
                return method(*args, **kwargs)

        return atomic


def test_concurrent_uploads_beyond_the_threshold_start_exactly_one_job(aws):
    launcher = RecordingLauncher()
    client = AtomicRequests(boto3.client("dynamodb", region_name="us-east-1"))
    retraining = Retraining(
        UploadCounter(ENV["UPLOAD_COUNTS_TABLE"], client), JobsTable(ENV["JOBS_TABLE"], client), launcher, (5, {})
    )
    errors = []

    def deliver(i):
        try:
            retraining.record_upload(upload(i))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(23)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == [] and len(launcher.started) == 1
    (job,) = retraining.jobs.recent("chest-ct")
    assert (job.state, job.trigger) == (PENDING, "uploads") and job.uploads >= 5
    assert job.backend_job.endswith(job.job_id)
    state = retraining.counter.state("chest-ct")
    assert state.total == 23 and state.active_job == job.job_id and state.pending == 23 - job.uploads


def test_a_finished_job_releases_the_model_and_piled_up_uploads_start_the_next(aws):
    launcher = RecordingLauncher()
    retraining = service(launcher, threshold=3)
    for i in range(8):
        retraining.record_upload(upload(i))
    first = launcher.started[0].job_id
    assert len(launcher.started) == 1 and retraining.counter.state("chest-ct").pending == 5
    retraining.on_state_change(JobStateChange(first, IN_PROGRESS, "InProgress"))
    assert retraining.jobs.get(first).state == IN_PROGRESS
    record = retraining.on_state_change(JobStateChange(first, COMPLETED, "Completed"))
    assert record.state == COMPLETED and record.ended_at
    assert len(launcher.started) == 2  # 5 pending >= 3: the next job started at once
    assert retraining.counter.state("chest-ct").active_job == launcher.started[1].job_id
    # A late, repeated event changes nothing.
    retraining.on_state_change(JobStateChange(first, IN_PROGRESS, "InProgress"))
    assert retraining.jobs.get(first).state == COMPLETED and len(launcher.started) == 2


def test_job_states_only_move_forward_and_the_jobs_own_outcome_sticks(aws):
    retraining = service(RecordingLauncher(), threshold=1)
    job = retraining.record_upload(upload(1)).started
    jobs = retraining.jobs
    assert jobs.record_outcome(
        job.job_id,
        outcome=PROMOTED,
        version="20261123T000000Z-abcdef12",
        metrics={"test_accuracy": 0.97},
        reasons=[],
        production_version="old",
    )
    assert not jobs.set_state(job.job_id, IN_PROGRESS)
    retraining.on_state_change(JobStateChange(job.job_id, COMPLETED, "Completed"))
    stored = jobs.get(job.job_id)
    assert (stored.state, stored.outcome, stored.metrics) == (COMPLETED, PROMOTED, {"test_accuracy": 0.97})
    assert stored.service_status == "Completed"  # noted, though the job had recorded its end first
    assert retraining.counter.state("chest-ct").active_job is None


def test_events_for_jobs_we_did_not_start_are_ignored(aws):
    retraining = service(RecordingLauncher())
    assert retraining.on_state_change(JobStateChange("someone-elses-job", COMPLETED, "Completed")) is None


def test_a_job_that_cannot_start_is_recorded_failed_and_gives_its_uploads_back(aws):
    retraining = service(RecordingLauncher(error=RuntimeError("ResourceLimitExceeded")), threshold=2)
    retraining.record_upload(upload(1))
    with pytest.raises(ServiceUnavailable, match="could not be started"):
        retraining.record_upload(upload(2))
    (job,) = retraining.jobs.recent("chest-ct")
    assert (job.state, job.failure_code) == (FAILED, "launch_failed")
    assert "ResourceLimitExceeded" not in job.failure_reason  # the service's words stay in the logs
    state = retraining.counter.state("chest-ct")
    assert (state.pending, state.active_job) == (2, None)
    # The redelivered message does not count again, but does retry the start.
    retraining.launcher.error = None
    outcome = retraining.record_upload(upload(2))
    assert not outcome.counted and outcome.started is not None


def test_manual_retrain_conflicts_with_a_running_job(aws):
    from med_classifier.domain.errors import Conflict

    retraining = service(RecordingLauncher())
    job = retraining.start_manual("chest-ct", reason="new scanner")
    assert (job.trigger, job.reason, job.uploads) == ("manual", "new scanner", 0)
    with pytest.raises(Conflict) as raised:
        retraining.start_manual("chest-ct")
    assert raised.value.status_code == 409 and job.job_id in raised.value.message


def test_sagemaker_launcher_creates_the_training_job(aws, monkeypatch):
    # make run's jobs take the full schedule (events/env.json: {}); a deployment may set any.
    assert json.loads(ENV["RETRAIN_HYPERPARAMETERS"]) == {}
    monkeypatch.setenv("RETRAIN_HYPERPARAMETERS", '{"smoke": "true"}')
    settings = UploadCounterSettings.from_environ().launch()
    retraining = service(SageMakerLauncher(settings), threshold=1)
    job = retraining.record_upload(upload(1)).started
    described = boto3.client("sagemaker", region_name="us-east-1").describe_training_job(TrainingJobName=job.job_id)
    assert described["HyperParameters"]["model"] == "chest-ct"
    assert described["HyperParameters"]["smoke"] == "true"  # from RETRAIN_HYPERPARAMETERS
    assert described["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == (
        f"s3://{ENV['UPLOADS_BUCKET']}/uploads/chest-ct/"
    )


# --- the functions -------------------------------------------------------------------


def sqs_event(*bodies):
    return {
        "Records": [
            {
                "messageId": f"m{i}",
                "receiptHandle": f"r{i}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:upload-queue-local",
                "awsRegion": "us-east-1",
            }
            for i, body in enumerate(bodies)
        ]
    }


def s3_notification(*keys):
    return json.dumps(
        {
            "Records": [
                {
                    "eventName": "ObjectCreated:Post",
                    "s3": {"bucket": {"name": ENV["UPLOADS_BUCKET"]}, "object": {"key": key, "size": 3}},
                }
                for key in keys
            ]
        }
    )


def test_upload_counter_function_reports_only_the_bad_message(aws, monkeypatch):
    monkeypatch.setenv("RETRAIN_THRESHOLD", "2")
    module = load_function_module("upload_counter")  # a fresh module: a cold start
    s3 = boto3.client("s3", region_name="us-east-1")
    for key in ("uploads/chest-ct/normal/a.png", "uploads/chest-ct/adenocarcinoma/b.png"):
        put_upload(s3, ENV["UPLOADS_BUCKET"], key)  # the counter checks each object before it counts
    event = sqs_event(
        s3_notification("uploads/chest-ct/normal/a.png"),
        "garbage",
        s3_notification("uploads/chest-ct/normal/a.png", "uploads/chest-ct/adenocarcinoma/b.png"),
    )
    result = module.lambda_handler(event, LambdaContext("UploadCounterFunction", 256))
    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    retraining = module._service()
    assert retraining.counter.state("chest-ct").total == 2  # a.png delivered twice, counted once
    (job,) = retraining.jobs.recent("chest-ct")  # threshold 2 reached: one SageMaker job in moto
    boto3.client("sagemaker", region_name="us-east-1").describe_training_job(TrainingJobName=job.job_id)


def test_job_state_function_records_eventbridge_state_changes(aws):
    module = load_function_module("job_state")  # a fresh module: a cold start
    job = module._service().start_manual("chest-ct")
    event = {
        "version": "0",
        "id": "e1",
        "detail-type": "SageMaker Training Job State Change",
        "source": "aws.sagemaker",
        "account": "123456789012",
        "time": "2026-11-23T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "TrainingJobName": job.job_id,
            "TrainingJobStatus": "Failed",
            "FailureReason": "AlgorithmError: boom",
        },
    }
    result = module.lambda_handler(event, LambdaContext("JobStateFunction", 256))
    assert result == {"recorded": True, "job_id": job.job_id, "state": FAILED}
    stored = module._service().jobs.get(job.job_id)
    assert (stored.failure_code, stored.service_status) == ("algorithm_error", "Failed")
    assert stored.failure_reason == "The training code failed. The details are in the logs."
    assert module._service().counter.state("chest-ct").active_job is None


@pytest.fixture
def api(aws):
    store = ModelStore(ENV["MODELS_BUCKET"], boto3.client("s3", region_name="us-east-1"))
    publish(store, colour_candidate("colour-test"))
    publish(store, breast_cancer_candidate())
    module = load_function_module("retraining_api")
    context = LambdaContext("RetrainingApiFunction", 512)

    def call(
        method,
        path,
        body=None,
        path_parameters=None,
        *,
        raw: str | None = None,
        content_type: str | None = None,
        claims: dict | None = ML_ADMIN_CLAIMS["claims"],
    ):
        event = copy.deepcopy(API_EVENT)
        event["requestContext"]["authorizer"] = {"claims": claims} if claims is not None else None
        event.update(
            httpMethod=method,
            path=path,
            resource=path,
            pathParameters=path_parameters,
            body=raw if raw is not None else None if body is None else json.dumps(body),
        )
        if content_type is not None:
            event["headers"]["Content-Type"] = content_type
            event["multiValueHeaders"]["Content-Type"] = [content_type]
        response = module.lambda_handler(event, context)
        return response["statusCode"], json.loads(response["body"])

    return call


def test_upload_route_returns_a_presigned_post_for_a_known_label(api):
    status, body = api(
        "POST", "/models/colour-test/uploads", {"label": "red", "content_type": "image/png"}, {"model": "colour-test"}
    )
    assert status == 201, body
    assert body["key"].startswith("uploads/colour-test/red/") and body["key"].endswith(".png")
    assert body["fields"]["key"] == body["key"] and body["fields"]["Content-Type"] == "image/png"
    assert ENV["UPLOADS_BUCKET"] in body["url"] and "NOT FOR CLINICAL USE" in body["notice"]


@pytest.mark.parametrize(
    "model, body, status, code",
    [
        ("nope", {"label": "red"}, 404, "unknown_model"),
        ("colour-test", {"label": "purple"}, 422, "invalid_input"),
        ("colour-test", {"label": "red", "content_type": "image/gif"}, 415, "unsupported_media_type"),
        ("breast-cancer", {"label": "malignant"}, 422, "invalid_input"),
        ("colour-test", {"labels": "red"}, 422, "invalid_request"),
    ],
)
def test_upload_route_refuses_bad_requests_with_4xx_json(api, model, body, status, code):
    got_status, got = api("POST", f"/models/{model}/uploads", body, {"model": model})
    assert (got_status, got["error"]["code"]) == (status, code), got


def test_retrain_route_starts_one_job_then_conflicts_and_reports_status(api):
    status, job = api(
        "POST",
        "/models/colour-test/retrain",
        {"reason": "test", "gate": {"min": {"test_accuracy": 0.99}}},
        {"model": "colour-test"},
    )
    assert status == 202, job
    assert (job["model"], job["trigger"], job["state"]) == ("colour-test", "manual", PENDING)
    assert job["requested_by"] == ML_ADMIN_CLAIMS["claims"]["sub"]  # who asked, in the job's record
    described = boto3.client("sagemaker", region_name="us-east-1").describe_training_job(TrainingJobName=job["job_id"])
    assert described["HyperParameters"]["gate_min_test_accuracy"] == "0.99"
    status, body = api("POST", "/models/colour-test/retrain", None, {"model": "colour-test"})
    assert (status, body["error"]["code"]) == (409, "conflict")
    status, got = api(
        "GET", f"/models/colour-test/retrain/{job['job_id']}", None, {"model": "colour-test", "job_id": job["job_id"]}
    )
    assert status == 200 and got["job_id"] == job["job_id"] and got["reason"] == "test"
    status, got = api(
        "GET",
        f"/models/breast-cancer/retrain/{job['job_id']}",
        None,
        {"model": "breast-cancer", "job_id": job["job_id"]},
    )
    assert status == 404


def test_upload_and_retrain_bodies_keep_their_keys(api):
    status, ticket = api("POST", "/models/colour-test/uploads", {"label": "red"}, {"model": "colour-test"})
    assert status == 201 and list(ticket) == [
        "model",
        "label",
        "key",
        "url",
        "fields",
        "content_type",
        "max_bytes",
        "expires_in",
        "notice",
    ]
    status, job = api("POST", "/models/colour-test/retrain", {"reason": "keys"}, {"model": "colour-test"})
    assert status == 202 and list(job) == [f.name for f in dataclasses.fields(JobRecord)]
    assert (job["reasons"], job["metrics"], job["outcome"]) == ([], {}, None)


@pytest.mark.parametrize("route", ["uploads", "retrain"])
def test_a_body_that_is_not_json_is_400_and_another_media_type_415(api, route):
    path = f"/models/colour-test/{route}"
    status, body = api("POST", path, None, {"model": "colour-test"}, raw='{"label": ')
    assert (status, body["error"]["code"]) == (400, "invalid_json")
    status, body = api("POST", path, None, {"model": "colour-test"}, raw="label=red", content_type="text/plain")
    assert (status, body["error"]["message"]) == (
        415,
        "Content-Type 'text/plain' is not accepted here: send application/json.",
    )


def test_retrain_route_refuses_tabular_and_unknown_models(api):
    assert api("POST", "/models/breast-cancer/retrain", {}, {"model": "breast-cancer"})[0] == 422
    assert api("POST", "/models/nope/retrain", {}, {"model": "nope"})[0] == 404


def test_model_view_shows_the_upload_counter_and_recent_jobs(api, aws):
    api("POST", "/models/colour-test/retrain", {}, {"model": "colour-test"})
    module = load_function_module("predict")
    event = copy.deepcopy(API_EVENT)
    event.update(
        httpMethod="GET",
        path="/models/colour-test",
        resource="/models/{model}",
        pathParameters={"model": "colour-test"},
        body=None,
    )
    response = module.lambda_handler(event, LambdaContext())
    view = json.loads(response["body"])
    assert response["statusCode"] == 200, view
    assert view["retraining"]["threshold"] == int(ENV["RETRAIN_THRESHOLD"])
    assert [j["trigger"] for j in view["retraining"]["jobs"]] == ["manual"]
    assert view["retraining"]["active_job"] == view["retraining"]["jobs"][0]["job_id"]


# --- the sample events in events/ go through their functions -----------------------------


def test_sample_sqs_event_is_counted(aws):
    event = sample_event("sqs-upload-notification.json")
    (record,) = json.loads(event["Records"][0]["body"])["Records"]
    assert record["s3"]["bucket"]["name"] == ENV["UPLOADS_BUCKET"]
    put_upload(boto3.client("s3", region_name="us-east-1"), ENV["UPLOADS_BUCKET"], record["s3"]["object"]["key"])
    module = load_function_module("upload_counter")  # a fresh module: a cold start
    assert module.lambda_handler(event, LambdaContext("UploadCounterFunction", 256)) == {"batchItemFailures": []}
    assert module._service().counter.state("chest-ct").total == 1


@pytest.mark.parametrize(
    "name, state",
    [("eventbridge-sagemaker-job-state-change.json", FAILED), ("eventbridge-batch-job-state-change.json", COMPLETED)],
)
def test_sample_state_change_events_are_recorded(aws, name, state):
    from med_classifier.domain.jobs import JobRecord

    event = sample_event(name)
    job_id = event["detail"].get("TrainingJobName") or event["detail"]["jobName"]
    module = load_function_module("job_state")  # a fresh module: a cold start
    retraining = module._service()
    retraining.jobs.create(JobRecord(job_id=job_id, model="chest-ct", trigger="uploads", backend="sagemaker"))
    assert retraining.counter.claim("chest-ct", job_id, threshold=None, now=0, lease_seconds=60).uploads == 0
    assert module.lambda_handler(event, LambdaContext("JobStateFunction", 256))["state"] == state
    assert retraining.counter.state("chest-ct").active_job is None
    if state == FAILED:
        assert retraining.jobs.get(job_id).failure_code == "algorithm_error"


@pytest.mark.slow  # trains the chest-ct model the sample events name
def test_sample_api_events_reach_the_retraining_routes(aws):
    from tests.helpers.keras_models import chest_ct_candidate

    publish(ModelStore(ENV["MODELS_BUCKET"], boto3.client("s3", region_name="us-east-1")), chest_ct_candidate())
    module = load_function_module("retraining_api")
    context = LambdaContext("RetrainingApiFunction", 512)
    upload_response = module.lambda_handler(sample_event("api-create-upload.json"), context)
    assert upload_response["statusCode"] == 201, upload_response["body"]
    assert json.loads(upload_response["body"])["key"].startswith("uploads/chest-ct/normal/")
    retrain_response = module.lambda_handler(sample_event("api-retrain.json"), context)
    assert retrain_response["statusCode"] == 202, retrain_response["body"]
    assert json.loads(retrain_response["body"])["reason"] == "new scanner"


CLINICIAN_CLAIMS = json.loads((REPO_ROOT / "events" / "api-create-upload.json").read_text())["requestContext"][
    "authorizer"
]["claims"]


def test_the_functions_check_the_callers_group_again(api):
    # Defence in depth: were a route left without the authorizer, the function itself refuses.
    path, model = "/models/colour-test/retrain", {"model": "colour-test"}
    status, body = api("POST", path, {}, model, claims=None)
    assert (status, body["error"]["code"]) == (401, "not_signed_in")
    assert body["error"]["message"] == (
        "Sign in to start retraining: send a Cognito ID token in the Authorization header."
    )
    status, body = api("POST", path, {}, model, claims=CLINICIAN_CLAIMS)
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert body["error"]["message"] == (
        "clinician@example.org may not start retraining: that needs membership of ml-admins."
    )
    job_path = "/models/colour-test/retrain/x"
    status, body = api("GET", job_path, None, {"model": "colour-test", "job_id": "x"}, claims=CLINICIAN_CLAIMS)
    assert (status, body["error"]["code"]) == (403, "forbidden")
    upload = {"label": "red", "content_type": "image/png"}
    status, body = api("POST", "/models/colour-test/uploads", upload, model, claims={"sub": "s-9", "email": "v@x.org"})
    assert (status, body["error"]["message"]) == (
        403,
        "v@x.org may not upload training data: that needs membership of clinicians or ml-admins.",
    )


def test_an_upload_ticket_fixes_the_clinicians_sub_as_the_uploader(api):
    upload = {"label": "red", "content_type": "image/png"}
    status, ticket = api(
        "POST", "/models/colour-test/uploads", upload, {"model": "colour-test"}, claims=CLINICIAN_CLAIMS
    )
    assert status == 201, ticket
    assert ticket["fields"]["x-amz-meta-uploader"] == CLINICIAN_CLAIMS["sub"]
