"""Request/response schemas of the HTTP API, shared by every function behind it (Powertools
validation and the generated OpenAPI document).

One definition per shape: where the domain already defines a result (JobRecord, the registry's
ModelSummary/ModelView, Prediction), the API returns it as it is; where the API renames or adds a
field (PredictResponse, UploadTicketResponse), the model is derived from the domain dataclass, so
no field list is written twice."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_type_hints

from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool, WithJsonSchema, create_model

# Domain results the API returns as they are (re-exported: the API's response types, one place).
from ..domain.drift import DriftReport
from ..domain.inference import Prediction as Prediction
from ..domain.jobs import JobRecord as JobRecord
from ..domain.registry import ModelSummary as ModelSummary
from ..domain.registry import ModelView as ModelView
from ..domain.retraining import RetrainingStatus as RetrainingStatus
from ..domain.serving import PredictionResult
from ..domain.uploads import UploadTicket
from .response_values import API_NAMES, predict_fields, response_fields, values_of

# Response models put every field in the JSON, so their schemas require every field.
RESPONSE = ConfigDict(json_schema_serialization_defaults_required=True)

_NUMBER_ROW_SCHEMA = {
    "oneOf": [
        {"type": "array", "items": {"type": "number"}, "description": "Feature values in manifest order"},
        {"type": "object", "additionalProperties": {"type": "number"}, "description": "Feature name -> value"},
    ]
}
# Rows are checked against the model's manifest (feature count, names, finite
# numbers) by domain code, which can say which row and feature is wrong.
Row = Annotated[list[Any] | dict[str, Any], WithJsonSchema(_NUMBER_ROW_SCHEMA)]

EXAMPLE_MALIGNANT_ROW = [
    17.99,
    10.38,
    122.8,
    1001.0,
    0.1184,
    0.2776,
    0.3001,
    0.1471,
    0.2419,
    0.07871,
    1.095,
    0.9053,
    8.589,
    153.4,
    0.006399,
    0.04904,
    0.05373,
    0.01587,
    0.03003,
    0.006193,
    25.38,
    17.33,
    184.6,
    2019.0,
    0.1622,
    0.6656,
    0.7119,
    0.2654,
    0.4601,
    0.1189,
]


# domain/explanations.py; the limits are MAX_EXPLAINED_ROWS and MAX_EXPLAINED_IMAGES there.
EXPLAIN_ROWS = (
    "true: each prediction also has an `explanation`: every feature's contribution to the predicted class's "
    "log-odds against the training mean (at most 100 rows per request)"
)
EXPLAIN_IMAGES = (
    "true: each prediction also has an `explanation`: an occlusion-sensitivity map of the predicted class "
    "(6 x 6 patches) and its heatmap as a small PNG (at most 4 images per request)"
)
ExplainQuery = Annotated[
    bool, Query(description='Same as "explain": true in a JSON body (a raw image body can only ask this way)')
]


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"instances": [EXAMPLE_MALIGNANT_ROW]}, {"features": EXAMPLE_MALIGNANT_ROW}]},
    )

    instances: list[Row] | None = Field(
        default=None,
        description="One or more rows: lists of numbers in manifest order, or objects keyed by feature name.",
    )
    features: Annotated[list[Any] | None, WithJsonSchema({"type": "array"})] = Field(
        default=None,
        description="Legacy shape of the Flask services this API replaces: a list of rows, or one flat row.",
    )
    images: list[str] | None = Field(
        default=None,
        description="Not taken here: image models have routes of their own (POST /models/skin-lesion/predict, "
        "POST /models/chest-ct/predict), which take this field. Sent here, it is answered 422 with the reason.",
    )
    explain: StrictBool = Field(default=False, description=EXPLAIN_ROWS)


def derived_model(
    name: str,
    source: type,
    doc: str,
    *,
    renamed: Mapping[str, str] | None = None,
    retyped: Mapping[str, Any] | None = None,
    described: Mapping[str, str] | None = None,
    config: ConfigDict = RESPONSE,
    **added: Any,
) -> type[BaseModel]:
    """A response model with the fields of the domain dataclass `source` (in its order; `renamed`
    and `retyped` where the API says otherwise, `described` for the docs), then the `added` ones."""
    renamed, retyped, described = renamed or {}, retyped or {}, described or {}
    hints = get_type_hints(source, include_extras=True)
    definitions: dict[str, Any] = {}
    for source_field in response_fields(source):
        name_out = renamed.get(source_field.name, source_field.name)
        annotation = retyped.get(name_out, hints[source_field.name])
        definitions[name_out] = (Annotated[annotation, Field(description=described.get(name_out))], ...)
    return create_model(name, __config__=config, __doc__=doc, **definitions, **added)


Notice = Annotated[str, Field(description="Research and education only: NOT FOR CLINICAL USE")]

PredictResponse = derived_model(
    "PredictResponse",
    PredictionResult,
    "The prediction for every row or image of the request, in request order.",
    renamed=API_NAMES,
    retyped={"predictions": list[Prediction]},
    described={"version": "The production version that answered", "inference_ms": "ONNX Runtime time"},
    # Every field of its own is required; RESPONSE would also require a prediction's `explanation`,
    # there only when asked for (pydantic requires a TypedDict's NotRequired keys under that setting).
    config=ConfigDict(),
    notice=(Notice, ...),
)


def predict_response(result: PredictionResult, notice: str) -> BaseModel:
    return PredictResponse(**predict_fields(result, notice))


class LoadedModel(BaseModel):  # one entry of domain.serving.ModelCache.status()
    """What this container has loaded for one model."""

    model_config = RESPONSE

    version: str | None = Field(description="The version serving; null before the first load succeeded")
    load_ms: float | None
    loaded_at: float | None = Field(description="Unix time of the load")
    refused: dict[str, str] = Field(description="version -> why it was refused (bad hash, bad ONNX, missing file)")


class SignInConfig(BaseModel):
    """GET /auth/config: the page signs in with InitiateAuth (USER_PASSWORD_AUTH) against `endpoint`."""

    model_config = RESPONSE

    user_pool_id: str = Field(description="The Cognito user pool of the API's users (its region is its prefix)")
    client_id: str = Field(description="The app client the page signs in with (public: no secret)")
    endpoint: str = Field(description="Where to send InitiateAuth: Cognito's regional endpoint (moto locally)")
    notice: Notice


class HealthResponse(BaseModel):
    model_config = RESPONSE

    status: Literal["ok"]
    uptime_s: float = Field(description="Seconds since this container started")
    models: dict[str, LoadedModel] = Field(description="model id -> what this container has loaded")
    notice: Notice


class ModelList(BaseModel):
    model_config = RESPONSE

    models: list[ModelSummary]
    notice: Notice


class ErrorBody(BaseModel):
    model_config = RESPONSE

    code: str = Field(description="Stable, machine-readable: invalid_input, unknown_model, conflict, ...")
    message: str = Field(description="For people: says what is wrong and what to send instead")
    details: list[Any] = Field(default=[], description="Which row, feature, label or limit, when there is one")


class ErrorResponse(BaseModel):
    """Every error a function answers, whichever function served the request."""

    model_config = RESPONSE

    error: ErrorBody


class GatewayError(BaseModel):
    """API Gateway's own answer (e.g. 403 without a valid x-api-key); the local runner answers the same."""

    model_config = RESPONSE

    message: str


# --- uploads and retraining ------------------------------------------------------------

MetricName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class UploadRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"label": "mel", "content_type": "image/jpeg"}]}
    )

    label: str = Field(min_length=1, max_length=64, description="The image's class, one of the model's classes")
    content_type: str = Field(default="image/jpeg", description="image/jpeg or image/png")


UploadTicketResponse = derived_model(
    "UploadTicketResponse",
    UploadTicket,
    "A presigned POST for one labelled image: POST every field of `fields`, then the file as `file` (last), "
    "to `url`. S3 refuses any other key, content type or size.",
    renamed=API_NAMES,
    described={
        "key": "Where the image will be stored: uploads/{model}/{label}/{uuid}.{ext}",
        "url": "POST the form here: every field of `fields`, then the file as `file` (last)",
        "max_bytes": "The largest file S3 accepts with this form",
        "expires_in": "Seconds the form stays valid",
    },
    notice=(Notice, ...),
)


def upload_ticket_response(ticket: UploadTicket, notice: str) -> BaseModel:
    return UploadTicketResponse(**values_of(ticket, API_NAMES), notice=notice)


# images_from_body parses image requests itself (raw or JSON, limits before parsing); this model documents
# the JSON form, and tests/unit/test_openapi.py checks that both accept the same documents.
class ImagesRequest(BaseModel):
    """The JSON form of an image model's request body."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"images": ["<base64 PNG>"]}]})

    images: list[str] = Field(
        min_length=1,
        description="One or more base64-encoded JPEG or PNG files (a data: URL prefix is accepted), "
        "at most MaxImagesPerRequest (16) of at most MaxImageBytes (4 MiB) each",
    )
    explain: bool = Field(default=False, description=EXPLAIN_IMAGES)


class GateOverrides(BaseModel):
    # NaN or infinity would pass validation here and fail the job later: refuse them now (422).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    min: dict[MetricName, float] = Field(default_factory=dict, description="metric -> stricter minimum")
    max: dict[MetricName, float] = Field(default_factory=dict, description="metric -> stricter maximum")


class RetrainRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "new dermatoscope"}, {"gate": {"min": {"test_macro_f1": 0.6}}}]},
    )

    reason: str | None = Field(default=None, max_length=200, description="Recorded with the job")
    gate: GateOverrides | None = Field(
        default=None,
        description="A stricter promotion gate for this job only (the job never loosens the model's own gate)",
    )

    def hyperparameters(self) -> dict[str, str]:
        gate = self.gate or GateOverrides()
        return {
            **{f"gate_min_{k}": repr(v) for k, v in gate.min.items()},
            **{f"gate_max_{k}": repr(v) for k, v in gate.max.items()},
        }


# --- drift monitoring --------------------------------------------------------------------


class DriftReportResponse(DriftReport):
    """GET /models/{model}/drift: the drift monitor's latest report (domain/drift.py)."""

    model_config = RESPONSE

    notice: Notice
