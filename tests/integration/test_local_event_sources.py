"""The local runner's SQS event source mapping against a real moto server and real worker processes.

The handler (written to tmp_path) logs every event it gets; a message body of "fail" is reported in
batchItemFailures and a body of "raise" makes the whole invocation raise.
"""

import hashlib
import json
import time
import uuid
from urllib.parse import unquote_plus

import boto3
import pytest

from scripts.local_runner import (
    LocalFunctions,
    SqsEventSource,
    SqsSubscription,
    messages_to_retry,
    sqs_event_sources,
    sqs_subscriptions,
)
from scripts.local_stack import MotoServer, free_port
from tests.helpers.runner_projects import function_project, local_functions

pytestmark = pytest.mark.slow

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  UploadBatchSize:
    Type: Number
    Default: 10
Resources:
  UploadDeadLetterQueue:
    Type: AWS::SQS::Queue
  UploadQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 1
      RedrivePolicy: {deadLetterTargetArn: !GetAtt UploadDeadLetterQueue.Arn, maxReceiveCount: 2}
  UploadCounterFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Runtime: python3.12
      Timeout: 5
      Events:
        UploadQueue:
          Type: SQS
          Properties:
            Queue: !GetAtt UploadQueue.Arn
            BatchSize: !Ref UploadBatchSize
            MaximumBatchingWindowInSeconds: 1
            FunctionResponseTypes: [ReportBatchItemFailures]
"""
HANDLER = """\
import json
import os

LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "events.jsonl")


def handler(event, context):
    with open(LOG, "a") as log:
        log.write(json.dumps(event) + "\\n")
    records = event["Records"]
    if any(record["body"] == "raise" for record in records):
        raise RuntimeError("asked to raise")
    return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records if r["body"] == "fail"]}
"""
SUBSCRIPTION = SqsSubscription("UploadCounterFunction", "UploadQueue", 10, 1.0, True)
# For the redelivery tests: no batching window, which could outlast a 1 s visibility timeout and redeliver a
# message into the batch it is already in.
UNBATCHED = SUBSCRIPTION._replace(window_seconds=0)


@pytest.fixture(scope="module")
def moto():
    server = MotoServer(port=free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return function_project(tmp_path_factory.mktemp("sqs"), TEMPLATE, HANDLER)


@pytest.fixture(scope="module")
def functions(project):
    with local_functions(project) as functions:
        yield functions


@pytest.fixture(scope="module")
def sqs(moto):
    return boto3.client("sqs", endpoint_url=moto.url, region_name="us-east-1")


@pytest.fixture
def start_source(functions, sqs):
    sources = []

    def start(queue_url, subscription=SUBSCRIPTION):
        source = SqsEventSource(functions, subscription, queue_url, sqs)
        source.start()
        sources.append(source)
        return source

    yield start
    for source in sources:
        source.stop()


def create_queue(sqs, visibility_timeout=30, max_receive_count=None):
    """A fresh queue's URL; with ``max_receive_count``, also its dead-letter queue's URL."""
    name = f"q-{uuid.uuid4().hex[:12]}"
    attributes = {"VisibilityTimeout": str(visibility_timeout)}
    dlq_url = None
    if max_receive_count:
        dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count})
    return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"], dlq_url


def send(sqs, queue_url, *bodies):
    entries = [{"Id": str(index), "MessageBody": body} for index, body in enumerate(bodies)]
    sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)


def batches(project, source):
    """The record lists the handler got from the source's queue, in order."""
    log = project / "fn" / "events.jsonl"
    events = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [
        event["Records"]
        for event in events
        if event.get("Records") and event["Records"][0]["eventSourceARN"] == source.queue_arn
    ]


def deliveries(project, source, body):
    return [record for batch in batches(project, source) for record in batch if record["body"] == body]


def wait_until(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def queue_size(sqs, queue_url):
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


def test_subscriptions_are_read_from_the_resolved_template(project):
    template = str(project / "template.yaml")

    assert sqs_subscriptions(LocalFunctions(template).stacks) == [SUBSCRIPTION]
    (overridden,) = sqs_subscriptions(LocalFunctions(template, parameter_overrides={"UploadBatchSize": "4"}).stacks)
    assert overridden.batch_size == 4


def test_event_sources_map_template_queues_to_urls(functions, sqs):
    queue_url, _ = create_queue(sqs)

    (source,) = sqs_event_sources(functions, {"UploadQueue": queue_url}, sqs)

    assert (source.subscription, source.queue_url) == (SUBSCRIPTION, queue_url)
    assert source.queue_arn == f"arn:aws:sqs:us-east-1:123456789012:{queue_url.rsplit('/', 1)[-1]}"
    with pytest.raises(ValueError, match="UploadQueue"):
        sqs_event_sources(functions, {}, sqs)


def test_messages_reach_the_handler_in_batches_of_batch_size(project, sqs, start_source):
    queue_url, _ = create_queue(sqs)
    send(sqs, queue_url, "m1", "m2", "m3", "m4")
    sqs.send_message(
        QueueUrl=queue_url, MessageBody="m5", MessageAttributes={"kind": {"DataType": "String", "StringValue": "x"}}
    )

    source = start_source(queue_url, SUBSCRIPTION._replace(batch_size=3))
    wait_until(lambda: source.messages_deleted == 5)

    delivered = batches(project, source)
    assert [len(batch) for batch in delivered] == [3, 2]
    assert sorted(record["body"] for batch in delivered for record in batch) == ["m1", "m2", "m3", "m4", "m5"]
    record = next(record for batch in delivered for record in batch if record["body"] == "m5")
    assert set(record) == {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert (record["eventSource"], record["eventSourceARN"], record["awsRegion"]) == (
        "aws:sqs",
        source.queue_arn,
        "us-east-1",
    )
    assert record["md5OfBody"] == hashlib.md5(b"m5").hexdigest()
    assert {"ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} <= set(
        record["attributes"]
    )
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"] == {
        "kind": {"stringValue": "x", "stringListValues": [], "binaryListValues": [], "dataType": "String"}
    }
    assert (source.batches, source.failed_batches, source.messages_retried) == (2, 0, 0)
    assert queue_size(sqs, queue_url) == 0


def test_s3_notifications_reach_the_handler(project, moto, sqs, start_source):
    queue_url, _ = create_queue(sqs)
    source = start_source(queue_url)
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
    bucket = f"uploads-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": source.queue_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )

    s3.put_object(Bucket=bucket, Key="uploads/breast-cancer/benign/1.json", Body=b"{}")

    def uploaded_keys():
        bodies = [json.loads(record["body"]) for batch in batches(project, source) for record in batch]
        # Keys arrive URL-encoded (moto also encodes the slashes, which S3 does not).
        return [unquote_plus(r["s3"]["object"]["key"]) for body in bodies for r in body.get("Records", [])]

    wait_until(lambda: uploaded_keys() == ["uploads/breast-cancer/benign/1.json"])
    wait_until(lambda: queue_size(sqs, queue_url) == 0)  # the s3:TestEvent is delivered and deleted too


def test_partial_batch_failure_redelivers_only_the_failed_message(project, sqs, start_source):
    queue_url, _ = create_queue(sqs, visibility_timeout=1)
    send(sqs, queue_url, "ok-1", "fail", "ok-2")

    source = start_source(queue_url, UNBATCHED)
    wait_until(lambda: len(deliveries(project, source, "fail")) >= 2)

    first, second = batches(project, source)[:2]
    assert sorted(record["body"] for record in first) == ["fail", "ok-1", "ok-2"]
    assert [(record["body"], record["attributes"]["ApproximateReceiveCount"]) for record in second] == [("fail", "2")]
    assert len(deliveries(project, source, "ok-1")) == len(deliveries(project, source, "ok-2")) == 1
    assert source.messages_deleted == 2


def test_without_report_batch_item_failures_the_whole_batch_is_deleted(project, sqs, start_source):
    queue_url, _ = create_queue(sqs)
    send(sqs, queue_url, "ok", "fail")

    source = start_source(queue_url, SUBSCRIPTION._replace(report_batch_item_failures=False))
    wait_until(lambda: source.messages_deleted == 2)

    assert queue_size(sqs, queue_url) == 0
    assert len(deliveries(project, source, "fail")) == 1


def test_a_message_that_always_fails_ends_in_the_dead_letter_queue(project, sqs, start_source):
    queue_url, dlq_url = create_queue(sqs, visibility_timeout=1, max_receive_count=2)
    send(sqs, queue_url, "fail")

    source = start_source(queue_url, UNBATCHED)
    wait_until(lambda: queue_size(sqs, dlq_url) == 1)

    assert [record["attributes"]["ApproximateReceiveCount"] for record in deliveries(project, source, "fail")] == [
        "1",
        "2",
    ]
    (message,) = sqs.receive_message(QueueUrl=dlq_url)["Messages"]
    assert message["Body"] == "fail"
    assert source.messages_deleted == 0
    assert queue_size(sqs, queue_url) == 0


def test_an_invocation_that_raises_deletes_nothing(project, sqs, start_source):
    queue_url, dlq_url = create_queue(sqs, visibility_timeout=1, max_receive_count=2)
    send(sqs, queue_url, "raise", "innocent")

    source = start_source(queue_url, UNBATCHED)
    wait_until(lambda: queue_size(sqs, dlq_url) == 2)

    assert len(deliveries(project, source, "innocent")) == 2  # failed with the batch, although it was fine
    assert (source.messages_deleted, source.failed_batches, source.messages_retried) == (0, 2, 4)


@pytest.mark.parametrize(
    ("result", "retried"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": None}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}),
        ({"batchItemFailures": [{"itemIdentifier": "stranger"}]}, {"a", "b"}),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, {"a", "b"}),
        ({"batchItemFailures": [{"id": "a"}]}, {"a", "b"}),
        ({"batchItemFailures": "a"}, {"a", "b"}),
        ("ok", {"a", "b"}),
    ],
)
def test_batch_item_failure_responses_follow_lambdas_rules(result, retried):
    assert messages_to_retry(result, ["a", "b"]) == retried
