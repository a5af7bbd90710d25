"""PreTraffic hook (CodeDeploy): before a canary deployment moves any traffic to the new versions of
the predict functions, send every production model's golden examples to the version that serves it
and report Succeeded only when each answers as the model did when it was published
(med_classifier.domain.release_check). On Failed, CodeDeploy stops the deployment and the alias
stays on the old version. README, "Canary releases". NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import functools

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from med_classifier import services
from med_classifier.domain.release_check import ReleaseReport, check_release
from med_classifier.settings import PreTrafficHookSettings

logger = Logger()
metrics = Metrics()
COULD_NOT_RUN = "the release check could not run; the hook's log has the error"


@functools.cache
def settings() -> PreTrafficHookSettings:
    return PreTrafficHookSettings.from_environ()


def release_report() -> ReleaseReport:
    try:
        return check_release(services.model_store(settings()), services.golden_predictors(settings()))
    except Exception:  # an unreadable store or a denied call fails the release, never leaves it waiting
        logger.exception("release check could not run")
        return ReleaseReport(failures=[COULD_NOT_RUN])


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context) -> dict:
    deployment_id, execution_id = event.get("DeploymentId"), event.get("LifecycleEventHookExecutionId")
    if not deployment_id or not execution_id:
        raise ValueError(
            "Not a CodeDeploy lifecycle hook event: DeploymentId and LifecycleEventHookExecutionId are needed."
        )
    report = release_report()
    (logger.info if report.status == "Succeeded" else logger.error)("release check", extra=report.as_dict())
    metrics.add_metric(name="ReleaseCheckFailures", unit=MetricUnit.Count, value=len(report.failures))
    services.deployment_reporter(settings()).report(deployment_id, execution_id, report.status)
    return report.as_dict()
