"""Per-model upload counters (DynamoDB, key `pk`), counted exactly once per object: the
CounterStore adapter.

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

import time

from ..domain.uploads import CounterState, UploadedObject
from .aws_clients import ServiceAdapter

SEEN_TTL_DAYS = 30


class UploadCounter(ServiceAdapter):
    service = "dynamodb"

    def __init__(self, table_name: str, client=None, endpoint_url: str | None = None):
        super().__init__(client, endpoint_url)
        self.table_name = table_name

    def _model_key(self, model: str) -> dict:
        return {"pk": {"S": f"model#{model}"}}

    def count(self, upload: UploadedObject) -> bool:
        """Counts the object once. True if counted now, False if it was counted before."""
        expires = int(time.time()) + SEEN_TTL_DAYS * 86400
        try:
            self.client.transact_write_items(
                TransactItems=[
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
            )
            return True
        except self.client.exceptions.TransactionCanceledException as exc:
            codes = [reason.get("Code") for reason in exc.response.get("CancellationReasons", [])]
            if codes and codes[0] == "ConditionalCheckFailed":
                return False
            raise

    def state(self, model: str) -> CounterState:
        item = self.client.get_item(TableName=self.table_name, Key=self._model_key(model), ConsistentRead=True).get(
            "Item", {}
        )
        return CounterState(
            model=model,
            total=int(item.get("total", {}).get("N", 0)),
            pending=int(item.get("pending", {}).get("N", 0)),
            active_job=item.get("active_job", {}).get("S"),
            last_job=item.get("last_job", {}).get("S"),
        )

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
                TableName=self.table_name,
                Key=self._model_key(model),
                UpdateExpression="SET active_job = :job, last_job = :job, pending = :zero",
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_OLD",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return None
        return int(response.get("Attributes", {}).get("pending", {}).get("N", 0))

    def release(self, model: str, job_id: str, restore_pending: int = 0) -> bool:
        """Ends `job_id`'s claim (only if it still holds it); `restore_pending` gives back
        the uploads of a job that never started."""
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._model_key(model),
                UpdateExpression="REMOVE active_job ADD pending :restore",
                ConditionExpression="active_job = :job",
                ExpressionAttributeValues={":job": {"S": job_id}, ":restore": {"N": str(restore_pending)}},
            )
            return True
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
