"""Per-model upload counters (DynamoDB, key `pk`), counted exactly once per object.

Items:
    model#<model>   total (all uploads counted), pending (since the last job started),
                    active_job (the job currently claiming the model, if any), last_job
    upload#<key>    one per counted object: the idempotency record (expires after
                    SEEN_TTL_DAYS, longer than any S3/SQS redelivery)

Counting is one transaction (put the upload#<key> item if absent + add 1 to the
counters), so a redelivered event can never count twice, even across crashes.
Starting a job is one conditional update (no active job and pending >= threshold),
so however many events arrive at once, exactly one of them wins.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from urllib.parse import unquote_plus

from .aws_clients import ServiceAdapter
from .manifest import is_valid_model_id
from .uploads import UPLOAD_CONTENT_TYPES, UPLOADS_PREFIX

SEEN_TTL_DAYS = 30
DEFAULT_THRESHOLD = 50


@dataclass(frozen=True)
class UploadedObject:
    bucket: str
    key: str
    model: str
    label: str
    size: int = 0


@dataclass(frozen=True)
class CounterState:
    model: str
    total: int = 0
    pending: int = 0
    active_job: str | None = None
    last_job: str | None = None

    def public(self, threshold: int) -> dict:
        return {"total_uploads": self.total, "uploads_since_last_job": self.pending, "threshold": threshold,
                "active_job": self.active_job, "last_job": self.last_job}


def parse_upload_key(bucket: str, key: str, size: int = 0) -> UploadedObject | None:
    """uploads/<model>/<label>/<name>.<jpg|png> → UploadedObject; anything else → None."""
    parts = key.split("/")
    if len(parts) != 4 or f"{parts[0]}/" != UPLOADS_PREFIX or not is_valid_model_id(parts[1]) or not parts[2]:
        return None
    stem, _, extension = parts[3].rpartition(".")
    if not stem or extension.lower() not in set(UPLOAD_CONTENT_TYPES.values()):
        return None
    return UploadedObject(bucket=bucket, key=key, model=parts[1], label=parts[2], size=size)


def uploads_in_notification(body: str) -> list[UploadedObject]:
    """The uploaded objects an S3 event notification (an SQS message body) announces.
    S3's s3:TestEvent and objects outside the uploads layout announce none. Raises
    ValueError for a body that is not an S3 notification at all."""
    try:
        message = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"message body is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ValueError("message body is not an S3 event notification")
    if message.get("Event") == "s3:TestEvent":
        return []
    if not isinstance(message.get("Records"), list):
        raise ValueError("message body is not an S3 event notification (no Records)")
    found = []
    for index, record in enumerate(message["Records"]):
        if not str(record.get("eventName")).startswith("ObjectCreated:"):
            continue
        try:
            bucket, created = record["s3"]["bucket"]["name"], record["s3"]["object"]
            # S3 URL-encodes keys in notifications (spaces as '+').
            key, size = unquote_plus(created["key"]), int(created.get("size") or 0)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"Records[{index}] is an ObjectCreated record without s3.bucket.name and "
                             f"s3.object.key: {type(exc).__name__}") from None
        upload = parse_upload_key(bucket, key, size)
        if upload is not None:
            found.append(upload)
    return found


def thresholds_from_environment(environ=os.environ) -> tuple[int, dict[str, int]]:
    """RETRAIN_THRESHOLD (all models) and RETRAIN_THRESHOLDS (JSON {model: n}) overrides."""
    default = int(environ.get("RETRAIN_THRESHOLD") or DEFAULT_THRESHOLD)
    overrides = {str(k): int(v) for k, v in json.loads(environ.get("RETRAIN_THRESHOLDS") or "{}").items()}
    if default < 1 or any(v < 1 for v in overrides.values()):
        raise ValueError("retrain thresholds must be at least 1")
    return default, overrides


class UploadCounter(ServiceAdapter):
    service = "dynamodb"

    def __init__(self, table_name: str, client=None):
        super().__init__(client)
        self.table_name = table_name

    def _model_key(self, model: str) -> dict:
        return {"pk": {"S": f"model#{model}"}}

    def count(self, upload: UploadedObject) -> bool:
        """Counts the object once. True if counted now, False if it was counted before."""
        expires = int(time.time()) + SEEN_TTL_DAYS * 86400
        try:
            self.client.transact_write_items(TransactItems=[
                {"Put": {"TableName": self.table_name,
                         "Item": {"pk": {"S": f"upload#{upload.key}"}, "model": {"S": upload.model},
                                  "label": {"S": upload.label}, "expires_at": {"N": str(expires)}},
                         "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Update": {"TableName": self.table_name, "Key": self._model_key(upload.model),
                            "UpdateExpression": "ADD #total :one, pending :one",
                            "ExpressionAttributeNames": {"#total": "total"},
                            "ExpressionAttributeValues": {":one": {"N": "1"}}}},
            ])
            return True
        except self.client.exceptions.TransactionCanceledException as exc:
            codes = [reason.get("Code") for reason in exc.response.get("CancellationReasons", [])]
            if codes and codes[0] == "ConditionalCheckFailed":
                return False
            raise

    def state(self, model: str) -> CounterState:
        item = self.client.get_item(TableName=self.table_name, Key=self._model_key(model),
                                    ConsistentRead=True).get("Item", {})
        return CounterState(model=model, total=int(item.get("total", {}).get("N", 0)),
                            pending=int(item.get("pending", {}).get("N", 0)),
                            active_job=item.get("active_job", {}).get("S"), last_job=item.get("last_job", {}).get("S"))

    def claim(self, model: str, job_id: str, threshold: int | None) -> int | None:
        """Makes `job_id` the model's active job if none is active and (unless threshold
        is None: a manual request) at least `threshold` uploads are pending. Resets
        pending; returns how many were pending, or None if the claim lost."""
        condition = "attribute_not_exists(active_job)"
        values = {":job": {"S": job_id}, ":zero": {"N": "0"}}
        if threshold is not None:
            condition += " AND pending >= :threshold"
            values[":threshold"] = {"N": str(threshold)}
        try:
            response = self.client.update_item(
                TableName=self.table_name, Key=self._model_key(model),
                UpdateExpression="SET active_job = :job, last_job = :job, pending = :zero",
                ConditionExpression=condition, ExpressionAttributeValues=values, ReturnValues="ALL_OLD")
        except self.client.exceptions.ConditionalCheckFailedException:
            return None
        return int(response.get("Attributes", {}).get("pending", {}).get("N", 0))

    def release(self, model: str, job_id: str, restore_pending: int = 0) -> bool:
        """Ends `job_id`'s claim (only if it still holds it); `restore_pending` gives back
        the uploads of a job that never started."""
        try:
            self.client.update_item(
                TableName=self.table_name, Key=self._model_key(model),
                UpdateExpression="REMOVE active_job ADD pending :restore",
                ConditionExpression="active_job = :job",
                ExpressionAttributeValues={":job": {"S": job_id}, ":restore": {"N": str(restore_pending)}})
            return True
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
