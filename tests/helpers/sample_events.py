"""The sample events of events/ (what `sam local invoke -e` takes), adapted for the tests that send
them to the real handlers: another model, another object key, another job id."""

from __future__ import annotations

import json

from tests.helpers.models import REPO_ROOT

EVENTS = REPO_ROOT / "events"
SAMPLE_MODEL = "chest-ct"  # the model the sample events name


def sample_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def for_model(event: dict, model: str) -> dict:
    """A sample event with `model` in place of the one it names."""
    return json.loads(json.dumps(event).replace(SAMPLE_MODEL, model))


def upload_notification(key: str) -> dict:
    """The sample SQS batch of one S3 upload notification, for the object `key`."""
    event = sample_event("sqs-upload-notification.json")
    body = json.loads(event["Records"][0]["body"])
    body["Records"][0]["s3"]["object"]["key"] = key
    event["Records"][0]["body"] = json.dumps(body)
    return event


def job_failed(job_id: str, model: str) -> dict:
    """The sample SageMaker state change, as the failure of `model`'s job `job_id`."""
    event = for_model(sample_event("eventbridge-sagemaker-job-state-change.json"), model)
    return json.loads(json.dumps(event).replace(event["detail"]["TrainingJobName"], job_id))
