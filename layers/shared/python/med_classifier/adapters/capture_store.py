"""The monitoring bucket: serving's capture batches and the drift monitor's reports (README, "Drift
monitoring").

Layout:
    captures/{model}/{yyyy-mm-dd}/{HHMMSS}-{uuid}.jsonl   one batch of capture records (JSON Lines)
    drift/{model}/latest.json                           the latest drift report
    drift/{model}/{yyyymmddTHHMMSSZ}.json               every report, by generation time
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from .aws_clients import BucketAdapter
from .model_store import _not_found

CAPTURES_PREFIX = "captures/"
DRIFT_PREFIX = "drift/"


def capture_key(model_id: str, written_at: datetime) -> str:
    at = written_at.astimezone(UTC)
    return f"{CAPTURES_PREFIX}{model_id}/{at:%Y-%m-%d}/{at:%H%M%S}-{uuid.uuid4().hex}.jsonl"


def latest_report_key(model_id: str) -> str:
    return f"{DRIFT_PREFIX}{model_id}/latest.json"


class S3MonitoringStore(BucketAdapter):
    """The CaptureWriter (the predict functions) and MonitoringStore (the drift monitor, the drift route)."""

    @property
    def client_options(self) -> dict:
        # A capture write follows a prediction in the same request: it may not hold the answer up for
        # long, and a failed one is dropped (domain/capture.py), so no retries.
        from botocore.config import Config  # loaded with boto3 by now

        return {"config": Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})}

    def write_captures(self, model_id: str, records: list[dict], written_at: datetime) -> str:
        key = capture_key(model_id, written_at)
        body = "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in records)
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body.encode(), ContentType="application/x-ndjson")
        return key

    def read_captures(self, model_id: str, since: datetime, until: datetime) -> list[dict]:
        """The records captured in [since, until]. An object holds records captured before it was
        written, so objects written before `since` are skipped unread."""
        since, until = since.astimezone(UTC), until.astimezone(UTC)
        first_key = f"{CAPTURES_PREFIX}{model_id}/{since:%Y-%m-%d}/{since:%H%M%S}"
        records: list[dict] = []
        day = since.date()
        paginator = self.client.get_paginator("list_objects_v2")
        while day <= until.date():
            prefix = f"{CAPTURES_PREFIX}{model_id}/{day:%Y-%m-%d}/"
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for entry in page.get("Contents", []):
                    if entry["Key"] < first_key:
                        continue
                    body = self.client.get_object(Bucket=self.bucket, Key=entry["Key"])["Body"].read()
                    for line in body.decode().splitlines():
                        record = json.loads(line)
                        if since <= datetime.fromisoformat(record["captured_at"]) <= until:
                            records.append(record)
            day += timedelta(days=1)
        return records

    def write_report(self, model_id: str, report: dict, generated_at: datetime) -> list[str]:
        body = json.dumps(report, indent=1).encode()
        at = generated_at.astimezone(UTC)
        keys = [f"{DRIFT_PREFIX}{model_id}/{at:%Y%m%dT%H%M%SZ}.json", latest_report_key(model_id)]
        for key in keys:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")
        return keys

    def latest_report(self, model_id: str) -> dict | None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=latest_report_key(model_id))["Body"].read()
        except Exception as exc:
            if _not_found(exc):
                return None
            raise
        return json.loads(body)
