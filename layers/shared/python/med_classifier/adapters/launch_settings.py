"""What a retraining launcher is configured with (adapters/launchers.py): the backend and the
job's buckets, image, role and limits. Apart from the launchers, so that settings.py validates
RETRAIN_BACKEND and builds these without importing the launchers' AWS clients and the job
domain: the serving functions read their settings too, and their cold start would pay for both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..domain.jobs import JobRequest

SAGEMAKER, BATCH = "sagemaker", "batch"
BACKENDS = (SAGEMAKER, BATCH)


@dataclass(frozen=True)
class LaunchSettings:
    """Everything a launcher needs (built from the function's settings)."""

    backend: str
    uploads_bucket: str
    models_bucket: str
    jobs_table: str
    training_image: str = ""
    role_arn: str = ""
    output_uri: str = ""
    original_data_prefix: str = ""  # "" = the job generates its synthetic data set
    instance_type: str = "ml.m5.xlarge"
    volume_gb: int = 30
    max_runtime_seconds: int = 3 * 3600
    job_queue: str = ""
    job_definition: str = ""
    extra_hyperparameters: dict[str, str] = field(default_factory=dict)
    mlflow_tracking_uri: str = ""  # "" = the job's MLflow store stays in its own artefacts

    def channels(self, model: str) -> dict[str, str]:
        channels = {"uploads": f"s3://{self.uploads_bucket}/uploads/{model}/"}
        if self.original_data_prefix.strip("/"):
            channels["original"] = f"s3://{self.uploads_bucket}/{self.original_data_prefix.strip('/')}/{model}/"
        return channels

    def environment(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": self.mlflow_tracking_uri} if self.mlflow_tracking_uri else {}

    def hyperparameters(self, request: JobRequest) -> dict[str, str]:
        # Configured values first: what a request asks for (e.g. a stricter gate) wins.
        return {
            **self.extra_hyperparameters,
            **request.hyperparameters,
            "model": request.model,
            "job_id": request.job_id,
            "models_bucket": self.models_bucket,
            "jobs_table": self.jobs_table,
        }
