"""Predict function: health, registry view, tabular predict, OpenAPI.

Thin adapter: translate API Gateway events to med_classifier calls and shape the
responses. NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import os
import time
from typing import Annotated

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.metrics import MetricUnit
from api_models import ErrorResponse, PredictRequest, PredictResponse, PredictionOut

from med_classifier import NOT_FOR_CLINICAL_USE
from med_classifier.errors import ClassifierError, InvalidInput
from med_classifier.model_store import ModelStore
from med_classifier.registry import RegistryView
from med_classifier.serving import ModelCache, predict_rows

logger = Logger()
metrics = Metrics()
STARTED_AT = time.time()
OPENAPI = {
    "title": "Medical classifier inference API",
    "version": "1.0.0",
    "description": "ONNX classifiers served by AWS Lambda. " + NOT_FOR_CLINICAL_USE,
}

app = APIGatewayRestResolver(enable_validation=True)
app.enable_swagger(path="/docs", **OPENAPI)

_store: ModelStore | None = None
_cache: ModelCache | None = None
_registry: RegistryView | None = None


def _services() -> tuple[ModelCache, RegistryView]:
    # Built on first use, not at import: boto3 and clients cost cold-start time.
    global _store, _cache, _registry
    if _store is None:
        _store = ModelStore(os.environ["MODELS_BUCKET"])
        _cache = ModelCache(_store, refresh_seconds=float(os.environ.get("POINTER_REFRESH_SECONDS", "60")))
        _registry = RegistryView(_store)
    return _cache, _registry


def _error(status: int, code: str, message: str, details: list | None = None) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON,
                    body={"error": {"code": code, "message": message, "details": details or []}})


def _error_doc(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"model": ErrorResponse}}}


ERRORS = {404: _error_doc("Unknown model"), 422: _error_doc("Invalid input (the message says which row and "
          "feature)"), 503: _error_doc("Model not loadable")}


@app.get("/health", summary="Liveness, uptime and the models this container has loaded")
def health() -> dict:
    cache, _ = _services()
    return {"status": "ok", "uptime_s": round(time.time() - STARTED_AT, 1), "models": cache.status(),
            "notice": NOT_FOR_CLINICAL_USE}


@app.get("/models", summary="Every model with its production version, metrics and input schema")
def list_models() -> dict:
    _, registry = _services()
    return {"models": registry.list_models(), "notice": NOT_FOR_CLINICAL_USE}


@app.get("/models/<model>", summary="One model: versions, production pointer, metrics, input schema",
         responses={404: ERRORS[404]})
def get_model(model: Annotated[str, Path(description="Model id, e.g. breast-cancer")]) -> dict:
    _, registry = _services()
    return registry.describe(model)


@app.post("/models/<model>/predict", summary="Classify one or many rows",
          responses={400: _error_doc("Body is not JSON"), 413: _error_doc("Too many rows"), **ERRORS})
def predict(
    model: Annotated[str, Path(description="Model id, e.g. breast-cancer")],
    request: Annotated[PredictRequest, Body(embed=False)],
) -> PredictResponse:
    cache, _ = _services()
    if (request.instances is None) == (request.features is None):
        raise InvalidInput('Send exactly one of "instances" (preferred) or "features".')
    rows = request.instances if request.instances is not None else request.features
    if rows and not any(isinstance(item, (list, dict)) for item in rows):
        rows = [rows]  # legacy: one flat row
    result = predict_rows(cache, model, rows, max_rows=int(os.environ.get("MAX_PREDICT_ROWS", "1000")))
    metrics.add_dimension(name="model", value=model)
    metrics.add_metric(name="PredictedRows", unit=MetricUnit.Count, value=len(result.predictions))
    metrics.add_metric(name="InferenceMs", unit=MetricUnit.Milliseconds, value=result.inference_ms)
    return PredictResponse(
        model=result.model_id, version=result.version, inference_ms=round(result.inference_ms, 3),
        predictions=[PredictionOut(**vars(p)) for p in result.predictions], notice=NOT_FOR_CLINICAL_USE,
    )


@app.get("/openapi.json", include_in_schema=False)
def openapi_json():  # no return annotation: Response is not a schema type
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON,
                    body=app.get_openapi_json_schema(**OPENAPI))


@app.exception_handler(ClassifierError)
def handle_domain_error(exc: ClassifierError) -> Response:
    logger.info("request refused", extra={"code": exc.code, "reason": exc.message})
    return _error(exc.status_code, exc.code, exc.message, exc.details)


@app.exception_handler(RequestValidationError)
def handle_validation_error(exc: RequestValidationError) -> Response:
    problems = exc.errors()
    if any(p.get("type") == "json_invalid" for p in problems):
        return _error(400, "invalid_json", "The request body is not valid JSON. Send "
                      '{"instances": [[...numbers...]]} with Content-Type: application/json.')
    details = [f"{'.'.join(str(part) for part in p.get('loc', ()))}: {p.get('msg')}" for p in problems]
    return _error(422, "invalid_request", "The request does not match the schema: " + details[0], details)


@app.not_found
def handle_not_found(exc: NotFoundError) -> Response:
    return _error(404, "not_found", f"No route {app.current_event.http_method} {app.current_event.path}. "
                  "See /docs for the API.")


@app.exception_handler(Exception)
def handle_unexpected(exc: Exception) -> Response:
    logger.exception("unhandled error")
    return _error(500, "internal_error", "Internal error; it has been logged. Request id: "
                  f"{app.lambda_context.aws_request_id if app.lambda_context else 'n/a'}")


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context) -> dict:
    return app.resolve(event, context)
