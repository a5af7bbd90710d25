"""MLflow set-up: a SQLite store in the project's state dir (or MLFLOW_LOCAL_DIR) unless
MLFLOW_TRACKING_URI says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def state_dir() -> Path:
    """Where local state lives (MLflow, the local model-store mirror): LOCAL_STATE_DIR or ./.local."""
    return Path(os.environ.get("LOCAL_STATE_DIR", REPO_ROOT / ".local")).resolve()


def configure(experiment: str) -> str:
    """Point MLflow at the tracking store and select (creating if needed) the experiment.
    Returns the tracking URI in use."""
    import mlflow

    uri = os.environ.get("MLFLOW_TRACKING_URI")
    artifact_root = None
    if not uri:
        root = Path(os.environ.get("MLFLOW_LOCAL_DIR") or state_dir() / "mlflow")
        root.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        artifact_root = (root / "artifacts").as_uri()
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=artifact_root)
    mlflow.set_experiment(experiment)
    return uri
