"""Request/response schemas of the HTTP API, shared by the tabular and image
functions (Powertools validation and the generated OpenAPI)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

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


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"instances": [EXAMPLE_MALIGNANT_ROW]}, {"images": ["<base64 PNG>"]}]},
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
        description="Image models: one or more base64-encoded JPEG or PNG files (a data: URL prefix "
        "is accepted). A single image can also be sent as the raw body with "
        "Content-Type image/jpeg or image/png.",
    )


class PredictionOut(BaseModel):
    label: str
    class_index: int
    confidence: float
    probabilities: dict[str, float]


class PredictResponse(BaseModel):
    model: str
    version: str
    predictions: list[PredictionOut]
    inference_ms: float
    notice: str

    @classmethod
    def from_result(cls, result, notice: str) -> PredictResponse:
        """From a med_classifier.serving.PredictionResult."""
        return cls(
            model=result.model_id,
            version=result.version,
            inference_ms=round(result.inference_ms, 3),
            predictions=[PredictionOut(**vars(p)) for p in result.predictions],
            notice=notice,
        )


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[Any] = []


class ErrorResponse(BaseModel):
    error: ErrorBody


# --- uploads and retraining ------------------------------------------------------------

MetricName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class UploadRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"label": "mel", "content_type": "image/jpeg"}]}
    )

    label: str = Field(min_length=1, max_length=64, description="The image's class, one of the model's classes")
    content_type: str = Field(default="image/jpeg", description="image/jpeg or image/png")


class UploadTicketResponse(BaseModel):
    model: str
    label: str
    key: str = Field(description="Where the image will be stored: uploads/{model}/{label}/{uuid}.{ext}")
    url: str = Field(description="POST the form here: every field of `fields`, then the file as `file` (last)")
    fields: dict[str, str]
    content_type: str
    max_bytes: int
    expires_in: int = Field(description="Seconds the form stays valid")
    notice: str


class GateOverrides(BaseModel):
    model_config = ConfigDict(extra="forbid")

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


class JobResponse(BaseModel):
    job_id: str
    model: str
    trigger: str
    backend: str
    state: str
    created_at: str
    updated_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    uploads: int | None = None
    reason: str | None = None
    backend_job: str | None = None
    service_status: str | None = None
    outcome: str | None = None
    version: str | None = None
    production_version: str | None = None
    reasons: list[str] = []
    metrics: dict[str, float] = {}
    failure_reason: str | None = None
