"""UploadCounter: S3 upload notifications from SQS → per-model counters → retraining jobs.

Powertools' batch utility reports failed messages only (ReportBatchItemFailures), so
one bad message is retried alone and reaches the dead-letter queue after the queue's
maxReceiveCount. Each object is checked before it counts (its uploader, and a JPEG or PNG header
within the limits: med_classifier.domain.upload_checks); a refused one is moved to quarantine/
and not counted. Counting is idempotent per object (med_classifier.adapters.upload_counter);
the single job per threshold is decided by a conditional write. NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import functools

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from med_classifier import services
from med_classifier.domain.retraining import Retraining
from med_classifier.domain.upload_checks import Admission, UploadGate
from med_classifier.domain.uploads import uploads_in_notification
from med_classifier.settings import UploadCounterSettings

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)


@functools.cache
def settings() -> UploadCounterSettings:
    return UploadCounterSettings.from_environ()


@functools.cache
def _service() -> Retraining:
    # Built on first use, not at import: boto3 and clients cost cold-start time.
    return services.retraining(settings())


@functools.cache
def _gate() -> UploadGate:
    return services.upload_gate(settings())


def record_handler(record: SQSRecord) -> None:
    # A body that is not an S3 notification raises: retried, then dead-lettered, never silently dropped.
    # Records of other buckets are ignored and logged: the queue's policy admits the whole account.
    # An S3 error while checking or moving an object raises too: retried, so a good object is never
    # quarantined for it.
    for upload in uploads_in_notification(record.body, bucket=settings().uploads_bucket):
        admission = _gate().admit(upload)
        if not admission.accepted:
            _not_counted(admission)
            continue
        outcome = _service().record_upload(upload)
        logger.info(
            "upload",
            extra={
                "key": upload.key,
                "model": upload.model,
                "counted": outcome.counted,
                "started_job": outcome.started.job_id if outcome.started else None,
            },
        )
        metrics.add_metric(
            name="UploadsCounted" if outcome.counted else "UploadsRedelivered", unit=MetricUnit.Count, value=1
        )
        if outcome.started:
            metrics.add_metric(name="RetrainJobsStarted", unit=MetricUnit.Count, value=1)


def _not_counted(admission: Admission) -> None:
    upload = admission.upload
    if admission.reason is None:  # moved by an earlier delivery of this notification, or deleted
        logger.info("upload gone", extra={"key": upload.key, "model": upload.model})
        return
    logger.warning("upload quarantined", extra={"key": upload.key, "model": upload.model, "reason": admission.reason})
    metrics.add_metric(name="QuarantinedUploads", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context) -> dict:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
