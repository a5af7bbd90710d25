"""MLflow set-up: a SQLite store in the project's state dir (or MLFLOW_LOCAL_DIR) unless
MLFLOW_TRACKING_URI says otherwise."""

from __future__ import annotations

from pathlib import Path

from training.settings import REPO_ROOT, training_settings

__all__ = ["REPO_ROOT", "configure", "state_dir"]


def state_dir() -> Path:
    """Where local state lives (MLflow, the local model-store mirror): LOCAL_STATE_DIR or ./.local."""
    return training_settings().state_dir


def configure(experiment: str) -> str:
    """Point MLflow at the tracking store and select (creating if needed) the experiment.
    Returns the tracking URI in use."""
    import mlflow

    settings = training_settings()
    uri = settings.mlflow_tracking_uri
    artifact_root = None
    if not uri:
        root = settings.mlflow_store
        root.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        artifact_root = (root / "artifacts").as_uri()
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=artifact_root)
    mlflow.set_experiment(experiment)
    return uri
