"""Predict function: the web page, health, registry view, tabular predict, OpenAPI.

Thin adapter: translate API Gateway events to med_classifier calls and shape the
responses. NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path as FilePath
from typing import Annotated

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.metrics import MetricUnit

from med_classifier import NOT_FOR_CLINICAL_USE, services
from med_classifier.api.errors import error_doc, register_error_handlers
from med_classifier.api.page import PAGE_HEADERS, content_security_policy, upload_origin
from med_classifier.api.schemas import PredictRequest, PredictResponse
from med_classifier.domain.errors import InvalidInput
from med_classifier.domain.registry import RegistryView
from med_classifier.domain.retraining import Retraining
from med_classifier.domain.serving import ModelCache, predict_rows
from med_classifier.settings import PredictSettings

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


@functools.cache
def settings() -> PredictSettings:
    return PredictSettings.from_environ()


@functools.cache
def _services() -> tuple[ModelCache, RegistryView, Retraining | None]:
    # Built on first use, not at import: boto3 and clients cost cold-start time.
    store = services.model_store(settings())
    return (
        services.model_cache(settings(), store),
        services.registry(settings(), store),
        services.retraining_status(settings()),
    )


ERRORS = {
    404: error_doc("Unknown model"),
    422: error_doc("Invalid input (the message says which row and feature)"),
    503: error_doc("Model not loadable"),
}


PAGE = FilePath(__file__).resolve().parent / "static" / "index.html"


@functools.cache
def _page() -> tuple[str, str]:
    html = PAGE.read_text(encoding="utf-8")
    return html, content_security_policy(html, upload_origin(settings().aws_endpoint_url))


@app.get("/", include_in_schema=False)
def page():  # no return annotation: Response is not a schema type
    html, policy = _page()
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=html,
        headers={"Content-Security-Policy": policy, **PAGE_HEADERS},
    )


@app.get("/health", summary="Liveness, uptime and the models this container has loaded")
def health() -> dict:
    cache = _services()[0]
    return {
        "status": "ok",
        "uptime_s": round(time.time() - STARTED_AT, 1),
        "models": cache.status(),
        "notice": NOT_FOR_CLINICAL_USE,
    }


@app.get("/models", summary="Every model with its production version, metrics and input schema")
def list_models() -> dict:
    registry = _services()[1]
    return {"models": registry.list_models(), "notice": NOT_FOR_CLINICAL_USE}


@app.get(
    "/models/<model>",
    summary="One model: versions, production pointer, metrics, input schema, upload counter and recent retraining jobs",
    responses={404: ERRORS[404]},
)
def get_model(model: Annotated[str, Path(description="Model id, e.g. breast-cancer")]) -> dict:
    _, registry, retraining = _services()
    view = registry.describe(model)
    if view.get("input", {}).get("kind") == "image" and retraining is not None:
        view["retraining"] = retraining.status(model)
    return view


@app.post(
    "/models/<model>/predict",
    summary="Classify one or many rows (tabular) or images (image models)",
    description="Tabular models: JSON rows. Image models (served by their own function): a raw image/jpeg "
    'or image/png body, or JSON {"images": ["<base64>", ...]}. ' + NOT_FOR_CLINICAL_USE,
    responses={
        400: error_doc("Body is not JSON"),
        413: error_doc("Too many rows or too large an image"),
        415: error_doc("Media type not accepted"),
        **ERRORS,
    },
)
def predict(
    model: Annotated[str, Path(description="Model id, e.g. breast-cancer")],
    request: Annotated[PredictRequest, Body(embed=False)],
) -> PredictResponse:
    cache, registry, _ = _services()
    if request.images is not None:  # the manifest says which kind; no need to load the model here
        kind = registry.production_manifest(model).input.kind
        raise InvalidInput(
            f'Model {model!r} takes feature rows: send "instances".'
            if kind == "tabular"
            else f"Image model {model!r} is not routed to the image function in this deployment "
            "(template.yaml, ImagePredictFunction events)."
        )
    if (request.instances is None) == (request.features is None):
        raise InvalidInput('Send exactly one of "instances" (preferred) or "features".')
    rows = request.instances if request.instances is not None else request.features
    if rows and not any(isinstance(item, (list, dict)) for item in rows):
        rows = [rows]  # legacy: one flat row
    result = predict_rows(cache, model, rows, max_rows=settings().max_predict_rows)
    metrics.add_dimension(name="model", value=model)
    metrics.add_metric(name="PredictedRows", unit=MetricUnit.Count, value=len(result.predictions))
    metrics.add_metric(name="InferenceMs", unit=MetricUnit.Milliseconds, value=result.inference_ms)
    return PredictResponse.from_result(result, NOT_FOR_CLINICAL_USE)


@app.get("/openapi.json", include_in_schema=False)
def openapi_json():  # no return annotation: Response is not a schema type
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=_with_image_bodies(json.loads(app.get_openapi_json_schema(**OPENAPI))),
    )


def _with_image_bodies(spec: dict) -> dict:
    """The image function shares the predict route; its raw-image bodies are not a
    pydantic model, so add them to the generated spec here."""
    body = spec["paths"]["/models/{model}/predict"]["post"]["requestBody"]["content"]
    for media_type in ("image/jpeg", "image/png"):
        body[media_type] = {"schema": {"type": "string", "format": "binary"}}
    return spec


register_error_handlers(app, logger)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context) -> dict:
    return app.resolve(event, context)
