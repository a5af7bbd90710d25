"""The composition root the functions share: each function's settings → adapters → the
domain services its handler calls. Built once per container (the functions cache them),
never at import: boto3 and clients cost cold-start time.

Each builder imports the adapters it builds, so a function loads only what it uses: the
predict functions' first request needs the model store, not the job tables, launchers and
retraining domain (README, "Cold start")."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # serving imports numpy: functions that run no model must not (their layer has none)
    from .adapters.capture_store import S3MonitoringStore
    from .adapters.model_store import ModelStore
    from .adapters.release_targets import CodeDeployReporter
    from .adapters.s3_uploads import S3UploadSigner
    from .domain.capture import CaptureBuffer
    from .domain.ports import GoldenPredictor
    from .domain.registry import RegistryView
    from .domain.retraining import Recovery, Retraining
    from .domain.serving import ModelCache
    from .domain.upload_checks import UploadGate
    from .settings import (
        DriftMonitorSettings,
        PredictSettings,
        PreTrafficHookSettings,
        RetrainingApiSettings,
        RetrainingSettings,
        ServingSettings,
        UploadCounterSettings,
    )


def model_store(settings: ServingSettings | RetrainingSettings | DriftMonitorSettings) -> ModelStore:
    from .adapters.model_store import ModelStore

    return ModelStore(settings.models_bucket, endpoint_url=settings.endpoint_url)


def model_cache(settings: ServingSettings, store: ModelStore | None = None) -> ModelCache:
    from .domain.serving import ModelCache

    return ModelCache(store or model_store(settings), refresh_seconds=settings.pointer_refresh_seconds)


def retraining(settings: RetrainingSettings) -> Retraining:
    """The retraining loop with its launcher (functions that may start jobs)."""
    from .adapters.launchers import launcher_for
    from .domain.retraining import Recovery

    launcher = launcher_for(settings.launch(), endpoint_url=settings.endpoint_url)
    return _retraining(settings, launcher, Recovery.for_max_runtime(settings.training_max_runtime_seconds))


def retraining_status(settings: PredictSettings) -> Retraining | None:
    """A read-only view of the retraining loop (no launcher), or None when the function is
    not given the tables."""
    return _retraining(settings, None) if settings.shows_retraining else None


def _retraining(
    settings: RetrainingSettings | PredictSettings, launcher, recovery: Recovery | None = None
) -> Retraining:
    from .adapters.jobs_table import JobsTable
    from .adapters.upload_counter import UploadCounter
    from .domain.retraining import Recovery, Retraining

    return Retraining(
        UploadCounter(settings.upload_counts_table, endpoint_url=settings.endpoint_url),
        JobsTable(settings.jobs_table, endpoint_url=settings.endpoint_url),
        launcher,
        settings.thresholds,
        recovery or Recovery(),
    )


def upload_signer(settings: RetrainingApiSettings) -> S3UploadSigner:
    from .adapters.s3_uploads import S3UploadSigner

    return S3UploadSigner(settings.uploads_bucket, endpoint_url=settings.endpoint_url)


def upload_gate(settings: UploadCounterSettings) -> UploadGate:
    """Checks each uploaded object before it counts (within the upload size limit the presigned POST
    enforces); moves refused ones to quarantine."""
    from .adapters.upload_store import S3UploadStore
    from .domain.upload_checks import UploadChecks, UploadGate

    store = S3UploadStore(settings.uploads_bucket, endpoint_url=settings.endpoint_url)
    return UploadGate(store, UploadChecks(max_bytes=settings.max_upload_bytes))


def registry(settings: ServingSettings | RetrainingSettings, store: ModelStore | None = None) -> RegistryView:
    from .domain.registry import RegistryView

    return RegistryView(store or model_store(settings))


def golden_predictors(settings: PreTrafficHookSettings) -> dict[str, GoldenPredictor]:
    """The new function version that serves each input kind, called directly (the PreTraffic hook)."""
    from .adapters.release_targets import LambdaPredictor
    from .api.release_events import predict_event

    endpoint = settings.lambda_endpoint_url or settings.endpoint_url
    return {
        "tabular": LambdaPredictor(settings.new_predict_version, predict_event, endpoint_url=endpoint),
        "image": LambdaPredictor(settings.new_image_predict_version, predict_event, endpoint_url=endpoint),
    }


def deployment_reporter(settings: PreTrafficHookSettings) -> CodeDeployReporter:
    from .adapters.release_targets import CodeDeployReporter

    return CodeDeployReporter(endpoint_url=settings.endpoint_url)


def monitoring_store(settings: ServingSettings | DriftMonitorSettings) -> S3MonitoringStore | None:
    """The monitoring bucket (captures, drift reports), or None when the function is given none."""
    from .adapters.capture_store import S3MonitoringStore

    return (
        S3MonitoringStore(settings.monitoring_bucket, endpoint_url=settings.endpoint_url)
        if settings.monitoring_bucket
        else None
    )


def capture_buffer(settings: ServingSettings, store: S3MonitoringStore | None = None) -> CaptureBuffer | None:
    """The predict functions' drift capture (domain/capture.py), or None when capture is off."""
    from .domain.capture import CaptureBuffer

    store = store or monitoring_store(settings)
    if store is None or settings.capture_sample_rate == 0:
        return None
    return CaptureBuffer(store, settings.capture_policy)
