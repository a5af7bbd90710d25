"""Predict function: the web page, health, the registry views, tabular predict and the API's OpenAPI
document, for API Gateway (REST) events.

The handler checks the raw event (request guard), answers a well-formed predict itself (the fast
path: med_classifier.api.fast_path), and passes everything else to the Powertools resolver in
routes.py, imported on the first such request: a container that only predicts never loads it.
Thin adapter: translate events to med_classifier calls and shape the responses. NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import functools
import sys
import time
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from med_classifier import NOT_FOR_CLINICAL_USE, services, snapstart
from med_classifier.api import fast_path
from med_classifier.api.request_guard import BodyPolicy, json_policy, refusal
from med_classifier.api.response_values import predict_fields
from med_classifier.api.routes_loader import load_routes
from med_classifier.domain.serving import ModelCache, PredictionResult, predict_rows
from med_classifier.settings import PredictSettings

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver

    from med_classifier.adapters.capture_store import S3MonitoringStore
    from med_classifier.adapters.model_store import ModelStore
    from med_classifier.domain.capture import CaptureBuffer
    from med_classifier.domain.registry import RegistryView
    from med_classifier.domain.retraining import Retraining

logger = Logger()
metrics = Metrics()
STARTED_AT = time.time()


@functools.cache
def settings() -> PredictSettings:
    return PredictSettings.from_environ()


@functools.cache
def body_policy() -> BodyPolicy:
    return json_policy(settings().max_request_bytes)


# Built on first use, not at import: boto3 and clients cost cold-start time.
@functools.cache
def model_store() -> ModelStore:
    return services.model_store(settings())


@functools.cache
def model_cache() -> ModelCache:
    return services.model_cache(settings(), model_store())


@functools.cache
def views() -> tuple[RegistryView, Retraining | None]:
    """The registry and the retraining loop's read-only view (the routes' GET /models...)."""
    return services.registry(settings(), model_store()), services.retraining_status(settings())


def predicted(model: str, rows: list, *, numbers_only: bool = False, explain: bool = False) -> PredictionResult:
    """The route's and the fast path's prediction, with its metrics."""
    limit = settings().max_predict_rows
    result = predict_rows(model_cache(), model, rows, max_rows=limit, numbers_only=numbers_only, explain=explain)
    metrics.add_dimension(name="model", value=model)
    metrics.add_metric(name="PredictedRows", unit=MetricUnit.Count, value=len(result.predictions))
    metrics.add_metric(name="InferenceMs", unit=MetricUnit.Milliseconds, value=result.inference_ms)
    if (buffer := capture_buffer()) is not None:
        buffer.add(model, result)  # drift capture: never raises (domain/capture.py)
    return result


@functools.cache
def monitoring() -> S3MonitoringStore | None:
    """The monitoring bucket (README, "Drift monitoring"): GET /models/{model}/drift reads its reports."""
    return services.monitoring_store(settings())


@functools.cache
def capture_buffer() -> CaptureBuffer | None:
    """Drift capture: None when the function has no monitoring bucket."""
    return services.capture_buffer(settings(), monitoring())


def fast_answer(event: dict) -> dict | None:
    """A well-formed {"instances": [...]} answered without the resolver (med_classifier.api.fast_path)."""
    model = fast_path.predict_model(event)
    rows = fast_path.instances(event) if model and not fast_path.asks_explanation(event) else None
    if rows is None:
        return None
    plain = fast_path.numbers_only(event)
    return fast_path.answer(lambda: predict_fields(predicted(model, rows, numbers_only=plain), NOT_FOR_CLINICAL_USE))


@functools.cache
def resolver() -> APIGatewayRestResolver:
    """The routes (routes.py), imported on the first request the fast path does not answer."""
    return load_routes(sys.modules[__name__]).app


def prepared() -> None:
    """What the first requests build, built into the SnapStart snapshot (med_classifier.snapstart)."""
    body_policy(), views(), resolver()


def restored() -> None:
    global STARTED_AT
    STARTED_AT = time.time()  # /health's uptime counts from the restore, not from the snapshot


snapstart.register(logger, prepared, model_cache, "tabular", restored)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context) -> dict:
    # Media type, size, encoding and JSON shape are checked on the raw event before anything parses
    # the body; the nesting only before Powertools does (the fast path reads a body 3 levels deep).
    return (
        refusal(event, body_policy, logger, nesting=False)
        or fast_answer(event)
        or refusal(event, body_policy, logger)
        or resolver().resolve(event, context)
    )
