"""JobState: SageMaker training-job and Batch job state changes (EventBridge) → jobs table.

At a terminal state the model's claim ends, and the next job starts if enough uploads
arrived while this one ran. Events for jobs this product did not start are ignored.
NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import functools

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source

from med_classifier import services
from med_classifier.domain.jobs import FAILED, STOPPED
from med_classifier.domain.retraining import Retraining, state_change_from_event
from med_classifier.settings import JobStateSettings

logger = Logger()
metrics = Metrics()


@functools.cache
def _service() -> Retraining:
    # Built on first use, not at import: boto3 and clients cost cold-start time.
    return services.retraining(JobStateSettings.from_environ())


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context) -> dict:
    change = state_change_from_event(event.source, event.detail)
    if change is None:
        logger.info("status not tracked", extra={"source": event.source, "detail_type": event.detail_type})
        return {"recorded": False}
    record = _service().on_state_change(change)
    logger.info(
        "job state",
        extra={
            "job_id": change.job_id,
            "state": change.state,
            "service_status": change.service_status,
            "known": record is not None,
        },
    )
    if record is not None and record.state in (FAILED, STOPPED):  # template.yaml's RetrainJobsFailedAlarm
        metrics.add_metric(name="RetrainJobsFailed", unit=MetricUnit.Count, value=1)
    return {"recorded": record is not None, "job_id": change.job_id, "state": record.state if record else None}
