"""Per-model upload counters (DynamoDB, key `pk`), counted exactly once per object: the
CounterStore adapter.

Items:
    model#<model>   total (all uploads counted), pending (since the last job started),
                    active_job (the job currently claiming the model, if any), last_job,
                    and the claim's claimed_at, lease_expires_at and claimed_uploads
    upload#<key>    one per counted object: the idempotency record (expires after
                    SEEN_TTL_DAYS, longer than any S3/SQS redelivery)

Counting is one transaction (put the upload#<key> item if absent + add 1 to the
counters), so a redelivered event can never count twice, even across crashes.
Starting a job is one conditional update (no active job, or its lease expired, and
pending >= threshold), so however many events arrive at once, exactly one of them wins.
The sparse index `active-claims` (key active_job) holds only claimed models: the
reconciler reads it without scanning the upload records.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from ..domain.uploads import Claim, CounterState, UploadedObject
from .aws_clients import ServiceAdapter

SEEN_TTL_DAYS = 30
ACTIVE_CLAIMS_INDEX = "active-claims"
# A burst of uploads of one model makes their transactions conflict on the model's item;
# DynamoDB cancels the losers, and botocore does not retry a cancelled transaction.
CONFLICT_ATTEMPTS = 6
CONFLICT_BASE_DELAY = 0.05
log = logging.getLogger(__name__)
# Operands read the item as it was before the update: claimed_uploads gets the old pending.
CLAIM_UPDATE = (
    "SET active_job = :job, last_job = :job, claimed_uploads = if_not_exists(pending, :zero), "
    "pending = :zero, claimed_at = :now, lease_expires_at = :lease"
)
RELEASE_UPDATE = "REMOVE active_job, claimed_at, lease_expires_at, claimed_uploads ADD pending :restore"


class UploadCounter(ServiceAdapter):
    service = "dynamodb"

    def __init__(
        self,
        table_name: str,
        client=None,
        endpoint_url: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        super().__init__(client, endpoint_url)
        self.table_name = table_name
        self._sleep = sleep

    def _model_key(self, model: str) -> dict:
        return {"pk": {"S": f"model#{model}"}}

    def count(self, upload: UploadedObject) -> bool:
        """Counts the object once. True if counted now, False if it was counted before.
        Transaction conflicts are retried with jittered exponential backoff; after
        CONFLICT_ATTEMPTS the error propagates (the message is redelivered, never lost)."""
        attempt = 1
        while True:
            try:
                self.client.transact_write_items(TransactItems=self._count_items(upload))
                return True
            except self.client.exceptions.TransactionCanceledException as exc:
                codes = [reason.get("Code") for reason in exc.response.get("CancellationReasons", [])]
                if codes and codes[0] == "ConditionalCheckFailed":
                    return False
                if "TransactionConflict" not in codes or attempt == CONFLICT_ATTEMPTS:
                    raise
                delay = CONFLICT_BASE_DELAY * 2 ** (attempt - 1) * (0.5 + random.random() / 2)
                log.info("transaction conflict counting %s; retry %d in %.3f s", upload.key, attempt, delay)
                self._sleep(delay)
                attempt += 1

    def _count_items(self, upload: UploadedObject) -> list[dict]:
        expires = int(time.time()) + SEEN_TTL_DAYS * 86400
        return [
            {
                "Put": {
                    "TableName": self.table_name,
                    "Item": {
                        "pk": {"S": f"upload#{upload.key}"},
                        "model": {"S": upload.model},
                        "label": {"S": upload.label},
                        "expires_at": {"N": str(expires)},
                    },
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Update": {
                    "TableName": self.table_name,
                    "Key": self._model_key(upload.model),
                    "UpdateExpression": "ADD #total :one, pending :one",
                    "ExpressionAttributeNames": {"#total": "total"},
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            },
        ]

    def state(self, model: str) -> CounterState:
        item = self.client.get_item(TableName=self.table_name, Key=self._model_key(model), ConsistentRead=True).get(
            "Item", {}
        )
        return _state(model, item)

    def active_claims(self) -> list[CounterState]:
        """Every model with an active job (the sparse index holds only those)."""
        states, request = [], {"TableName": self.table_name, "IndexName": ACTIVE_CLAIMS_INDEX}
        while True:
            page = self.client.scan(**request)
            states += [_state(item["pk"]["S"].removeprefix("model#"), item) for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return states
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def claim(
        self, model: str, job_id: str, threshold: int | None, *, now: float, lease_seconds: float
    ) -> Claim | None:
        """Makes `job_id` the model's active job if none is active (or the active one's lease
        has expired) and, unless threshold is None (a manual request), at least `threshold`
        uploads are pending. Moves pending to the claim; returns the Claim, or None if it lost."""
        condition = "(attribute_not_exists(active_job) OR lease_expires_at < :now)"
        values = {
            ":job": {"S": job_id},
            ":zero": {"N": "0"},
            ":now": {"N": _number(now)},
            ":lease": {"N": _number(now + lease_seconds)},
        }
        if threshold is not None:
            condition += " AND pending >= :threshold"
            values[":threshold"] = {"N": str(threshold)}
        try:
            response = self.client.update_item(
                TableName=self.table_name,
                Key=self._model_key(model),
                UpdateExpression=CLAIM_UPDATE,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_OLD",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return None
        old = response.get("Attributes", {})
        return Claim(uploads=int(old.get("pending", {}).get("N", 0)), took_over=old.get("active_job", {}).get("S"))

    def release(self, model: str, job_id: str, restore_pending: int = 0) -> bool:
        """Ends `job_id`'s claim (only if it still holds it); `restore_pending` gives back
        the uploads of a job that never started."""
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._model_key(model),
                UpdateExpression=RELEASE_UPDATE,
                ConditionExpression="active_job = :job",
                ExpressionAttributeValues={":job": {"S": job_id}, ":restore": {"N": str(restore_pending)}},
            )
            return True
        except self.client.exceptions.ConditionalCheckFailedException:
            return False


def _number(value: float) -> str:
    return f"{value:.3f}"


def _state(model: str, item: dict) -> CounterState:
    def number(name: str) -> float | None:
        return float(item[name]["N"]) if name in item else None

    return CounterState(
        model=model,
        total=int(item.get("total", {}).get("N", 0)),
        pending=int(item.get("pending", {}).get("N", 0)),
        active_job=item.get("active_job", {}).get("S"),
        last_job=item.get("last_job", {}).get("S"),
        claimed_at=number("claimed_at"),
        lease_expires_at=number("lease_expires_at"),
        claimed_uploads=int(item.get("claimed_uploads", {}).get("N", 0)),
    )
