"""The environment variables that training, the retraining job and the scripts read, in one
model; everything else is a command-line option. Read when asked, not cached: the local
stack, the bench and the tests point them elsewhere between runs.

    MODELS_BUCKET            the default of `python -m training --bucket`
    LOCAL_STATE_DIR          local state: MLflow store, synthetic data sets, the model-store mirror
    MLFLOW_TRACKING_URI      a tracking server; empty: a SQLite store under MLFLOW_LOCAL_DIR
    MLFLOW_LOCAL_DIR         where that store lives (default LOCAL_STATE_DIR/mlflow)
    ML_ROOT                  the SageMaker container root (/opt/ml; Batch and tests move it)
    RETRAIN_HYPERPARAMETERS  Batch: the job's hyperparameters as JSON (SageMaker stages a file)
    RETRAIN_CHANNELS         Batch: channel name → s3:// prefix as JSON
    MED_CLASSIFIER_TOKEN     a Cognito ID token scripts/upload_labelled.py sends (else it signs in locally)
    SMOKE_PASSWORD           the password scripts/smoke_test.py signs in with (kept off the command line)
    CI                       set (any value) by CI: scripts/deploy.py deploys without asking to confirm
    AWS_ENDPOINT_URL         moto locally; empty on AWS
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from med_classifier.settings import FunctionSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ML_ROOT = Path("/opt/ml")


class TrainingSettings(FunctionSettings):
    models_bucket: str = ""
    local_state_dir: Path = REPO_ROOT / ".local"
    mlflow_tracking_uri: str = ""
    mlflow_local_dir: Path | None = None
    ml_root: Path = DEFAULT_ML_ROOT
    retrain_hyperparameters: dict[str, Any] | None = None  # None: not a Batch job (SageMaker staged it)
    retrain_channels: dict[str, str] = Field(default_factory=dict)
    med_classifier_token: str = ""
    smoke_password: str = ""
    ci: str = ""

    @field_validator("retrain_hyperparameters", "retrain_channels", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @property
    def state_dir(self) -> Path:
        return self.local_state_dir.resolve()

    @property
    def mlflow_store(self) -> Path:
        return self.mlflow_local_dir or self.state_dir / "mlflow"


def training_settings(environ: Mapping[str, str] | None = None) -> TrainingSettings:
    return TrainingSettings.from_environ(environ)
