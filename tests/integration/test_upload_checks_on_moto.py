"""UploadCounterFunction checks each uploaded object before it counts, against moto with the
template's bucket, queue and tables: a PNG with an uploader counts; an object that is not an
image, or has no uploader, is moved to quarantine/<key> with the reason, logged, measured and
not counted; a notification redelivered after the move changes nothing; an S3 error fails the
message (SQS retries it) and quarantines nothing."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from scripts.local_resources import provision
from tests.helpers.models import REPO_ROOT, LambdaContext, load_function_module
from tests.helpers.uploads import UPLOADER, labelled_png, put_upload
from tests.integration.test_retraining_faults import inject

ENV = {
    k: v
    for k, v in json.loads((REPO_ROOT / "events" / "env.json").read_text())["Parameters"].items()
    if k != "AWS_ENDPOINT_URL"
}
BUCKET = ENV["UPLOADS_BUCKET"]
NO_UPLOADER = "The object has no uploader: its metadata 'uploader' is missing or empty."
NOT_AN_IMAGE = "The file is not a JPEG or PNG image."


@pytest.fixture
def s3(monkeypatch):
    with mock_aws():
        for name, value in ENV.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("RETRAIN_THRESHOLD", "100")
        provision(lambda service: boto3.client(service, region_name="us-east-1"), REPO_ROOT / "template.yaml", ENV)
        yield boto3.client("s3", region_name="us-east-1")


@pytest.fixture
def counter(s3):
    return load_function_module("upload_counter")  # a fresh module: a cold start


def key(name: str) -> str:
    return f"uploads/chest-ct/normal/{name}.png"


def notification(*keys: str, message: str = "m0") -> dict:
    records = [
        {"eventName": "ObjectCreated:Post", "s3": {"bucket": {"name": BUCKET}, "object": {"key": k}}} for k in keys
    ]
    return {
        "messageId": message,
        "receiptHandle": "r",
        "body": json.dumps({"Records": records}),
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:upload-queue-local",
    }


def deliver(counter, *messages: dict) -> list[str]:
    """Calls the handler with one SQS batch; returns the ids of the messages SQS will redeliver."""
    response = counter.lambda_handler({"Records": list(messages)}, LambdaContext("UploadCounterFunction", 256))
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def total(counter) -> int:
    return counter._service().counter.state("chest-ct").total


def exists(s3, object_key: str) -> bool:
    return s3.list_objects_v2(Bucket=BUCKET, Prefix=object_key)["KeyCount"] == 1


def emitted_metrics(output: str) -> list[str]:
    """The metric names in the EMF documents the handler printed."""
    names = []
    for line in output.splitlines():
        if line.startswith("{") and "_aws" in line:
            document = json.loads(line)
            names += [m["Name"] for d in document["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]]
    return names


def logged(caplog, message: str) -> list:
    return [record for record in caplog.records if record.getMessage() == message]


def test_a_png_with_an_uploader_is_counted_and_stays_in_place(s3, counter, capsys):
    put_upload(s3, BUCKET, key("a"))
    assert deliver(counter, notification(key("a"))) == []
    assert total(counter) == 1 and exists(s3, key("a"))
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="quarantine/")["KeyCount"] == 0
    assert "QuarantinedUploads" not in emitted_metrics(capsys.readouterr().out)


@pytest.mark.parametrize(
    "body, uploader, reason",
    [
        (b"#!/bin/sh\necho not an image\n", UPLOADER, NOT_AN_IMAGE),
        (labelled_png()[:20], UPLOADER, "The PNG file ends before its IHDR chunk is complete."),
        (labelled_png(), None, NO_UPLOADER),
        (labelled_png(), "", NO_UPLOADER),
    ],
    ids=["not-an-image", "truncated", "no-uploader", "empty-uploader"],
)
def test_a_refused_object_is_moved_to_quarantine_with_its_reason_and_not_counted(
    s3, counter, capsys, caplog, body, uploader, reason
):
    put_upload(s3, BUCKET, key("bad"), body, uploader=uploader)
    assert deliver(counter, notification(key("bad"))) == []
    assert total(counter) == 0
    assert not exists(s3, key("bad"))
    moved = s3.get_object(Bucket=BUCKET, Key=f"quarantine/{key('bad')}")
    assert moved["Body"].read() == body and moved["ContentType"] == "image/png"
    assert moved["Metadata"]["quarantine-reason"] == reason
    assert moved["Metadata"].get("uploader") == (uploader or None)
    assert emitted_metrics(capsys.readouterr().out).count("QuarantinedUploads") == 1
    (record,) = logged(caplog, "upload quarantined")
    assert (record.key, record.reason, record.levelname) == (key("bad"), reason, "WARNING")


def test_an_object_over_the_pixel_limit_is_quarantined(s3, counter):
    import struct
    import zlib

    ihdr = b"IHDR" + struct.pack(">IIBBBBB", 4096, 4096, 8, 2, 0, 0, 0)
    header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
    put_upload(s3, BUCKET, key("huge"), header + b"\x00" * 64)
    assert deliver(counter, notification(key("huge"))) == []
    moved = s3.head_object(Bucket=BUCKET, Key=f"quarantine/{key('huge')}")
    assert moved["Metadata"]["quarantine-reason"] == (
        "The image is 4096x4096 pixels (16777216); at most 4194304 pixels are accepted."
    )
    assert total(counter) == 0


def test_good_and_refused_objects_in_one_batch_are_each_judged_on_their_own(s3, counter):
    put_upload(s3, BUCKET, key("good"))
    put_upload(s3, BUCKET, key("anonymous"), uploader=None)
    assert deliver(counter, notification(key("good"), key("anonymous")), notification(key("good"), message="m1")) == []
    assert total(counter) == 1  # the good one once, though announced twice
    assert exists(s3, key("good")) and exists(s3, f"quarantine/{key('anonymous')}")


def test_a_notification_redelivered_after_the_move_is_a_no_op(s3, counter, capsys, caplog):
    put_upload(s3, BUCKET, key("bad"), b"GIF89a" + b"\x00" * 32)
    assert deliver(counter, notification(key("bad"))) == []
    first = s3.head_object(Bucket=BUCKET, Key=f"quarantine/{key('bad')}")
    capsys.readouterr()

    assert deliver(counter, notification(key("bad"))) == []  # S3 and SQS deliver at least once
    assert deliver(load_function_module("upload_counter"), notification(key("bad"))) == []  # another container
    again = s3.head_object(Bucket=BUCKET, Key=f"quarantine/{key('bad')}")
    assert again["LastModified"] == first["LastModified"] and again["ETag"] == first["ETag"]
    assert again["Metadata"]["quarantine-reason"] == NOT_AN_IMAGE
    assert total(counter) == 0
    assert "QuarantinedUploads" not in emitted_metrics(capsys.readouterr().out)
    assert [r.key for r in logged(caplog, "upload gone")] == [key("bad"), key("bad")]


SLOW_DOWN = {"Code": "SlowDown", "Message": "Please reduce your request rate.", "status": 503}
INTERNAL = {"Code": "InternalError", "Message": "We encountered an internal error.", "status": 500}


@pytest.mark.parametrize("operation", ["HeadObject", "GetObject"])
@pytest.mark.parametrize("error", [SLOW_DOWN, INTERNAL, {"Code": "AccessDenied", "Message": "no", "status": 403}])
def test_an_s3_error_while_checking_a_good_object_is_retried_not_quarantined(s3, counter, operation, error):
    put_upload(s3, BUCKET, key("good"))
    put_upload(s3, BUCKET, key("other"))
    calls = inject(counter._gate().store.client, operation, [dict(error)])
    # The first message meets the error; the second is counted: only the first is redelivered.
    assert deliver(counter, notification(key("good")), notification(key("other"), message="m1")) == ["m0"]
    assert calls[0]["url_path"].endswith(f"/{key('good')}")
    assert total(counter) == 1 and exists(s3, key("good"))
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="quarantine/")["KeyCount"] == 0
    assert deliver(counter, notification(key("good"))) == []  # SQS redelivers it
    assert total(counter) == 2 and exists(s3, key("good"))


@pytest.mark.parametrize("operation", ["CopyObject", "DeleteObject"])
def test_an_s3_error_while_moving_is_retried_and_the_redelivery_finishes_the_move(s3, counter, operation):
    put_upload(s3, BUCKET, key("bad"), b"not an image at all")
    put_upload(s3, BUCKET, key("other"))
    inject(counter._gate().store.client, operation, [dict(SLOW_DOWN)])
    assert deliver(counter, notification(key("bad")), notification(key("other"), message="m1")) == ["m0"]
    assert exists(s3, key("bad"))  # not moved, or copied and not yet deleted
    assert exists(s3, f"quarantine/{key('bad')}") == (operation == "DeleteObject")
    assert deliver(counter, notification(key("bad"))) == []
    assert not exists(s3, key("bad")) and exists(s3, f"quarantine/{key('bad')}")
    assert total(counter) == 1  # only the other one


def test_quarantined_objects_are_outside_every_training_channel(s3, counter):
    put_upload(s3, BUCKET, key("bad"), uploader=None)
    deliver(counter, notification(key("bad")))
    launch = counter.settings().launch()
    for uri in launch.channels("chest-ct").values():
        prefix = uri.removeprefix(f"s3://{BUCKET}/")
        assert s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["KeyCount"] == 0, uri
    assert launch.channels("chest-ct")["uploads"] == f"s3://{BUCKET}/uploads/chest-ct/"
