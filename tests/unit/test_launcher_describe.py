"""How the launchers ask SageMaker and Batch for a job's state (the reconciler's question), with
botocore's Stubber: the exact request, the answers mapped like the state-change events, and
which errors mean "the service does not know the job" and which propagate."""

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from med_classifier.adapters.launch_settings import LaunchSettings
from med_classifier.adapters.launchers import BatchLauncher, SageMakerLauncher
from med_classifier.domain.jobs import COMPLETED, FAILED, IN_PROGRESS, JobRecord, JobStateChange

SETTINGS = LaunchSettings(backend="sagemaker", uploads_bucket="u", models_bucket="m", jobs_table="j")
JOB = JobRecord(job_id="chest-ct-20261201-010101-abc123", model="chest-ct", trigger="uploads", backend="sagemaker")


@pytest.fixture
def sagemaker():
    client = boto3.client("sagemaker", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield SageMakerLauncher(SETTINGS, client), stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def batch():
    client = boto3.client("batch", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield BatchLauncher(SETTINGS, client), stubber
        stubber.assert_no_pending_responses()


def training_job(status: str, **extra) -> dict:
    return {
        "TrainingJobName": JOB.job_id,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{JOB.job_id}",
        "TrainingJobStatus": status,
        "SecondaryStatus": extra.pop("SecondaryStatus", status),
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ModelArtifacts": {"S3ModelArtifacts": "s3://m/out"},
        "ResourceConfig": {"VolumeSizeInGB": 30},
        "StoppingCondition": {},
        "CreationTime": "2026-12-01T00:00:00Z",
        **extra,
    }


def test_sagemaker_is_asked_by_the_jobs_name_and_answers_like_its_events(sagemaker):
    launcher, stubber = sagemaker
    stubber.add_response("describe_training_job", training_job("InProgress"), {"TrainingJobName": JOB.job_id})
    stubber.add_response(
        "describe_training_job",
        training_job("Failed", FailureReason="AlgorithmError: boom"),
        {"TrainingJobName": JOB.job_id},
    )
    assert launcher.describe(JOB) == JobStateChange(JOB.job_id, IN_PROGRESS, "InProgress")
    assert launcher.describe(JOB) == JobStateChange(
        JOB.job_id, FAILED, "Failed", "algorithm_error", "AlgorithmError: boom"
    )


@pytest.mark.parametrize("code", ["ValidationException", "ResourceNotFound"])
def test_a_training_job_sagemaker_does_not_know_is_none(sagemaker, code):
    launcher, stubber = sagemaker
    stubber.add_client_error(
        "describe_training_job", service_error_code=code, service_message="Requested resource not found."
    )
    assert launcher.describe(JOB) is None


@pytest.mark.parametrize("code", ["ThrottlingException", "AccessDeniedException"])
def test_other_sagemaker_errors_propagate(sagemaker, code):
    launcher, stubber = sagemaker
    stubber.add_client_error("describe_training_job", service_error_code=code)
    with pytest.raises(ClientError) as info:
        launcher.describe(JOB)
    assert info.value.response["Error"]["Code"] == code


def test_batch_is_asked_by_the_id_submit_job_returned(batch):
    launcher, stubber = batch
    job = JobRecord(**{**JOB.__dict__, "backend": "batch", "backend_job": "3f2c-id"})
    answer = {
        "jobName": JOB.job_id,
        "jobId": "3f2c-id",
        "jobQueue": "q",
        "status": "SUCCEEDED",
        "statusReason": "Essential container in task exited",
        "startedAt": 1,
        "jobDefinition": "d",
    }
    stubber.add_response("describe_jobs", {"jobs": [answer]}, {"jobs": ["3f2c-id"]})
    stubber.add_response("describe_jobs", {"jobs": []}, {"jobs": ["3f2c-id"]})
    assert launcher.describe(job) == JobStateChange(JOB.job_id, COMPLETED, "SUCCEEDED")
    assert launcher.describe(job) is None  # Batch forgets jobs some days after they end


def test_a_batch_job_without_an_id_is_unknown_without_asking(batch):
    launcher, _ = batch
    assert launcher.describe(JOB) is None
