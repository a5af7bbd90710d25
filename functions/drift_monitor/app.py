"""Drift monitor (EventBridge schedule): for each production model, the predictions the predict
functions captured in the last DriftWindowMinutes against the training reference in its manifest
(PSI per feature, class-mix shift, OOD rate: med_classifier.domain.drift). Writes each report to the
monitoring bucket (drift/{model}/latest.json and a timestamped copy) and emits its figures as
CloudWatch metrics (EMF) with a model dimension; DriftAlarm watches ModelsDrifting. NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from med_classifier import services
from med_classifier.domain.drift import DriftReport, monitor_models
from med_classifier.settings import DriftMonitorSettings

logger = Logger()
metrics = Metrics()


@functools.cache
def settings() -> DriftMonitorSettings:
    return DriftMonitorSettings.from_environ()


@functools.cache
def stores():
    # Built on first use, not at import: boto3 and clients cost cold-start time.
    return services.model_store(settings()), services.monitoring_store(settings())


def emit(report: DriftReport) -> None:
    """One EMF document a model: its figures under the dimensions service and model."""
    metrics.add_dimension(name="model", value=report.model)
    metrics.add_metric(name="CapturedPredictions", unit=MetricUnit.Count, value=report.n_records)
    if report.max_feature_psi is not None:
        metrics.add_metric(name="MaxFeaturePSI", unit=MetricUnit.NoUnit, value=report.max_feature_psi)
    if report.class_mix is not None:
        metrics.add_metric(name="ClassMixShift", unit=MetricUnit.NoUnit, value=report.class_mix.psi)
    if report.ood_rate is not None:
        metrics.add_metric(name="OodRate", unit=MetricUnit.NoUnit, value=report.ood_rate)
    metrics.flush_metrics()  # and clears the model dimension for the next model


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context) -> dict:
    now = datetime.now(UTC)
    models, monitoring = stores()
    run = monitor_models(models, monitoring, timedelta(minutes=settings().drift_window_minutes), now)
    for report in run.reports:
        logger.info(
            "drift report",
            extra={
                "model": report.model,
                "status": report.status,
                "n_records": report.n_records,
                "reasons": report.reasons,
            },
        )
        emit(report)
    drifting = sorted(r.model for r in run.reports if r.status == "drift")
    # Without the model dimension: the alarm watches one metric, whatever models there are.
    metrics.add_metric(name="ModelsDrifting", unit=MetricUnit.Count, value=len(drifting))
    if run.failed:  # after the others' reports: the function's Errors metric counts the run
        raise RuntimeError(f"drift reports not written for {sorted(run.failed)}: {run.failed}")
    return {"generated_at": now.isoformat(), "statuses": {r.model: r.status for r in run.reports}, "drifting": drifting}
