"""The local runner's EventBridge schedules (the reconciler runs on one) and the moto service's
job-status route (so DescribeTrainingJob tells the reconciler what the local job really does)."""

import json
import urllib.error
import urllib.request

import boto3
import pytest

from scripts.local_runner import LocalFunctions
from scripts.local_runner.event_sources import Schedule, ScheduleSource, rate_seconds, schedules
from scripts.local_runner.moto_service import STATUS_PATH
from scripts.local_stack import LOCAL_PARAMETER_OVERRIDES, MotoServer, free_port
from tests.helpers.polling import wait_for
from tests.helpers.runner_projects import function_project, local_functions

pytestmark = pytest.mark.slow

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Every:
    Type: String
    Default: rate(5 minutes)
Resources:
  Reconciler:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Runtime: python3.12
      Timeout: 5
      Events:
        Tick:
          Type: Schedule
          Properties:
            Schedule: !Ref Every
        Paused:
          Type: Schedule
          Properties:
            Schedule: rate(1 minute)
            Enabled: false
"""
HANDLER = """\
import json
import os

LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "events.jsonl")


def handler(event, context):
    with open(LOG, "a") as log:
        log.write(json.dumps(event) + "\\n")
    return {"ok": True}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return function_project(tmp_path_factory.mktemp("schedule"), TEMPLATE, HANDLER)


@pytest.fixture(scope="module")
def functions(project):
    with local_functions(project) as functions:
        yield functions


@pytest.mark.parametrize(
    "expression, seconds",
    [("rate(1 minute)", 60), ("rate(10 minutes)", 600), ("rate(2 hours)", 7200), ("rate(1 day)", 86400)],
)
def test_rate_expressions_become_intervals(expression, seconds):
    assert rate_seconds(expression) == seconds


def test_cron_schedules_are_not_emulated_and_say_so():
    with pytest.raises(ValueError) as info:
        rate_seconds("cron(0 12 * * ? *)")
    assert str(info.value) == "only rate(...) schedules are emulated locally, not 'cron(0 12 * * ? *)'"


def test_enabled_schedules_are_read_from_the_resolved_template(functions):
    assert schedules(functions.stacks) == [Schedule("Reconciler", "Tick", "rate(5 minutes)")]


def test_the_template_reconciler_and_drift_monitor_run_on_schedules():
    stacks = LocalFunctions("template.yaml").stacks
    assert schedules(stacks) == [
        Schedule("ReconcilerFunction", "Schedule", "rate(10 minutes)"),
        Schedule("DriftMonitorFunction", "Schedule", "rate(1 hour)"),
    ]


def test_make_run_runs_the_drift_monitor_every_minute():
    stacks = LocalFunctions("template.yaml", parameter_overrides=LOCAL_PARAMETER_OVERRIDES).stacks
    assert Schedule("DriftMonitorFunction", "Schedule", "rate(1 minute)") in schedules(stacks)
    assert Schedule("ReconcilerFunction", "Schedule", "rate(10 minutes)") in schedules(stacks)


def test_a_schedule_invokes_its_function_with_eventbridges_scheduled_event(functions, project):
    source = ScheduleSource(functions, Schedule("Reconciler", "Tick", "rate(5 minutes)"), interval_seconds=0.2)
    assert ScheduleSource(functions, source.schedule).interval_seconds == 300
    source.start()
    try:
        wait_for(lambda: source.invocations >= 2, timeout=60, what="two scheduled invocations")
    finally:
        source.stop()
    events = [json.loads(line) for line in (project / "fn" / "events.jsonl").read_text().splitlines()]
    assert len(events) >= 2
    first = events[0]
    assert (first["source"], first["detail-type"], first["detail"]) == ("aws.events", "Scheduled Event", {})
    assert first["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/ReconcilerTick"]


@pytest.fixture(scope="module")
def moto():
    server = MotoServer(port=free_port()).start()
    yield server
    server.stop()


def report(url: str, body: dict) -> int:
    request = urllib.request.Request(url + STATUS_PATH, data=json.dumps(body).encode(), method="POST")
    try:
        return urllib.request.urlopen(request, timeout=10).status
    except urllib.error.HTTPError as error:
        return error.code


def test_training_jobs_start_in_progress_and_take_the_status_the_runner_reports(moto):
    sagemaker = boto3.client(
        "sagemaker", endpoint_url=moto.url, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )
    sagemaker.create_training_job(
        TrainingJobName="job-1",
        AlgorithmSpecification={"TrainingImage": "image", "TrainingInputMode": "File"},
        RoleArn="arn:aws:iam::123456789012:role/training",
        OutputDataConfig={"S3OutputPath": "s3://bucket/out"},
        ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )
    assert sagemaker.describe_training_job(TrainingJobName="job-1")["TrainingJobStatus"] == "InProgress"
    failed = {"backend": "sagemaker", "name": "job-1", "status": "Failed", "reason": "AlgorithmError: boom"}
    assert report(moto.url, failed) == 204
    described = sagemaker.describe_training_job(TrainingJobName="job-1")
    assert (described["TrainingJobStatus"], described["SecondaryStatus"], described["FailureReason"]) == (
        "Failed",
        "Failed",
        "AlgorithmError: boom",
    )
    assert report(moto.url, {**failed, "name": "no-such-job"}) == 404
    assert report(moto.url, {"name": "job-1"}) == 404
