"""The upload counter's DynamoDB requests and how it reads DynamoDB's answers, each guard on
its own, with botocore's Stubber (no AWS, no moto): what exactly is written, and which
errors mean "already counted" or "lost the claim" and which must propagate."""

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from med_classifier.adapters import upload_counter
from med_classifier.adapters.upload_counter import CONFLICT_ATTEMPTS, SEEN_TTL_DAYS, UploadCounter
from med_classifier.domain.uploads import Claim, CounterState, UploadedObject, parse_upload_key, uploads_in_notification

TABLE = "counts"
UPLOAD = UploadedObject("bucket", "uploads/chest-ct/normal/a.png", "chest-ct", "normal", 10)


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def stubbed(sleeps):
    client = boto3.client("dynamodb", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield UploadCounter(TABLE, client, sleep=sleeps.append), stubber
        stubber.assert_no_pending_responses()


def cancelled(stubber, *codes):
    stubber.add_client_error(
        "transact_write_items",
        service_error_code="TransactionCanceledException",
        http_status_code=400,
        modeled_fields={"CancellationReasons": [{"Code": code} for code in codes]},
    )


def test_counting_is_one_transaction_marking_the_object_and_adding_one(stubbed, monkeypatch):
    counter, stubber = stubbed
    monkeypatch.setattr(upload_counter.time, "time", lambda: 1_000_000.5)
    expires = 1_000_000 + 30 * 86400
    stubber.add_response(
        "transact_write_items",
        {},
        {
            "TransactItems": [
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": {
                            "pk": {"S": "upload#uploads/chest-ct/normal/a.png"},
                            "model": {"S": "chest-ct"},
                            "label": {"S": "normal"},
                            "expires_at": {"N": str(expires)},
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": {"pk": {"S": "model#chest-ct"}},
                        "UpdateExpression": "ADD #total :one, pending :one",
                        "ExpressionAttributeNames": {"#total": "total"},
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
            ]
        },
    )
    assert counter.count(UPLOAD) is True
    assert SEEN_TTL_DAYS == 30  # longer than S3's and SQS's redelivery windows


def test_an_object_whose_marker_exists_was_counted_before(stubbed):
    counter, stubber = stubbed
    cancelled(stubber, "ConditionalCheckFailed", "None")
    assert counter.count(UPLOAD) is False


@pytest.mark.parametrize("codes", [("ThrottlingError", "None"), ("None", "ValidationError")])
def test_a_transaction_cancelled_for_another_reason_is_not_counted_and_propagates(stubbed, sleeps, codes):
    counter, stubber = stubbed
    cancelled(stubber, *codes)
    with pytest.raises(ClientError) as info:
        counter.count(UPLOAD)
    assert info.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert sleeps == []  # not retried here: the message is redelivered


@pytest.mark.parametrize("codes", [("None", "TransactionConflict"), ("TransactionConflict", "None")])
def test_a_transaction_conflict_is_retried_with_growing_jittered_delays_and_then_counts(stubbed, sleeps, codes):
    counter, stubber = stubbed
    for _ in range(3):
        cancelled(stubber, *codes)
    stubber.add_response("transact_write_items", {})
    assert counter.count(UPLOAD) is True
    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps):
        base = upload_counter.CONFLICT_BASE_DELAY * 2**attempt
        assert base / 2 <= delay <= base


@pytest.mark.parametrize("draw, factor", [(0.0, 0.5), (1.0, 1.0)])
def test_the_retry_delays_double_and_are_jittered_between_half_and_all_of_it(
    stubbed, sleeps, monkeypatch, draw, factor
):
    counter, stubber = stubbed
    monkeypatch.setattr(upload_counter.random, "random", lambda: draw)
    for _ in range(3):
        cancelled(stubber, "None", "TransactionConflict")
    stubber.add_response("transact_write_items", {})
    assert counter.count(UPLOAD) is True
    assert sleeps == [0.05 * factor, 0.1 * factor, 0.2 * factor]


def test_each_conflict_retry_is_logged(stubbed, monkeypatch, caplog):
    counter, stubber = stubbed
    monkeypatch.setattr(upload_counter.random, "random", lambda: 1.0)
    cancelled(stubber, "None", "TransactionConflict")
    stubber.add_response("transact_write_items", {})
    with caplog.at_level("INFO", logger="med_classifier.adapters.upload_counter"):
        counter.count(UPLOAD)
    assert caplog.messages == ["transaction conflict counting uploads/chest-ct/normal/a.png; retry 1 in 0.050 s"]


def test_a_conflict_that_hides_a_counted_object_is_not_counted_twice(stubbed, sleeps):
    counter, stubber = stubbed
    cancelled(stubber, "None", "TransactionConflict")
    cancelled(stubber, "ConditionalCheckFailed", "None")  # the other transaction counted this very object
    assert counter.count(UPLOAD) is False and len(sleeps) == 1


def test_conflicts_past_the_last_attempt_propagate(stubbed, sleeps):
    counter, stubber = stubbed
    for _ in range(CONFLICT_ATTEMPTS):
        cancelled(stubber, "None", "TransactionConflict")
    with pytest.raises(ClientError) as info:
        counter.count(UPLOAD)
    assert info.value.response["CancellationReasons"] == [{"Code": "None"}, {"Code": "TransactionConflict"}]
    assert len(sleeps) == CONFLICT_ATTEMPTS - 1 == 5


def test_other_errors_propagate(stubbed):
    counter, stubber = stubbed
    stubber.add_client_error("transact_write_items", service_error_code="ProvisionedThroughputExceededException")
    with pytest.raises(ClientError):
        counter.count(UPLOAD)


def test_state_reads_consistently_and_defaults_to_zero(stubbed):
    counter, stubber = stubbed
    key = {"TableName": TABLE, "Key": {"pk": {"S": "model#chest-ct"}}, "ConsistentRead": True}
    stubber.add_response("get_item", {}, key)
    stubber.add_response(
        "get_item",
        {
            "Item": {
                "pk": {"S": "model#chest-ct"},
                "total": {"N": "12"},
                "pending": {"N": "3"},
                "active_job": {"S": "job-2"},
                "last_job": {"S": "job-2"},
            }
        },
        key,
    )
    assert counter.state("chest-ct") == CounterState("chest-ct")
    assert counter.state("chest-ct") == CounterState("chest-ct", 12, 3, "job-2", "job-2")


CLAIM_UPDATE = (
    "SET active_job = :job, last_job = :job, claimed_uploads = if_not_exists(pending, :zero), "
    "pending = :zero, claimed_at = :now, lease_expires_at = :lease"
)


def claim_request(condition: str, **values) -> dict:
    return {
        "TableName": TABLE,
        "Key": {"pk": {"S": "model#chest-ct"}},
        "UpdateExpression": CLAIM_UPDATE,
        "ConditionExpression": condition,
        "ExpressionAttributeValues": {
            ":job": {"S": "job-1"},
            ":zero": {"N": "0"},
            ":now": {"N": "1000.250"},
            ":lease": {"N": "4600.250"},
            **values,
        },
        "ReturnValues": "ALL_OLD",
    }


def test_a_claim_needs_no_live_claim_and_enough_pending_and_records_the_job_and_its_lease(stubbed):
    counter, stubber = stubbed
    stubber.add_response(
        "update_item",
        {"Attributes": {"pending": {"N": "7"}}},
        claim_request(
            "(attribute_not_exists(active_job) OR lease_expires_at < :now) AND pending >= :threshold",
            **{":threshold": {"N": "5"}},
        ),
    )
    assert counter.claim("chest-ct", "job-1", 5, now=1000.25, lease_seconds=3600) == Claim(uploads=7)


def test_a_manual_claim_needs_only_no_live_claim(stubbed):
    counter, stubber = stubbed
    stubber.add_response(
        "update_item", {}, claim_request("(attribute_not_exists(active_job) OR lease_expires_at < :now)")
    )
    assert counter.claim("chest-ct", "job-1", None, now=1000.25, lease_seconds=3600) == Claim(uploads=0)


def test_a_claim_that_takes_over_an_expired_lease_names_the_job_it_replaced(stubbed):
    counter, stubber = stubbed
    old = {"pending": {"N": "2"}, "active_job": {"S": "job-0"}, "lease_expires_at": {"N": "999"}}
    stubber.add_response(
        "update_item",
        {"Attributes": old},
        claim_request("(attribute_not_exists(active_job) OR lease_expires_at < :now)"),
    )
    assert counter.claim("chest-ct", "job-1", None, now=1000.25, lease_seconds=3600) == Claim(2, took_over="job-0")


def test_a_lost_claim_is_none_and_other_errors_propagate(stubbed):
    counter, stubber = stubbed
    stubber.add_client_error("update_item", service_error_code="ConditionalCheckFailedException")
    stubber.add_client_error("update_item", service_error_code="ThrottlingException")
    assert counter.claim("chest-ct", "job-1", 5, now=1, lease_seconds=1) is None
    with pytest.raises(ClientError):
        counter.claim("chest-ct", "job-1", 5, now=1, lease_seconds=1)


def release_request(job: str, restore: int) -> dict:
    return {
        "TableName": TABLE,
        "Key": {"pk": {"S": "model#chest-ct"}},
        "UpdateExpression": "REMOVE active_job, claimed_at, lease_expires_at, claimed_uploads ADD pending :restore",
        "ConditionExpression": "active_job = :job",
        "ExpressionAttributeValues": {":job": {"S": job}, ":restore": {"N": str(restore)}},
    }


def test_release_only_ends_the_claim_of_the_job_holding_it_and_drops_its_lease(stubbed):
    counter, stubber = stubbed
    stubber.add_response("update_item", {}, release_request("job-1", restore=4))
    stubber.add_response("update_item", {}, release_request("job-2", restore=0))  # nothing given back
    stubber.add_client_error("update_item", service_error_code="ConditionalCheckFailedException")
    stubber.add_client_error("update_item", service_error_code="InternalServerError")
    assert counter.release("chest-ct", "job-1", restore_pending=4) is True
    assert counter.release("chest-ct", "job-2") is True
    assert counter.release("chest-ct", "job-0") is False
    with pytest.raises(ClientError):
        counter.release("chest-ct", "job-1")


def test_active_claims_are_read_from_the_sparse_index_page_by_page(stubbed):
    counter, stubber = stubbed
    claimed = {
        "pk": {"S": "model#chest-ct"},
        "pending": {"N": "1"},
        "active_job": {"S": "job-1"},
        "claimed_at": {"N": "1000.5"},
        "lease_expires_at": {"N": "4600.5"},
        "claimed_uploads": {"N": "3"},
    }
    request = {"TableName": TABLE, "IndexName": "active-claims"}
    stubber.add_response("scan", {"Items": [claimed], "LastEvaluatedKey": {"pk": {"S": "x"}}}, request)
    stubber.add_response(
        "scan",
        {"Items": [{"pk": {"S": "model#skin-lesion"}, "active_job": {"S": "job-2"}}]},
        {**request, "ExclusiveStartKey": {"pk": {"S": "x"}}},
    )
    stubber.add_response("scan", {}, request)  # a page without items
    assert counter.active_claims() == [
        CounterState("chest-ct", 0, 1, "job-1", None, 1000.5, 4600.5, 3),
        CounterState("skin-lesion", active_job="job-2"),
    ]
    assert counter.active_claims() == []


# --- upload keys and notifications ------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.JPG", "a.Png", "a.jpg", "a.png", "a.b.PNG"])
def test_upload_extensions_are_case_insensitive(name):
    upload = parse_upload_key("b", f"uploads/chest-ct/normal/{name}", 7)
    assert upload == UploadedObject("b", f"uploads/chest-ct/normal/{name}", "chest-ct", "normal", 7)


@pytest.mark.parametrize(
    "key",
    [
        "uploads/chest-ct/normal/a.jpeg",
        "uploads/chest-ct/normal/png",
        "uploads/chest-ct/normal/.png",
        "uploads/chest-ct/normal/a.gif",
        "datasets/chest-ct/normal/a.png",
        "uploadsx/chest-ct/normal/a.png",
        "uploads/chest-ct//a.png",
    ],
)
def test_keys_outside_the_uploads_layout_are_not_uploads(key):
    assert parse_upload_key("b", key) is None


def test_notification_records_carry_bucket_key_and_size():
    body = json.dumps(
        {
            "Records": [
                {
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": "up"}, "object": {"key": "uploads/chest-ct/normal/a.png", "size": 99}},
                },
                {
                    "eventName": "ObjectCreated:Post",
                    "s3": {"bucket": {"name": "up"}, "object": {"key": "uploads/chest-ct/normal/b.png"}},
                },
                {
                    "eventName": "ObjectRemoved:Delete",
                    "s3": {"bucket": {"name": "up"}, "object": {"key": "uploads/chest-ct/normal/c.png"}},
                },
            ]
        }
    )
    assert uploads_in_notification(body) == [
        UploadedObject("up", "uploads/chest-ct/normal/a.png", "chest-ct", "normal", 99),
        UploadedObject("up", "uploads/chest-ct/normal/b.png", "chest-ct", "normal", 0),
    ]


@pytest.mark.parametrize(
    "body, message",
    [
        ("not json", "message body is not JSON: Expecting value: line 1 column 1 (char 0)"),
        ("[1, 2]", "message body is not an S3 event notification"),
        ('{"hello": "world"}', "message body is not an S3 event notification (no Records)"),
        ('{"Records": {}}', "message body is not an S3 event notification (no Records)"),
    ],
)
def test_a_message_that_is_no_s3_notification_says_why(body, message):
    with pytest.raises(ValueError) as info:
        uploads_in_notification(body)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "record, error",
    [
        ({"eventName": "ObjectCreated:Put"}, "KeyError"),
        ({"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "uploads/chest-ct/normal/a.png"}}}, "KeyError"),
        ({"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "up"}, "object": {}}}, "KeyError"),
        ({"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "up"}, "object": "key"}}, "TypeError"),
        (
            {
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": "up"}, "object": {"key": "uploads/chest-ct/normal/a.png", "size": "big"}},
            },
            "ValueError",
        ),
    ],
)
def test_a_created_record_without_bucket_and_key_is_an_error_not_skipped(record, error):
    body = json.dumps({"Records": [{"eventName": "ObjectRemoved:Delete"}, record]})
    with pytest.raises(ValueError) as info:
        uploads_in_notification(body)
    assert str(info.value) == (
        "Records[1] is an ObjectCreated record without s3.bucket.name and s3.object.key: " + error
    )


def test_records_other_than_object_created_are_skipped_whatever_they_hold():
    body = json.dumps(
        {
            "Records": [
                {"eventName": "ObjectRemoved:Delete"},
                {},
                {"eventName": None},
                {
                    "eventName": "ObjectCreated:Copy",
                    "s3": {"bucket": {"name": "up"}, "object": {"key": "uploads/chest-ct/normal/d.png", "size": 5}},
                },
            ]
        }
    )
    assert [u.key for u in uploads_in_notification(body)] == ["uploads/chest-ct/normal/d.png"]


def test_a_transaction_cancelled_without_reasons_propagates(stubbed):
    counter, stubber = stubbed
    stubber.add_client_error("transact_write_items", service_error_code="TransactionCanceledException")
    with pytest.raises(ClientError):
        counter.count(UPLOAD)


def test_an_upload_parsed_without_a_size_has_size_zero():
    assert parse_upload_key("b", "uploads/chest-ct/normal/a.png").size == 0


def created(bucket, key):
    return {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}


def test_records_from_another_bucket_are_ignored_and_logged(caplog):
    body = json.dumps(
        {"Records": [created("other", "uploads/chest-ct/normal/a.png"), created("up", "uploads/chest-ct/normal/b.png")]}
    )
    with caplog.at_level("WARNING", logger="med_classifier.domain.uploads"):
        assert uploads_in_notification(body, bucket="up") == [
            UploadedObject("up", "uploads/chest-ct/normal/b.png", "chest-ct", "normal", 0)
        ]
    assert caplog.messages == ["ignoring Records[0]: bucket 'other' is not the uploads bucket 'up'"]
    assert len(uploads_in_notification(body)) == 2  # without a bucket to check, both count


@pytest.mark.parametrize(
    "record, message",
    [
        ("a string", "Records[0] is not an object"),
        ([1], "Records[0] is not an object"),
        (
            {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "up"}, "object": ["key"]}},
            "Records[0] is an ObjectCreated record without s3.bucket.name and s3.object.key: TypeError",
        ),
        (
            {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "up"}, "object": {"key": "k", "size": "big"}}},
            "Records[0] is an ObjectCreated record without s3.bucket.name and s3.object.key: ValueError",
        ),
    ],
)
def test_records_of_the_wrong_shape_are_errors_that_say_which(record, message):
    with pytest.raises(ValueError) as info:
        uploads_in_notification(json.dumps({"Records": [record]}))
    assert str(info.value) == message


def test_a_size_too_large_for_an_integer_is_an_error_that_says_which_record():
    record = {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "up"}, "object": {"key": "k", "size": 1e400}}}
    with pytest.raises(ValueError) as info:
        uploads_in_notification(json.dumps({"Records": [record]}))
    assert str(info.value) == (
        "Records[0] is an ObjectCreated record without s3.bucket.name and s3.object.key: OverflowError"
    )


def test_a_body_nested_too_deeply_is_no_notification():
    with pytest.raises(ValueError) as info:
        uploads_in_notification("[" * 100_000 + "]" * 100_000)
    assert str(info.value) == "message body is nested too deeply to be an S3 event notification"
