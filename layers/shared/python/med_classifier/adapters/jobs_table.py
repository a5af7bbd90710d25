"""The jobs table (DynamoDB, key `job_id`, index `by-model`): the JobStore adapter.

States only move forward and a terminal state is final (conditional updates), so late
or repeated events never undo what is recorded.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from ..domain.jobs import COMPLETED, IN_PROGRESS, PENDING, STATES, TERMINAL_STATES, JobRecord, utc_now
from .aws_clients import ServiceAdapter

MODEL_INDEX = "by-model"
_JSON_FIELDS = ("reasons", "metrics", "deltas")


def _attribute(name: str, value) -> dict:
    """A JobRecord field as a DynamoDB attribute value."""
    if name in _JSON_FIELDS:
        return {"S": json.dumps(value)}
    return {"N": str(value)} if isinstance(value, int) else {"S": str(value)}


def _to_item(record: JobRecord) -> dict:
    return {name: _attribute(name, value) for name, value in asdict(record).items() if value is not None}


def _from_item(item: dict) -> JobRecord:
    values = {}
    for name, typed in item.items():
        if name not in JobRecord.__dataclass_fields__:
            continue
        ((kind, raw),) = typed.items()
        values[name] = json.loads(raw) if name in _JSON_FIELDS else int(raw) if kind == "N" else raw
    return JobRecord(**values)


class JobsTable(ServiceAdapter):
    service = "dynamodb"

    def __init__(self, table_name: str, client=None, endpoint_url: str | None = None):
        super().__init__(client, endpoint_url)
        self.table_name = table_name

    def create(self, record: JobRecord) -> None:
        self.client.put_item(
            TableName=self.table_name, Item=_to_item(record), ConditionExpression="attribute_not_exists(job_id)"
        )

    def get(self, job_id: str) -> JobRecord | None:
        item = self.client.get_item(TableName=self.table_name, Key={"job_id": {"S": job_id}}, ConsistentRead=True).get(
            "Item"
        )
        return _from_item(item) if item else None

    def recent(self, model_id: str, limit: int = 5) -> list[JobRecord]:
        """The model's latest jobs, newest first."""
        response = self.client.query(
            TableName=self.table_name,
            IndexName=MODEL_INDEX,
            KeyConditionExpression="model = :model",
            ExpressionAttributeValues={":model": {"S": model_id}},
            ScanIndexForward=False,
            Limit=limit,
        )
        return [_from_item(item) for item in response.get("Items", [])]

    def set_state(
        self,
        job_id: str,
        state: str,
        *,
        service_status: str | None = None,
        failure_code: str | None = None,
        failure_reason: str | None = None,
        backend_job: str | None = None,
        at: str | None = None,
    ) -> bool:
        """Moves a job forward to `state`. Returns False (and changes nothing) if the job
        is unknown, already terminal, or already past `state`."""
        if state not in STATES:
            raise ValueError(f"unknown job state {state!r}")
        at = at or utc_now()
        sets = {
            "state": state,
            "updated_at": at,
            "service_status": service_status,
            "failure_code": failure_code,
            "failure_reason": failure_reason,
            "backend_job": backend_job,
        }
        if state == IN_PROGRESS:
            sets["started_at"] = at
        if state in TERMINAL_STATES:
            sets["ended_at"] = at
        allowed_from = {PENDING: (PENDING,), IN_PROGRESS: (PENDING, IN_PROGRESS)}.get(state, (PENDING, IN_PROGRESS))
        if self._update(job_id, sets, allowed_from, keep_first=("started_at",) if state == IN_PROGRESS else ()):
            return True
        if state in TERMINAL_STATES and service_status:
            # The job recorded its own end first: keep that, but note what the service says.
            self._update(job_id, {"service_status": service_status}, (state,))
        return False

    def set_backend_job(self, job_id: str, backend_job: str) -> bool:
        """The service's id for the job, known once the launch call returns (whatever
        state the job has reached by then)."""
        return self._update(job_id, {"backend_job": backend_job}, STATES)

    def record_outcome(
        self,
        job_id: str,
        *,
        outcome: str,
        version: str | None,
        metrics: dict[str, float],
        reasons: list[str],
        production_version: str | None,
        deltas: dict[str, float] | None = None,
        fine_tuned_from: str | None = None,
    ) -> bool:
        """What the job concluded; the job calls it once, then its process exits and the
        service reports Completed. Also marks the job Completed at once, so readers need
        not wait for the service's event."""
        at = utc_now()
        sets = {
            "outcome": outcome,
            "version": version,
            "metrics": metrics,
            "reasons": reasons,
            "production_version": production_version,
            "deltas": deltas,
            "fine_tuned_from": fine_tuned_from,
            "state": COMPLETED,
            "ended_at": at,
            "updated_at": at,
        }
        return self._update(job_id, sets, (PENDING, IN_PROGRESS))

    def _update(self, job_id: str, sets: dict, allowed_from: tuple[str, ...], keep_first: tuple[str, ...] = ()) -> bool:
        names, values, clauses = {"#state": "state"}, {}, []
        for index, (name, value) in enumerate((k, v) for k, v in sets.items() if v is not None):
            names[f"#a{index}"] = name
            values[f":a{index}"] = _attribute(name, value)
            clauses.append(
                f"#a{index} = if_not_exists(#a{index}, :a{index})" if name in keep_first else f"#a{index} = :a{index}"
            )
        allowed = [f":from{i}" for i in range(len(allowed_from))]
        values.update({f":from{i}": {"S": state} for i, state in enumerate(allowed_from)})
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={"job_id": {"S": job_id}},
                UpdateExpression="SET " + ", ".join(clauses),
                ConditionExpression=f"attribute_exists(job_id) AND #state IN ({', '.join(allowed)})",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
            return True
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
