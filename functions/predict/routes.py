"""The predict function's routes: the web page, health, the registry views, tabular predict, and the
API's OpenAPI document (openapi.json, generated for every function by `python -m scripts.openapi`).

Imported by app.resolver() on the first request the fast path does not answer (every route but a
well-formed predict, and every refused one), with the handler module as `handler`
(med_classifier.api.routes_loader). NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path as FilePath
from types import ModuleType
from typing import Annotated

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.params import Body, Path

from med_classifier import NOT_FOR_CLINICAL_USE
from med_classifier.api import fast_path
from med_classifier.api.errors import (
    INVALID_JSON,
    NOT_SIGNED_IN,
    SCHEMA_MISMATCH,
    UNSUPPORTED_BODY,
    error_doc,
    register_error_handlers,
)
from med_classifier.api.openapi import OPENAPI_DOC, SIGN_IN_REQUIRED, html_doc, openapi_response, swagger_ui_response
from med_classifier.api.page import page_response
from med_classifier.api.schemas import (
    DriftReportResponse,
    ExplainQuery,
    HealthResponse,
    ModelList,
    ModelView,
    PredictRequest,
    PredictResponse,
    SignInConfig,
    predict_response,
)
from med_classifier.domain.errors import InvalidInput, NoDriftReport

# The handler module (app.py), given by med_classifier.api.routes_loader.load_routes before this
# module runs: a KeyError here means it was imported some other way.
handler: ModuleType = globals()["handler"]

HERE = FilePath(__file__).resolve().parent
PAGE, SPEC = HERE / "static" / "index.html", HERE / "openapi.json"

app = APIGatewayRestResolver(enable_validation=True, serializer=fast_path.json_text)


ModelId = Annotated[str, Path(description="Model id, e.g. breast-cancer")]
UNKNOWN_MODEL = error_doc("Unknown model")


@app.get(
    "/",
    summary="The web page: models, predict, labelled uploads, retraining",
    tags=["Web page and docs"],
    responses={200: html_doc("The page (served with a strict Content-Security-Policy)")},
)
def page():  # no return annotation: Response is not a schema type
    return page_response(PAGE, handler.settings().aws_endpoint_url)


@app.get(
    "/openapi.json",
    summary="This OpenAPI document: every route of every function",
    tags=["Web page and docs"],
    responses={200: OPENAPI_DOC},
)
def openapi_json():  # no return annotation: Response is not a schema type
    return openapi_response(SPEC, app.current_event)


@app.get(
    "/docs",
    summary="Swagger UI for this document (works offline: no CDN)",
    tags=["Web page and docs"],
    responses={200: html_doc("Swagger UI, script and style inlined")},
)
def docs():  # no return annotation: Response is not a schema type
    return swagger_ui_response(SPEC, app.current_event)


@app.get(
    "/auth/config",
    summary="What the page's sign-in form needs: the user pool's app client and Cognito endpoint",
    tags=["Web page and docs"],
)
def sign_in_config() -> SignInConfig:
    settings = handler.settings()
    return SignInConfig(
        user_pool_id=settings.user_pool_id,
        client_id=settings.user_pool_client_id,
        endpoint=settings.cognito_endpoint,
        notice=NOT_FOR_CLINICAL_USE,
    )


@app.get("/health", summary="Liveness, uptime and the models this container has loaded", tags=["Models"])
def health() -> HealthResponse:
    return HealthResponse(
        status="ok",
        uptime_s=round(time.time() - handler.STARTED_AT, 1),
        models=handler.model_cache().status(),
        notice=NOT_FOR_CLINICAL_USE,
    )


@app.get(
    "/models",
    summary="Every model with its production version, metrics and input schema",
    tags=["Models"],
    security=SIGN_IN_REQUIRED,
    responses={200: {"description": "The models"}, 401: NOT_SIGNED_IN},
)
def list_models() -> ModelList:
    return ModelList(models=handler.views()[0].list_models(), notice=NOT_FOR_CLINICAL_USE)


@app.get(
    "/models/<model>",
    summary="One model: versions, production pointer, metrics, input schema, upload counter and recent retraining jobs",
    tags=["Models"],
    security=SIGN_IN_REQUIRED,
    responses={200: {"description": "The model"}, 401: NOT_SIGNED_IN, 404: UNKNOWN_MODEL},
)
def get_model(model: ModelId) -> ModelView:
    registry, retraining = handler.views()
    view = registry.describe(model)
    if view.input is not None and view.input.kind == "image" and retraining is not None:
        view = replace(view, retraining=retraining.status(model))
    return view


@app.post(
    "/models/<model>/predict",
    summary="Classify one or many feature rows (tabular models)",
    description="JSON rows, one or many. Image models have routes of their own (API Gateway sends "
    "/models/skin-lesion/predict and /models/chest-ct/predict to the image function). " + NOT_FOR_CLINICAL_USE,
    tags=["Predict"],
    security=SIGN_IN_REQUIRED,
    responses={
        200: {"description": "One prediction per row, in request order"},
        400: INVALID_JSON,
        401: NOT_SIGNED_IN,
        404: UNKNOWN_MODEL,
        413: error_doc(
            "More rows than MaxPredictRows, a body over MaxPredictRequestBytes, or more rows than one request "
            "may have explained (100)"
        ),
        415: UNSUPPORTED_BODY,
        422: error_doc("Invalid rows (the message names the row and feature), an image model, or " + SCHEMA_MISMATCH),
        503: error_doc("The model has no loadable version"),
    },
)
def predict(
    model: ModelId, request: Annotated[PredictRequest, Body(embed=False)], explain: ExplainQuery = False
) -> PredictResponse:
    registry = handler.views()[0]
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
    return predict_response(handler.predicted(model, rows, explain=explain or request.explain), NOT_FOR_CLINICAL_USE)


@app.get(
    "/models/<model>/drift",
    summary="The drift monitor's latest report for one model: PSI per feature, class-mix shift, OOD rate",
    description="Written every DriftSchedule by the drift monitor from the predictions captured in the last "
    'DriftWindowMinutes (README, "Drift monitoring"). ' + NOT_FOR_CLINICAL_USE,
    tags=["Models"],
    security=SIGN_IN_REQUIRED,
    responses={
        200: {"description": "The latest report"},
        401: NOT_SIGNED_IN,
        404: error_doc("Unknown model, or no drift report for it yet"),
    },
)
def get_drift(model: ModelId) -> DriftReportResponse:
    handler.views()[0].production_manifest(model)  # unknown model: 404 unknown_model
    store = handler.monitoring()
    report = store.latest_report(model) if store is not None else None
    if report is None:
        raise NoDriftReport(
            f"No drift report for {model!r} yet: the drift monitor writes one on its schedule, "
            "from the predictions captured since."
        )
    return DriftReportResponse(**report, notice=NOT_FOR_CLINICAL_USE)


register_error_handlers(app, handler.logger)
