"""The composition root the functions share: each function's settings → adapters → the
domain services its handler calls. Built once per container (the functions cache them),
never at import: boto3 and clients cost cold-start time."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .adapters.jobs_table import JobsTable
from .adapters.launchers import launcher_for
from .adapters.model_store import ModelStore
from .adapters.s3_uploads import S3UploadSigner
from .adapters.upload_counter import UploadCounter
from .domain.registry import RegistryView
from .domain.retraining import Recovery, Retraining
from .settings import PredictSettings, RetrainingApiSettings, RetrainingSettings, ServingSettings

if TYPE_CHECKING:  # serving imports numpy: functions that run no model must not (their layer has none)
    from .domain.serving import ModelCache


def model_store(settings: ServingSettings | RetrainingSettings) -> ModelStore:
    return ModelStore(settings.models_bucket, endpoint_url=settings.endpoint_url)


def model_cache(settings: ServingSettings, store: ModelStore | None = None) -> ModelCache:
    from .domain.serving import ModelCache

    return ModelCache(store or model_store(settings), refresh_seconds=settings.pointer_refresh_seconds)


def retraining(settings: RetrainingSettings) -> Retraining:
    """The retraining loop with its launcher (functions that may start jobs)."""
    launcher = launcher_for(settings.launch(), endpoint_url=settings.endpoint_url)
    return _retraining(settings, launcher, Recovery.for_max_runtime(settings.training_max_runtime_seconds))


def retraining_status(settings: PredictSettings) -> Retraining | None:
    """A read-only view of the retraining loop (no launcher), or None when the function is
    not given the tables."""
    return _retraining(settings, None) if settings.shows_retraining else None


def _retraining(
    settings: RetrainingSettings | PredictSettings, launcher, recovery: Recovery | None = None
) -> Retraining:
    return Retraining(
        UploadCounter(settings.upload_counts_table, endpoint_url=settings.endpoint_url),
        JobsTable(settings.jobs_table, endpoint_url=settings.endpoint_url),
        launcher,
        settings.thresholds,
        recovery or Recovery(),
    )


def upload_signer(settings: RetrainingApiSettings) -> S3UploadSigner:
    return S3UploadSigner(settings.uploads_bucket, endpoint_url=settings.endpoint_url)


def registry(settings: ServingSettings | RetrainingSettings, store: ModelStore | None = None) -> RegistryView:
    return RegistryView(store or model_store(settings))
