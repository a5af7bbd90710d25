"""Pure parts of the retraining loop: upload keys and notifications, thresholds, state
changes, job ids, and the launch requests both backends would receive."""

import json
import re

import pytest

from med_classifier.adapters.launchers import BatchLauncher, SageMakerLauncher
from med_classifier.api.schemas import RetrainRequest
from med_classifier.domain.jobs import COMPLETED, FAILED, IN_PROGRESS, PENDING, STOPPED, JobRequest, new_job_id
from med_classifier.domain.retraining import state_change_from_event
from med_classifier.domain.uploads import parse_upload_key, uploads_in_notification
from med_classifier.settings import UploadCounterSettings

ENV = {
    "UPLOAD_COUNTS_TABLE": "counts-t",
    "UPLOADS_BUCKET": "uploads-b",
    "MODELS_BUCKET": "models-b",
    "JOBS_TABLE": "jobs-t",
    "TRAINING_IMAGE_URI": "123.dkr.ecr.us-east-1.amazonaws.com/train:1",
    "TRAINING_ROLE_ARN": "arn:aws:iam::123:role/train",
    "TRAINING_OUTPUT_URI": "s3://models-b/training-output/",
    "BATCH_JOB_QUEUE": "queue",
    "BATCH_JOB_DEFINITION": "jobdef",
    "RETRAIN_HYPERPARAMETERS": '{"smoke": "true"}',
}


def notification(*keys, event="ObjectCreated:Post"):
    return json.dumps(
        {
            "Records": [
                {"eventName": event, "s3": {"bucket": {"name": "uploads-b"}, "object": {"key": key, "size": 10}}}
                for key in keys
            ]
        }
    )


def test_upload_keys_are_parsed_and_anything_else_is_not_an_upload():
    upload = parse_upload_key("b", "uploads/skin-lesion/mel/abc.jpg", 5)
    assert (upload.model, upload.label, upload.size) == ("skin-lesion", "mel", 5)
    for key in (
        "uploads/skin-lesion/mel.jpg",
        "uploads/skin-lesion/mel/x.gif",
        "models/skin-lesion/mel/x.png",
        "uploads/Bad Model/mel/x.png",
        "uploads/skin-lesion//x.png",
        "uploads/skin-lesion/mel/a/x.png",
    ):
        assert parse_upload_key("b", key) is None, key


def test_notifications_decode_url_encoded_keys_and_skip_test_events_and_deletes():
    found = uploads_in_notification(
        notification("uploads%2Fchest-ct%2Fnormal%2Fa.png", "uploads/chest-ct/normal/b+c.png", "other/x.png")
    )
    assert [u.key for u in found] == ["uploads/chest-ct/normal/a.png", "uploads/chest-ct/normal/b c.png"]
    assert uploads_in_notification(json.dumps({"Event": "s3:TestEvent", "Bucket": "uploads-b"})) == []
    assert uploads_in_notification(notification("uploads/chest-ct/normal/a.png", event="ObjectRemoved:Delete")) == []


@pytest.mark.parametrize("body", ["not json", "[1, 2]", json.dumps({"hello": "world"})])
def test_a_message_that_is_no_s3_notification_is_an_error_not_silence(body):
    with pytest.raises(ValueError):
        uploads_in_notification(body)


@pytest.mark.parametrize(
    "source, detail, state, code",
    [
        ("aws.sagemaker", {"TrainingJobName": "j", "TrainingJobStatus": "InProgress"}, IN_PROGRESS, None),
        ("aws.sagemaker", {"TrainingJobName": "j", "TrainingJobStatus": "Stopping"}, IN_PROGRESS, None),
        ("aws.sagemaker", {"TrainingJobName": "j", "TrainingJobStatus": "Completed"}, COMPLETED, None),
        (
            "aws.sagemaker",
            {"TrainingJobName": "j", "TrainingJobStatus": "Failed", "FailureReason": "OOM"},
            FAILED,
            "job_error",
        ),
        ("aws.sagemaker", {"TrainingJobName": "j", "TrainingJobStatus": "Stopped"}, STOPPED, "stopped"),
        ("aws.batch", {"jobName": "j", "status": "RUNNABLE"}, PENDING, None),
        ("aws.batch", {"jobName": "j", "status": "RUNNING"}, IN_PROGRESS, None),
        ("aws.batch", {"jobName": "j", "status": "SUCCEEDED"}, COMPLETED, None),
        (
            "aws.batch",
            {"jobName": "j", "status": "FAILED", "statusReason": "Essential container exited"},
            FAILED,
            "job_error",
        ),
    ],
)
def test_service_states_map_to_job_states(source, detail, state, code):
    change = state_change_from_event(source, detail)
    assert (change.job_id, change.state, change.service_status, change.failure_code) == (
        "j",
        state,
        detail.get("TrainingJobStatus", detail.get("status")),
        code,
    )
    # The service's own words are kept for the logs, for failures only.
    assert change.detail == (detail.get("FailureReason") or detail.get("statusReason") if code else None)


@pytest.mark.parametrize(
    "reason, code",
    [
        ("AlgorithmError: ExecuteUserScriptError: arn:aws:iam::123456789012:role/x", "algorithm_error"),
        ("ClientError: Data download failed", "client_error"),
        ("CapacityError: Unable to provision requested ML compute capacity", "capacity_error"),
        ("InternalServerError: We encountered an internal error", "service_error"),
        ("something else entirely", "job_error"),
        ("", "job_error"),
    ],
)
def test_a_sagemaker_failure_reason_becomes_a_failure_code(reason, code):
    detail = {"TrainingJobName": "j", "TrainingJobStatus": "Failed", "FailureReason": reason}
    change = state_change_from_event("aws.sagemaker", detail)
    assert (change.failure_code, change.detail) == (code, reason or None)


@pytest.mark.parametrize(
    "detail, code",
    [
        ({"SecondaryStatus": "MaxRuntimeExceeded"}, "max_runtime_exceeded"),
        ({"FailureReason": "Training job exceeded MaxRuntimeInSeconds (60 s)"}, "max_runtime_exceeded"),
        ({"SecondaryStatus": "Stopped", "FailureReason": "stopped by a user"}, "stopped"),
    ],
)
def test_a_stopped_sagemaker_job_says_whether_its_max_runtime_stopped_it(detail, code):
    change = state_change_from_event(
        "aws.sagemaker", {"TrainingJobName": "j", "TrainingJobStatus": "Stopped", **detail}
    )
    assert (change.state, change.failure_code) == (STOPPED, code)


def test_a_batch_timeout_is_a_max_runtime_failure():
    detail = {"jobName": "j", "status": "FAILED", "statusReason": "Job attempt duration exceeded timeout"}
    assert state_change_from_event("aws.batch", detail).failure_code == "max_runtime_exceeded"


@pytest.mark.parametrize(
    "source, detail",
    [
        ("aws.sagemaker", {"TrainingJobName": ["j"], "TrainingJobStatus": "Failed"}),
        ("aws.sagemaker", {"TrainingJobName": "j", "TrainingJobStatus": ["Failed"]}),
        ("aws.batch", {"jobName": "j", "status": {"FAILED": 1}}),
        ("aws.batch", {"jobName": "", "status": "FAILED"}),
    ],
)
def test_events_with_names_or_statuses_of_the_wrong_type_are_not_tracked(source, detail):
    assert state_change_from_event(source, detail) is None


def test_a_batch_container_that_is_no_object_gives_no_reason():
    change = state_change_from_event("aws.batch", {"jobName": "j", "status": "FAILED", "container": ["x"]})
    assert (change.failure_code, change.detail) == ("job_error", None)


def test_unknown_statuses_and_sources_are_not_tracked():
    assert state_change_from_event("aws.sagemaker", {"TrainingJobName": "j", "TrainingJobStatus": "Weird"}) is None
    assert state_change_from_event("aws.ec2", {}) is None


def test_job_ids_are_valid_sagemaker_and_batch_job_names_and_unique():
    ids = {new_job_id("a-model-id-that-is-quite-long-indeed-and-longer-still") for _ in range(50)}
    assert len(ids) == 50
    for job_id in ids:
        assert re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", job_id), job_id


def test_sagemaker_request_has_image_role_channels_output_and_string_hyperparameters():
    settings = UploadCounterSettings.from_environ({**ENV, "ORIGINAL_DATA_PREFIX": "datasets/"}).launch()
    request = SageMakerLauncher(settings).request(JobRequest("job-1", "skin-lesion", {"gate_min_test_macro_f1": "0.6"}))
    assert request["TrainingJobName"] == "job-1"
    assert request["AlgorithmSpecification"] == {
        "TrainingImage": ENV["TRAINING_IMAGE_URI"],
        "TrainingInputMode": "File",
    }
    assert request["RoleArn"] == ENV["TRAINING_ROLE_ARN"]
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}
    assert channels == {
        "uploads": "s3://uploads-b/uploads/skin-lesion/",
        "original": "s3://uploads-b/datasets/skin-lesion/",
    }
    assert request["OutputDataConfig"] == {"S3OutputPath": "s3://models-b/training-output/"}
    assert request["HyperParameters"] == {
        "smoke": "true",
        "gate_min_test_macro_f1": "0.6",
        "model": "skin-lesion",
        "job_id": "job-1",
        "models_bucket": "models-b",
        "jobs_table": "jobs-t",
    }
    assert all(isinstance(v, str) for v in request["HyperParameters"].values())
    assert "Environment" not in request  # no tracking server: the run stays with the job's artefacts


def test_a_tracking_server_reaches_both_backends_jobs_as_mlflow_tracking_uri():
    settings = UploadCounterSettings.from_environ(
        {**ENV, "RETRAIN_MLFLOW_TRACKING_URI": "https://mlflow.example"}
    ).launch()
    sagemaker = SageMakerLauncher(settings).request(JobRequest("job-4", "chest-ct"))
    assert sagemaker["Environment"] == {"MLFLOW_TRACKING_URI": "https://mlflow.example"}
    batch = BatchLauncher(settings).request(JobRequest("job-4", "chest-ct"))
    environment = {e["name"]: e["value"] for e in batch["containerOverrides"]["environment"]}
    assert environment["MLFLOW_TRACKING_URI"] == "https://mlflow.example"


def test_batch_request_carries_the_same_contract_in_container_overrides():
    settings = UploadCounterSettings.from_environ({**ENV, "RETRAIN_BACKEND": "batch"}).launch()
    request = BatchLauncher(settings).request(JobRequest("job-2", "chest-ct"))
    assert (request["jobName"], request["jobQueue"], request["jobDefinition"]) == ("job-2", "queue", "jobdef")
    overrides = request["containerOverrides"]
    assert overrides["command"] == ["train"]  # replaces the image's CMD; its ENTRYPOINT runs training.retrain
    environment = {e["name"]: e["value"] for e in overrides["environment"]}
    assert json.loads(environment["RETRAIN_CHANNELS"]) == {"uploads": "s3://uploads-b/uploads/chest-ct/"}
    assert json.loads(environment["RETRAIN_HYPERPARAMETERS"])["job_id"] == "job-2"


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="RETRAIN_BACKEND"):
        UploadCounterSettings.from_environ({**ENV, "RETRAIN_BACKEND": "emr"}).launch()


def test_requested_hyperparameters_never_override_the_job_identity():
    settings = UploadCounterSettings.from_environ(ENV).launch()
    params = settings.hyperparameters(JobRequest("job-3", "chest-ct", {"model": "skin-lesion", "job_id": "x"}))
    assert (params["model"], params["job_id"]) == ("chest-ct", "job-3")


def test_retrain_request_turns_gate_overrides_into_hyperparameters():
    request = RetrainRequest.model_validate({"gate": {"min": {"test_accuracy": 0.9}, "max": {"cv_std": 0.1}}})
    assert request.hyperparameters() == {"gate_min_test_accuracy": "0.9", "gate_max_cv_std": "0.1"}
    with pytest.raises(ValueError):
        RetrainRequest.model_validate({"gate": {"min": {"Bad-Name": 1}}})


@pytest.mark.parametrize(
    "source, detail",
    [
        ("aws.sagemaker", {"TrainingJobStatus": "Completed"}),
        ("aws.sagemaker", {"TrainingJobName": "", "TrainingJobStatus": "Completed"}),
        ("aws.batch", {"status": "SUCCEEDED"}),
        ("aws.batch", {"jobName": "j"}),
        ("aws.sagemaker", {"TrainingJobName": "j"}),
    ],
)
def test_events_naming_no_job_or_no_status_are_not_tracked(source, detail):
    assert state_change_from_event(source, detail) is None


def test_a_batch_failure_without_a_status_reason_takes_the_containers():
    change = state_change_from_event(
        "aws.batch", {"jobName": "j", "status": "FAILED", "container": {"reason": "OutOfMemoryError: Container killed"}}
    )
    assert (change.failure_code, change.detail) == ("job_error", "OutOfMemoryError: Container killed")
    assert state_change_from_event("aws.batch", {"jobName": "j", "status": "FAILED"}).detail is None


def test_a_batch_success_carries_no_failure():
    change = state_change_from_event(
        "aws.batch",
        {
            "jobName": "j",
            "status": "SUCCEEDED",
            "statusReason": "Essential container in task exited",
            "container": {"reason": "exit 0"},
        },
    )
    assert (change.state, change.failure_code, change.detail) == (COMPLETED, None, None)


def test_a_stopped_sagemaker_job_keeps_the_reason_it_was_stopped_for_the_logs():
    change = state_change_from_event(
        "aws.sagemaker",
        {"TrainingJobName": "j", "TrainingJobStatus": "Stopped", "FailureReason": "MaxRuntimeInSeconds exceeded"},
    )
    assert (change.state, change.failure_code, change.detail) == (
        STOPPED,
        "max_runtime_exceeded",
        "MaxRuntimeInSeconds exceeded",
    )
