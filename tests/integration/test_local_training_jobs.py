"""The local runner's SageMaker/Batch stand-in against a real moto server and real worker processes.

Jobs are created by the project's launcher (med_classifier.adapters.launchers); a small script
written to tmp_path stands in
for ``training.retrain``: it checks its job root the way the real entry point reads it, and fails on request.
The template's functions log the state-change events they get.
"""

import json
import re
import sys
import urllib.request
import uuid

import boto3
import pytest

from med_classifier.adapters.launch_settings import LaunchSettings
from med_classifier.adapters.launchers import BatchLauncher, SageMakerLauncher
from med_classifier.domain.jobs import JobRequest
from scripts.local_runner import LocalTrainingJobs
from scripts.local_stack import MotoServer, free_port
from tests.helpers.runner_projects import function_project, local_functions

pytestmark = pytest.mark.slow

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Globals:
  Function: {CodeUri: fn/, Handler: app.handler, Runtime: python3.12, Timeout: 5}
Resources:
  JobStateFunction:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        SageMakerJobState:
          Type: EventBridgeRule
          Properties:
            Pattern: {source: [aws.sagemaker], detail-type: [SageMaker Training Job State Change]}
        BatchJobState:
          Type: EventBridgeRule
          Properties:
            Pattern: {source: [aws.batch], detail-type: [Batch Job State Change]}
  CompletedJobsFunction:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Completed:
          Type: EventBridgeRule
          Properties:
            Pattern: {source: [aws.sagemaker], detail: {TrainingJobStatus: [Completed]}}
  BrokenFunction:
    Type: AWS::Serverless::Function
    Properties:
      Description: Every delivery to it fails (no such handler), which must not stop the job or the others.
      Handler: app.no_such_handler
      Events:
        Started:
          Type: EventBridgeRule
          Properties:
            Pattern: {source: [aws.sagemaker, aws.batch], detail: {TrainingJobStatus: [InProgress]}}
"""
HANDLER = """\
import json
import os

LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "events.jsonl")


def handler(event, context):
    with open(LOG, "a") as log:
        log.write(json.dumps({"function": context.function_name, "event": event}) + "\\n")
"""
JOB_SCRIPT = """\
import json
import os
import sys
import time

import boto3

from training.job_contract import JobPaths, stage_from_environment

paths = JobPaths.from_environment()
stage_from_environment(paths, boto3.client("s3"))  # Batch; SageMaker (the runner) staged the job already
hyperparameters = paths.read_hyperparameters()
uploads = paths.channel("uploads")
files = {p.relative_to(uploads).as_posix(): p.read_text() for p in sorted(uploads.rglob("*")) if p.is_file()}
print("argv", sys.argv[1:], "files", files)
print("state dir", os.environ.get("LOCAL_STATE_DIR"))
time.sleep(float(hyperparameters.get("sleep", 0)))
if os.environ["ML_ROOT"] == "/tmp/ml" or files != json.loads(hyperparameters["expect"]):
    paths.write_failure(f"unexpected job root {os.environ['ML_ROOT']} with {files}")
    sys.exit(1)
if "fail" in hyperparameters:
    paths.write_failure(hyperparameters["fail"])
    sys.exit(1)
"""
UPLOADS_BUCKET = "uploads"
UPLOADS = {"benign/1.txt": "one", "malignant/2.txt": "two"}
EXPECT = {"expect": json.dumps(UPLOADS)}
BATCH_QUEUE, BATCH_DEFINITION = "local-retrain", "local-retrain"


@pytest.fixture(scope="module")
def moto():
    server = MotoServer(port=free_port()).start()
    client = boto3.client("s3", endpoint_url=server.url, region_name="us-east-1")
    client.create_bucket(Bucket=UPLOADS_BUCKET)
    for key, text in UPLOADS.items():
        client.put_object(Bucket=UPLOADS_BUCKET, Key=f"uploads/breast-cancer/{key}", Body=text.encode())
    # Before any job is submitted: by default moto runs Batch jobs in Docker.
    config = urllib.request.Request(
        f"{server.url}/moto-api/config", data=b'{"batch": {"use_docker": false}}', method="POST"
    )
    urllib.request.urlopen(config).close()
    batch = boto3.client("batch", endpoint_url=server.url, region_name="us-east-1")
    role = boto3.client("iam", endpoint_url=server.url, region_name="us-east-1").create_role(
        RoleName="batch", AssumeRolePolicyDocument="{}"
    )["Role"]["Arn"]
    environment = batch.create_compute_environment(
        computeEnvironmentName="local-ce", type="UNMANAGED", serviceRole=role
    )
    batch.create_job_queue(
        jobQueueName=BATCH_QUEUE,
        priority=1,
        state="ENABLED",
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment["computeEnvironmentArn"]}],
    )
    batch.register_job_definition(
        jobDefinitionName=BATCH_DEFINITION,
        type="container",
        containerProperties={"image": "retrain", "vcpus": 1, "memory": 512},
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return function_project(tmp_path_factory.mktemp("jobs"), TEMPLATE, HANDLER, **{"job.py": JOB_SCRIPT})


@pytest.fixture(scope="module")
def functions(project):
    with local_functions(project) as functions:
        yield functions


@pytest.fixture
def local_jobs(project, functions, moto):
    jobs = LocalTrainingJobs(
        functions, moto.url, entry_point=[sys.executable, str(project / "job.py")], poll_seconds=0.2
    )
    jobs.start()
    yield jobs
    jobs.stop()


def settings(max_runtime_seconds=60):
    return LaunchSettings(
        backend="",
        uploads_bucket=UPLOADS_BUCKET,
        models_bucket="models",
        jobs_table="jobs",
        training_image="retrain",
        role_arn="arn:aws:iam::123456789012:role/training",
        output_uri="s3://models/training",
        job_queue=BATCH_QUEUE,
        job_definition=BATCH_DEFINITION,
        max_runtime_seconds=max_runtime_seconds,
    )


def start_sagemaker_job(moto, hyperparameters=None, **overrides):
    name = f"sm-{uuid.uuid4().hex[:8]}"
    client = boto3.client("sagemaker", endpoint_url=moto.url, region_name="us-east-1")
    SageMakerLauncher(settings(**overrides), client).start(
        JobRequest(name, "breast-cancer", {**EXPECT, **(hyperparameters or {})})
    )
    return name


def submit_batch_job(moto, project, hyperparameters=None, **overrides):
    name = f"batch-{uuid.uuid4().hex[:8]}"
    request = BatchLauncher(settings(**overrides)).request(
        JobRequest(name, "breast-cancer", {**EXPECT, **(hyperparameters or {})})
    )
    client = boto3.client("batch", endpoint_url=moto.url, region_name="us-east-1")
    return name, client.submit_job(**request)["jobId"]


def received(project, function, name):
    """The events ``function`` got about the job ``name``."""
    log = project / "fn" / "events.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [
        entry["event"]
        for entry in entries
        if entry["function"] == function
        and name in (entry["event"]["detail"].get("TrainingJobName"), entry["event"]["detail"].get("jobName"))
    ]


def record(local_jobs, name):
    (job,) = [job for job in local_jobs.jobs if job.name == name]
    return job


def test_sagemaker_job_runs_in_a_staged_job_root_and_reports_in_progress_then_completed(
    project, moto, local_jobs, state_dir, capfd
):
    name = start_sagemaker_job(moto)

    assert local_jobs.wait_idle(timeout=30)

    job = record(local_jobs, name)
    assert (job.backend, job.status, job.exit_code, job.reason) == ("sagemaker", "Completed", 0, "")
    assert job.started_at <= job.ended_at
    output = capfd.readouterr().err
    assert f"[job {name}] argv ['train'] files {UPLOADS}" in output
    assert f"[job {name}] state dir {state_dir}" in output  # passed through from the runner's environment
    in_progress, completed = received(project, "JobStateFunction", name)
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}"
    assert {key: completed[key] for key in ("version", "detail-type", "source", "account", "region", "resources")} == {
        "version": "0",
        "detail-type": "SageMaker Training Job State Change",
        "source": "aws.sagemaker",
        "account": "123456789012",
        "region": "us-east-1",
        "resources": [arn],
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", completed["time"])
    assert in_progress["id"] != completed["id"]
    assert [(e["detail"]["TrainingJobStatus"], e["detail"]["SecondaryStatus"]) for e in (in_progress, completed)] == [
        ("InProgress", "Starting"),
        ("Completed", "Completed"),
    ]
    detail = completed["detail"]
    assert (detail["TrainingJobName"], detail["TrainingJobArn"]) == (name, arn)
    assert detail["HyperParameters"]["model"] == "breast-cancer"
    assert detail["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://uploads/uploads/breast-cancer/"
    assert detail["CreationTime"] <= detail["TrainingStartTime"] <= detail["TrainingEndTime"]
    assert detail["TrainingEndTime"] == int(job.ended_at * 1000)
    assert "TrainingEndTime" not in in_progress["detail"] and "FailureReason" not in detail
    # The pattern on detail.TrainingJobStatus lets only the final event through; BrokenFunction's failures are logged.
    assert received(project, "CompletedJobsFunction", name) == [completed]


def test_failed_sagemaker_job_reports_its_failure_file(project, moto, local_jobs):
    name = start_sagemaker_job(moto, {"fail": "too few images to retrain"})

    assert local_jobs.wait_idle(timeout=30)

    job = record(local_jobs, name)
    assert (job.status, job.exit_code, job.reason) == ("Failed", 1, "too few images to retrain")
    events = received(project, "JobStateFunction", name)
    assert [e["detail"]["TrainingJobStatus"] for e in events] == ["InProgress", "Failed"]
    assert events[-1]["detail"]["FailureReason"] == "too few images to retrain"
    assert received(project, "CompletedJobsFunction", name) == []


def test_sagemaker_job_over_its_max_runtime_is_stopped(project, moto, local_jobs):
    # The job would sleep 10 min: being killed (137) within the wait proves the limit is enforced.
    name = start_sagemaker_job(moto, {"sleep": "600"}, max_runtime_seconds=1)

    assert local_jobs.wait_idle(timeout=30)

    job = record(local_jobs, name)
    assert (job.status, job.exit_code) == ("Stopped", 137)
    detail = received(project, "JobStateFunction", name)[-1]["detail"]
    assert (detail["TrainingJobStatus"], detail["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")
    assert "MaxRuntimeInSeconds" in detail["FailureReason"]


def test_batch_job_runs_its_command_and_reports_runnable_to_succeeded(project, moto, local_jobs, capfd):
    name, job_id = submit_batch_job(moto, project)

    assert local_jobs.wait_idle(timeout=30)

    job = record(local_jobs, name)
    assert (job.backend, job.job_id, job.status, job.exit_code, job.reason) == ("batch", job_id, "SUCCEEDED", 0, "")
    assert f"[job {name}] argv ['train'] files {UPLOADS}" in capfd.readouterr().err
    events = received(project, "JobStateFunction", name)
    assert [e["detail"]["status"] for e in events] == ["RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"]
    assert {e["detail-type"] for e in events} == {"Batch Job State Change"}
    assert {e["source"] for e in events} == {"aws.batch"}
    final = events[-1]
    assert final["resources"] == [f"arn:aws:batch:us-east-1:123456789012:job/{job_id}"]
    detail = final["detail"]
    assert (detail["jobName"], detail["jobId"]) == (name, job_id)
    assert detail["jobQueue"] == f"arn:aws:batch:us-east-1:123456789012:job-queue/{BATCH_QUEUE}"
    assert (detail["statusReason"], detail["container"]["exitCode"]) == ("Essential container in task exited", 0)
    assert detail["startedAt"] <= detail["stoppedAt"]
    environment = {variable["name"]: variable["value"] for variable in detail["container"]["environment"]}
    assert json.loads(environment["RETRAIN_HYPERPARAMETERS"])["model"] == "breast-cancer"
    assert "stoppedAt" not in events[2]["detail"] and "exitCode" not in events[2]["detail"]["container"]


def test_failed_batch_job_reports_its_exit_code_and_failure_file(project, moto, local_jobs):
    name, _ = submit_batch_job(moto, project, {"fail": "gate rejected the candidate"})

    assert local_jobs.wait_idle(timeout=30)

    assert (record(local_jobs, name).status, record(local_jobs, name).exit_code) == ("FAILED", 1)
    detail = received(project, "JobStateFunction", name)[-1]["detail"]
    assert detail["status"] == "FAILED"
    assert detail["container"]["exitCode"] == 1
    assert detail["container"]["reason"] == "gate rejected the candidate"


def test_batch_job_over_its_attempt_duration_is_killed(project, moto, local_jobs):
    # The job would sleep 10 min: being killed (137) within the wait proves the limit is enforced.
    name, _ = submit_batch_job(moto, project, {"sleep": "600"}, max_runtime_seconds=1)

    assert local_jobs.wait_idle(timeout=30)

    job = record(local_jobs, name)
    assert (job.status, job.exit_code) == ("FAILED", 137)
    detail = received(project, "JobStateFunction", name)[-1]["detail"]
    assert (detail["status"], detail["statusReason"]) == ("FAILED", "Job attempt duration exceeded timeout")


def test_jobs_created_before_start_are_not_run(project, moto, functions):
    earlier_training_job = start_sagemaker_job(moto)
    earlier_batch_job, _ = submit_batch_job(moto, project)
    local_jobs = LocalTrainingJobs(
        functions, moto.url, entry_point=[sys.executable, str(project / "job.py")], poll_seconds=0.2
    )
    local_jobs.start()
    try:
        later = start_sagemaker_job(moto)
        assert local_jobs.wait_idle(timeout=30)
    finally:
        local_jobs.stop()

    assert [job.name for job in local_jobs.jobs] == [later]
    assert received(project, "JobStateFunction", earlier_training_job) == []
    assert received(project, "JobStateFunction", earlier_batch_job) == []
