"""Predict function: the web page, health, registry view, tabular predict, OpenAPI.

Thin adapter: translate API Gateway events to med_classifier calls and shape the
responses. NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import time
from html.parser import HTMLParser
from pathlib import Path as FilePath
from typing import Annotated
from urllib.parse import urlsplit

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.metrics import MetricUnit

from med_classifier import NOT_FOR_CLINICAL_USE
from med_classifier.api_errors import error_doc, register_error_handlers
from med_classifier.api_schemas import PredictRequest, PredictResponse
from med_classifier.errors import InvalidInput
from med_classifier.model_store import ModelStore
from med_classifier.registry import RegistryView
from med_classifier.retraining import Retraining
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
_retraining: Retraining | None = None


def _services() -> tuple[ModelCache, RegistryView]:
    # Built on first use, not at import: boto3 and clients cost cold-start time.
    global _store, _cache, _registry
    if _store is None:
        _store = ModelStore(os.environ["MODELS_BUCKET"])
        _cache = ModelCache(_store, refresh_seconds=float(os.environ.get("POINTER_REFRESH_SECONDS", "60")))
        _registry = RegistryView(_store)
    return _cache, _registry


ERRORS = {404: error_doc("Unknown model"), 422: error_doc("Invalid input (the message says which row and "
          "feature)"), 503: error_doc("Model not loadable")}


PAGE = FilePath(__file__).resolve().parent / "static" / "index.html"


class _InlineBlocks(HTMLParser):
    """The text of each inline <script> and <style> element, as the browser hashes it."""

    def __init__(self):
        super().__init__(convert_charrefs=False)
        self.blocks: list[tuple[str, str]] = []
        self._open: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style") and not dict(attrs).get("src"):
            self._open = tag
            self.blocks.append((tag, ""))

    def handle_data(self, data):
        if self._open:
            tag, text = self.blocks[-1]
            self.blocks[-1] = (tag, text + data)

    def handle_endtag(self, tag):
        if tag == self._open:
            self._open = None


def upload_origin() -> str:
    """Where the page's presigned POSTs go. Locally the endpoint override (moto);
    on AWS an S3 host under amazonaws.com, virtual-hosted or path style, global or
    regional as botocore picks, so the whole domain is allowed: the signed policy and
    the bucket, not this header, decide what may be written."""
    endpoint = urlsplit(os.environ.get("AWS_ENDPOINT_URL") or "")
    return f"{endpoint.scheme}://{endpoint.netloc}" if endpoint.scheme and endpoint.netloc else "https://*.amazonaws.com"


def content_security_policy(html: str, uploads: str) -> str:
    """Only this page's own inline <script> and <style> (by hash), this API, and the uploads endpoint."""
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    parser = _InlineBlocks()
    parser.feed(html)
    parser.close()
    for tag, body in parser.blocks:
        hashes[tag].append("'sha256-%s'" % base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode())
    return "; ".join([
        "default-src 'none'",
        "script-src " + (" ".join(hashes["script"]) or "'none'"),
        "style-src " + (" ".join(hashes["style"]) or "'none'"),
        "img-src 'self' blob: data:",  # previews of the chosen images; the empty favicon
        f"connect-src 'self' {uploads}",
        "base-uri 'none'",
        "form-action 'none'",  # every form is sent by script
        "frame-ancestors 'none'",
    ])


@functools.lru_cache(maxsize=1)
def _page(uploads: str) -> tuple[str, str]:
    html = PAGE.read_text(encoding="utf-8")
    return html, content_security_policy(html, uploads)


@app.get("/", include_in_schema=False)
def page():  # no return annotation: Response is not a schema type
    html, policy = _page(upload_origin())
    return Response(status_code=200, content_type="text/html; charset=utf-8", body=html, headers={
        "Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache"})


@app.get("/health", summary="Liveness, uptime and the models this container has loaded")
def health() -> dict:
    cache, _ = _services()
    return {"status": "ok", "uptime_s": round(time.time() - STARTED_AT, 1), "models": cache.status(),
            "notice": NOT_FOR_CLINICAL_USE}


@app.get("/models", summary="Every model with its production version, metrics and input schema")
def list_models() -> dict:
    _, registry = _services()
    return {"models": registry.list_models(), "notice": NOT_FOR_CLINICAL_USE}


@app.get("/models/<model>", summary="One model: versions, production pointer, metrics, input schema, "
         "upload counter and recent retraining jobs", responses={404: ERRORS[404]})
def get_model(model: Annotated[str, Path(description="Model id, e.g. breast-cancer")]) -> dict:
    global _retraining
    _, registry = _services()
    view = registry.describe(model)
    if view.get("input", {}).get("kind") == "image" and os.environ.get("UPLOAD_COUNTS_TABLE"):
        if _retraining is None:
            _retraining = Retraining.from_environment(launch=False)
        view["retraining"] = _retraining.status(model)
    return view


@app.post("/models/<model>/predict", summary="Classify one or many rows (tabular) or images (image models)",
          description="Tabular models: JSON rows. Image models (served by their own function): a raw image/jpeg "
                      'or image/png body, or JSON {"images": ["<base64>", ...]}. ' + NOT_FOR_CLINICAL_USE,
          responses={400: error_doc("Body is not JSON"), 413: error_doc("Too many rows or too large an image"),
                     415: error_doc("Media type not accepted"), **ERRORS})
def predict(
    model: Annotated[str, Path(description="Model id, e.g. breast-cancer")],
    request: Annotated[PredictRequest, Body(embed=False)],
) -> PredictResponse:
    cache, registry = _services()
    if request.images is not None:  # the manifest says which kind; no need to load the model here
        kind = registry.production_manifest(model).input.kind
        raise InvalidInput(f'Model {model!r} takes feature rows: send "instances".' if kind == "tabular" else
                           f"Image model {model!r} is not routed to the image function in this deployment "
                           "(template.yaml, ImagePredictFunction events).")
    if (request.instances is None) == (request.features is None):
        raise InvalidInput('Send exactly one of "instances" (preferred) or "features".')
    rows = request.instances if request.instances is not None else request.features
    if rows and not any(isinstance(item, (list, dict)) for item in rows):
        rows = [rows]  # legacy: one flat row
    result = predict_rows(cache, model, rows, max_rows=int(os.environ.get("MAX_PREDICT_ROWS", "1000")))
    metrics.add_dimension(name="model", value=model)
    metrics.add_metric(name="PredictedRows", unit=MetricUnit.Count, value=len(result.predictions))
    metrics.add_metric(name="InferenceMs", unit=MetricUnit.Milliseconds, value=result.inference_ms)
    return PredictResponse.from_result(result, NOT_FOR_CLINICAL_USE)


@app.get("/openapi.json", include_in_schema=False)
def openapi_json():  # no return annotation: Response is not a schema type
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON,
                    body=_with_image_bodies(json.loads(app.get_openapi_json_schema(**OPENAPI))))


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
