"""Reconciler (EventBridge schedule): frees models whose retraining claim outlived its job.

A claim ends when the job's state-change event arrives (JobStateFunction). When that event is
lost, or the starter died between claim and launch, the reconciler notices on its next run:
it asks SageMaker/Batch for each active job's state, records the end, gives back the uploads
of a job that never launched, and starts the next job if one is due. NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import functools

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from med_classifier import services
from med_classifier.domain.retraining import Retraining
from med_classifier.settings import ReconcilerSettings

logger = Logger()
metrics = Metrics()


@functools.cache
def _service() -> Retraining:
    # Built on first use, not at import: boto3 and clients cost cold-start time.
    return services.retraining(ReconcilerSettings.from_environ())


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context) -> dict:
    results = _service().reconcile()
    for result in results:
        logger.info("active claim", extra={"model": result.model, "job_id": result.job_id, "action": result.action})
    freed = sum(result.action in ("ended", "released") for result in results)
    metrics.add_metric(name="ClaimsFreedByReconciler", unit=MetricUnit.Count, value=freed)
    return {"active": len(results), "freed": freed, "actions": {r.job_id: r.action for r in results}}
