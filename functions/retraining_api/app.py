"""Retraining API: labelled uploads (presigned POST), manual retraining, job status.

Thin adapter over med_classifier.uploads and med_classifier.retraining. Every route is behind
API Gateway's Cognito authorizer; each checks the caller's group again (med_classifier.api.caller):
uploads need clinicians or ml-admins, retraining and its jobs ml-admins. An upload's policy fixes its
uploader and a manual job records who asked for it. NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import functools
from typing import Annotated

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.metrics import MetricUnit

from med_classifier import NOT_FOR_CLINICAL_USE, services, snapstart
from med_classifier.adapters.s3_uploads import S3UploadSigner
from med_classifier.api.caller import RETRAINERS, UPLOADERS, caller_of, require_group
from med_classifier.api.errors import (
    INVALID_JSON,
    NOT_SIGNED_IN,
    SCHEMA_MISMATCH,
    UNSUPPORTED_BODY,
    error_doc,
    forbidden_doc,
    register_error_handlers,
)
from med_classifier.api.openapi import SIGN_IN_REQUIRED
from med_classifier.api.request_guard import BodyPolicy, json_policy, refusal
from med_classifier.api.schemas import (
    JobRecord,
    RetrainRequest,
    UploadRequest,
    UploadTicketResponse,
    upload_ticket_response,
)
from med_classifier.domain.errors import InvalidInput, UnknownModel
from med_classifier.domain.registry import RegistryView
from med_classifier.domain.retraining import Retraining
from med_classifier.domain.uploads import presigned_upload
from med_classifier.settings import RetrainingApiSettings

logger = Logger()
metrics = Metrics()
app = APIGatewayRestResolver(enable_validation=True)
register_error_handlers(app, logger)


@functools.cache
def settings() -> RetrainingApiSettings:
    return RetrainingApiSettings.from_environ()


@functools.cache
def body_policy() -> BodyPolicy:
    return json_policy(settings().max_request_bytes)


@functools.cache
def _services() -> tuple[RegistryView, Retraining, S3UploadSigner]:
    # Built on first use, not at import: boto3 and clients cost cold-start time.
    return services.registry(settings()), services.retraining(settings()), services.upload_signer(settings())


def _image_model(model: str):
    manifest = _services()[0].production_manifest(model)
    if manifest.input.kind != "image":
        raise InvalidInput(f"Model {model!r} takes feature rows; only image models are retrained from uploads.")
    return manifest


ModelId = Annotated[str, Path(description="Image model id, e.g. skin-lesion")]
UNKNOWN_MODEL = error_doc("Unknown model")
BODY_TOO_LARGE = error_doc("A body over MaxRetrainingRequestBytes")


@app.post(
    "/models/<model>/uploads",
    summary="A presigned POST for one labelled image",
    description="POST the returned form straight to S3 (`fields`, then `file`). S3 refuses other content "
    "types, sizes or keys. " + NOT_FOR_CLINICAL_USE,
    tags=["Retraining"],
    status_code=201,
    security=SIGN_IN_REQUIRED,
    responses={
        201: {"description": "Upload form"},
        400: INVALID_JSON,
        401: NOT_SIGNED_IN,
        403: forbidden_doc("clinicians or ml-admins"),
        404: UNKNOWN_MODEL,
        413: BODY_TOO_LARGE,
        415: error_doc("content_type is not image/jpeg or image/png, or the body is not application/json"),
        422: error_doc("Unknown label, a tabular model, or " + SCHEMA_MISMATCH),
    },
)
def create_upload(model: ModelId, request: Annotated[UploadRequest, Body(embed=False)]) -> UploadTicketResponse:
    caller = require_group(caller_of(app.current_event.raw_event), UPLOADERS, "upload training data")
    registry, _, signer = _services()
    try:
        manifest = registry.production_manifest(model)
    except UnknownModel:
        manifest = None
    limits = settings().upload_limits
    ticket = presigned_upload(signer, manifest, model, request.label, request.content_type, limits, uploader=caller.sub)
    logger.info("upload ticket issued", extra={"model": model, "key": ticket.key, "uploader": caller.sub})
    metrics.add_dimension(name="model", value=model)
    metrics.add_metric(name="UploadTicketsIssued", unit=MetricUnit.Count, value=1)
    return upload_ticket_response(ticket, NOT_FOR_CLINICAL_USE)


@app.post(
    "/models/<model>/retrain",
    summary="Start a retraining job now (ml-admins)",
    description="Optional `reason`, and a `gate` stricter than the model's own for this job only. "
    + NOT_FOR_CLINICAL_USE,
    tags=["Retraining"],
    status_code=202,
    security=SIGN_IN_REQUIRED,
    responses={
        202: {"description": "Job started (state Pending)"},
        400: INVALID_JSON,
        401: NOT_SIGNED_IN,
        403: forbidden_doc("ml-admins"),
        404: UNKNOWN_MODEL,
        409: error_doc("A job for this model is already running (details name it)"),
        413: BODY_TOO_LARGE,
        503: error_doc("The training service did not start the job (details give its job_id and failure_code)"),
        415: UNSUPPORTED_BODY,
        422: error_doc("A tabular model, or " + SCHEMA_MISMATCH),
    },
)
def start_retrain(model: ModelId, request: Annotated[RetrainRequest | None, Body(embed=False)] = None) -> JobRecord:
    caller = require_group(caller_of(app.current_event.raw_event), RETRAINERS, "start retraining")
    _image_model(model)
    request = request or RetrainRequest()
    job = _services()[1].start_manual(model, request.reason, request.hyperparameters(), requested_by=caller.sub)
    logger.info("retraining started", extra={"model": model, "job_id": job.job_id, "requested_by": caller.sub})
    metrics.add_dimension(name="model", value=model)
    metrics.add_metric(name="RetrainJobsStarted", unit=MetricUnit.Count, value=1)
    return job


@app.get(
    "/models/<model>/retrain/<job_id>",
    summary="A retraining job's state and outcome (ml-admins)",
    tags=["Retraining"],
    security=SIGN_IN_REQUIRED,
    responses={
        200: {"description": "The job"},
        401: NOT_SIGNED_IN,
        403: forbidden_doc("ml-admins"),
        404: error_doc("Unknown model or job"),
    },
)
def get_retrain_job(
    model: ModelId, job_id: Annotated[str, Path(description="Job id from POST .../retrain")]
) -> JobRecord:
    require_group(caller_of(app.current_event.raw_event), RETRAINERS, "see retraining jobs")
    job = _services()[1].jobs.get(job_id)
    if job is None or job.model != model:
        raise UnknownModel(f"No retraining job {job_id!r} for model {model!r}.")
    return job


def prepared() -> None:
    """What the first request builds, built into the SnapStart snapshot (med_classifier.snapstart)."""
    body_policy(), _services()


snapstart.register(logger, prepared)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context) -> dict:
    # Media type, size and JSON shape are checked on the raw event, before Powertools parses the body.
    return refusal(event, body_policy, logger) or app.resolve(event, context)
