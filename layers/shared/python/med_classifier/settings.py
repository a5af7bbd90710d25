"""One settings model per function, read once from the environment and passed to domain
code as arguments. template.yaml gives each function exactly the variables its model
declares (tests/unit/test_settings.py checks both ways). This is the only module in
layers/ and functions/ that reads os.environ.

Plain pydantic models, not pydantic-settings: importing pydantic-settings adds ~180 ms
to a cold start on this machine, and the functions need nothing it adds beyond reading
upper-case variables, which `from_environ` does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .adapters.launch_settings import BACKENDS, SAGEMAKER, LaunchSettings
from .api.image_requests import DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_IMAGES, ImageLimits
from .domain.capture import CapturePolicy
from .domain.preprocessing import DEFAULT_MAX_PIXELS, DEFAULT_MAX_REQUEST_PIXELS
from .domain.uploads import DEFAULT_EXPIRES_SECONDS, DEFAULT_MAX_UPLOAD_BYTES, UploadLimits

DEFAULT_RETRAIN_THRESHOLD = 50


def _env_name(field_name: str) -> str:
    return field_name.upper()


class FunctionSettings(BaseModel):
    """What every function reads: where AWS is (moto locally; empty on AWS)."""

    # defer_build: a function builds the validator of its own settings only (at its first
    # request), not of the nine classes here (cold start).
    model_config = ConfigDict(
        alias_generator=_env_name, populate_by_name=True, frozen=True, extra="ignore", defer_build=True
    )

    aws_endpoint_url: str = ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None):
        """The model from the environment's upper-case variables. An empty variable counts as
        unset: the template's defaults for optional parameters are empty strings."""
        if environ is None:
            environ = os.environ
            if environ.get("AWS_ENDPOINT_URL") == "":
                # The template's default on AWS; botocore versions differ on whether an empty
                # value means "no override", so there is none.
                del environ["AWS_ENDPOINT_URL"]
        names = {_env_name(name) for name in cls.model_fields}
        return cls.model_validate({name: environ[name] for name in names if environ.get(name, "") != ""})

    @classmethod
    def variables(cls) -> set[str]:
        """The environment variables this model reads (the template must give exactly these)."""
        return {_env_name(name) for name in cls.model_fields}

    @property
    def endpoint_url(self) -> str | None:
        return self.aws_endpoint_url or None


class ServingSettings(FunctionSettings):
    models_bucket: str
    pointer_refresh_seconds: float = Field(default=60.0, ge=0)
    # Drift capture (README, "Drift monitoring"): a sample of predictions' input summaries and labels,
    # written to the monitoring bucket in batches; no bucket, no capture.
    monitoring_bucket: str = ""
    capture_sample_rate: float = Field(default=0.1, ge=0.0, le=1.0)
    capture_batch_size: int = Field(default=100, ge=1)
    capture_flush_seconds: float = Field(default=300.0, ge=0)

    @property
    def capture_policy(self) -> CapturePolicy:
        return CapturePolicy(self.capture_sample_rate, self.capture_batch_size, self.capture_flush_seconds)


class ThresholdSettings(FunctionSettings):
    """How many new uploads start a model's retraining job."""

    retrain_threshold: int = DEFAULT_RETRAIN_THRESHOLD
    retrain_thresholds: dict[str, int] = Field(default_factory=dict)  # JSON {model: n} overrides

    @field_validator("retrain_thresholds", mode="before")
    @classmethod
    def _json_thresholds(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("retrain_threshold")
    @classmethod
    def _positive_threshold(cls, value: int) -> int:
        if value < 1:
            raise ValueError("retrain thresholds must be at least 1")
        return value

    @field_validator("retrain_thresholds")
    @classmethod
    def _positive_overrides(cls, value: dict[str, int]) -> dict[str, int]:
        if any(v < 1 for v in value.values()):
            raise ValueError("retrain thresholds must be at least 1")
        return value

    @property
    def thresholds(self) -> tuple[int, dict[str, int]]:
        return self.retrain_threshold, dict(self.retrain_thresholds)


class RetrainingSettings(ThresholdSettings):
    """The retraining loop's tables and thresholds, and how jobs are launched."""

    upload_counts_table: str
    jobs_table: str
    retrain_backend: str = SAGEMAKER
    uploads_bucket: str
    models_bucket: str
    training_image_uri: str = ""
    training_role_arn: str = ""
    training_output_uri: str = ""
    original_data_prefix: str = ""
    training_instance_type: str = "ml.m5.xlarge"
    training_max_runtime_seconds: int = 3 * 3600
    batch_job_queue: str = ""
    batch_job_definition: str = ""
    retrain_hyperparameters: dict[str, str] = Field(default_factory=dict)  # JSON, added to every job
    retrain_mlflow_tracking_uri: str = ""

    @field_validator("retrain_hyperparameters", mode="before")
    @classmethod
    def _json_strings(cls, value: Any) -> Any:
        value = json.loads(value) if isinstance(value, str) else value
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else value

    @field_validator("retrain_backend", mode="before")
    @classmethod
    def _known_backend(cls, value: Any) -> Any:
        backend = str(value).strip().lower()
        if backend not in BACKENDS:
            raise ValueError(f"RETRAIN_BACKEND must be one of {BACKENDS}, not {backend!r}")
        return backend

    def launch(self) -> LaunchSettings:
        return LaunchSettings(
            backend=self.retrain_backend,
            uploads_bucket=self.uploads_bucket,
            models_bucket=self.models_bucket,
            jobs_table=self.jobs_table,
            training_image=self.training_image_uri,
            role_arn=self.training_role_arn,
            output_uri=self.training_output_uri,
            original_data_prefix=self.original_data_prefix,
            instance_type=self.training_instance_type,
            max_runtime_seconds=self.training_max_runtime_seconds,
            job_queue=self.batch_job_queue,
            job_definition=self.batch_job_definition,
            extra_hyperparameters=dict(self.retrain_hyperparameters),
            mlflow_tracking_uri=self.retrain_mlflow_tracking_uri,
        )


class PredictSettings(ServingSettings, ThresholdSettings):
    """PredictFunction: the page, health, the registry view, tabular predict, the API's spec."""

    max_predict_rows: int = Field(default=1000, ge=1)
    # Bodies are refused above this before they are parsed: 1000 rows of 30 named features,
    # pretty-printed, are about 1.5 MB.
    max_request_bytes: int = Field(default=2 * 1024 * 1024, ge=1)
    # GET /models/{model} shows an image model's upload counter and recent jobs when both are set.
    upload_counts_table: str = ""
    jobs_table: str = ""

    @property
    def shows_retraining(self) -> bool:
        return bool(self.upload_counts_table and self.jobs_table)

    # GET /auth/config: the page signs in against this pool's app client (README, "Who may call what").
    user_pool_id: str = ""
    user_pool_client_id: str = ""

    @property
    def cognito_endpoint(self) -> str:
        """Where the page sends InitiateAuth: the endpoint override locally (moto), else the pool's region."""
        region = self.user_pool_id.split("_", 1)[0] or "us-east-1"
        return self.aws_endpoint_url or f"https://cognito-idp.{region}.amazonaws.com/"


class ImagePredictSettings(ServingSettings):
    """ImagePredictFunction: image models' predict."""

    max_image_bytes: int = Field(default=DEFAULT_MAX_IMAGE_BYTES, ge=1)
    max_images_per_request: int = Field(default=DEFAULT_MAX_IMAGES, ge=1)
    max_image_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=1)
    max_request_pixels: int = Field(default=DEFAULT_MAX_REQUEST_PIXELS, ge=1)
    # Lambda's synchronous payload limit: no larger body can reach the function on AWS.
    max_request_bytes: int = Field(default=6 * 1024 * 1024, ge=1)

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(max_bytes=self.max_image_bytes, max_images=self.max_images_per_request)


class RetrainingApiSettings(RetrainingSettings):
    """RetrainingApiFunction: labelled uploads, manual retraining, job status."""

    max_upload_bytes: int = Field(default=DEFAULT_MAX_UPLOAD_BYTES, ge=1)
    upload_url_expires_seconds: int = Field(default=DEFAULT_EXPIRES_SECONDS, ge=1)
    # Its bodies are a label and a content type, or a reason and a gate: a few hundred bytes.
    max_request_bytes: int = Field(default=64 * 1024, ge=1)

    @property
    def upload_limits(self) -> UploadLimits:
        return UploadLimits(max_bytes=self.max_upload_bytes, expires_in=self.upload_url_expires_seconds)


class UploadCounterSettings(RetrainingSettings):
    """UploadCounterFunction: checks and counts uploads, starts a job per threshold."""

    # The same limit the presigned POST enforces (MaxUploadBytes): an object over it is quarantined.
    max_upload_bytes: int = Field(default=DEFAULT_MAX_UPLOAD_BYTES, ge=1)


class JobStateSettings(RetrainingSettings):
    """JobStateFunction: records job state changes, starts the next due job."""


class ReconcilerSettings(RetrainingSettings):
    """ReconcilerFunction (scheduled): ends claims whose job ended unreported or never started."""


class DriftMonitorSettings(FunctionSettings):
    """DriftMonitorFunction (scheduled): each production model's captures of the last window vs its manifest."""

    models_bucket: str
    monitoring_bucket: str
    drift_window_minutes: int = Field(default=24 * 60, ge=1)


class PreTrafficHookSettings(FunctionSettings):
    """PreTrafficHookFunction: the new predict function versions a canary deployment checks."""

    models_bucket: str
    # The versions being deployed (template: !Ref <Function>.Version; locally the logical ids).
    new_predict_version: str
    new_image_predict_version: str
    # Where Lambda's Invoke API is: empty on AWS; the local runner's Lambda endpoint locally.
    lambda_endpoint_url: str = ""


# The template's logical id → the settings model of that function.
FUNCTION_SETTINGS: dict[str, type[FunctionSettings]] = {
    "PredictFunction": PredictSettings,
    "ImagePredictFunction": ImagePredictSettings,
    "RetrainingApiFunction": RetrainingApiSettings,
    "UploadCounterFunction": UploadCounterSettings,
    "JobStateFunction": JobStateSettings,
    "ReconcilerFunction": ReconcilerSettings,
    "PreTrafficHookFunction": PreTrafficHookSettings,
    "DriftMonitorFunction": DriftMonitorSettings,
}
