"""Per-container model cache with pointer refresh and hot swap.

A warm function keeps one loaded version per model. At most every
``refresh_seconds`` it re-reads production.json; a new version is loaded and
verified before it replaces the current one. A version that fails (bad hash,
bad ONNX, missing file) is refused and the current one keeps serving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import ClassifierError, IntegrityError, InvalidInput, ModelUnavailable, UnknownModel
from .explanations import check_budget, feature_contributions, occlusion_maps
from .inference import OnnxClassifier, Prediction
from .manifest import Manifest, ProductionPointer, is_valid_model_id
from .ood import Verdict, assess, assess_summaries
from .ports import ModelReader
from .preprocessing import DEFAULT_PIXEL_LIMITS, PixelLimits, decode_batch

logger = logging.getLogger(__name__)

# What /health, the 503s and the registry say about a refused version or pointer. The checks'
# own words (S3 keys, onnxruntime's and pydantic's texts) go to the logs, not to callers.
REFUSED_POINTER = "production.json is not a valid pointer; the details are in the logs."
REFUSED_VERSION = "failed its integrity checks (hash, manifest or ONNX); the details are in the logs."


@dataclass
class LoadedModel:
    manifest: Manifest
    classifier: OnnxClassifier
    pointer: ProductionPointer
    loaded_at: float  # wall clock, for humans
    load_ms: float


@dataclass
class _Entry:
    current: LoadedModel | None = None
    checked_at: float = float("-inf")  # monotonic
    refused: dict[str, str] = field(default_factory=dict)  # version -> why


class ModelCache:
    def __init__(self, store: ModelReader, refresh_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    def get(self, model_id: str) -> LoadedModel:
        if not is_valid_model_id(model_id):
            raise UnknownModel(f"No model named {model_id!r}. GET /models lists the models.")
        entry = self._entries.setdefault(model_id, _Entry())
        now = self._clock()
        if entry.current is not None and now - entry.checked_at < self.refresh_seconds:
            return entry.current
        self._refresh(model_id, entry)
        entry.checked_at = now
        if entry.current is None:
            # _refresh either raised or recorded why nothing could be loaded.
            why = "; ".join(f"{v}: {r}" for v, r in entry.refused.items())
            raise ModelUnavailable(f"Model {model_id!r} has no loadable version ({why}).")
        return entry.current

    def _refresh(self, model_id: str, entry: _Entry) -> None:
        try:
            pointer = self.store.read_pointer(model_id)
        except IntegrityError as exc:
            logger.error(
                "unreadable production pointer, keeping current version", extra={"model": model_id, "error": str(exc)}
            )
            entry.refused["production.json"] = REFUSED_POINTER
            return
        except Exception as exc:  # S3 unreachable: a warm container keeps serving what it has
            if entry.current is None:
                raise ModelUnavailable(f"Model store unreachable for {model_id!r}.") from exc
            logger.warning(
                "pointer refresh failed, keeping current version", extra={"model": model_id, "error": str(exc)}
            )
            return
        if pointer is None:
            if entry.current is None:
                if self.store.list_versions(model_id):
                    raise ModelUnavailable(f"Model {model_id!r} has versions but none is promoted to production.")
                del self._entries[model_id]
                raise UnknownModel(f"No model named {model_id!r}. GET /models lists the models.")
            return
        entry.refused.pop("production.json", None)
        if (
            entry.current is not None
            and entry.current.pointer.version == pointer.version
            and entry.current.pointer.sha256 == pointer.sha256
        ):
            return
        try:
            entry.current = self._load(model_id, pointer)
            entry.refused.pop(pointer.version, None)
        except IntegrityError as exc:
            entry.refused[pointer.version] = REFUSED_VERSION
            logger.error(
                "refusing broken model version",
                extra={
                    "model": model_id,
                    "version": pointer.version,
                    "error": str(exc),
                    "serving": entry.current.pointer.version if entry.current else None,
                },
            )

    def _load(self, model_id: str, pointer: ProductionPointer) -> LoadedModel:
        started = self._clock()
        version = self.store.read_version(model_id, pointer.version, expected_sha256=pointer.sha256)
        classifier = OnnxClassifier(version.manifest, version.onnx)
        load_ms = (self._clock() - started) * 1000.0
        logger.info("model loaded", extra={"model": model_id, "version": pointer.version, "load_ms": round(load_ms, 1)})
        return LoadedModel(
            manifest=version.manifest, classifier=classifier, pointer=pointer, loaded_at=time.time(), load_ms=load_ms
        )

    def load_production(self, kind: str) -> list[str]:
        """Loads every production model whose input is `kind` ("tabular" or "image"), each session
        probed once (OnnxClassifier), and returns their ids: SnapStart's before-snapshot step, so a
        restored instance answers its first request without reading or loading a model. A model that
        cannot be loaded is logged and left to the first request, as without SnapStart."""
        loaded = []
        for model_id in self.store.list_model_ids():
            try:
                pointer = self.store.read_pointer(model_id)
                if pointer is None or self.store.read_manifest(model_id, pointer.version).input.kind != kind:
                    continue
                self.get(model_id)
                loaded.append(model_id)
            except Exception as exc:
                logger.warning("model not loaded before the snapshot", extra={"model": model_id, "error": str(exc)})
        return loaded

    def refresh_now(self) -> None:
        """Re-reads every loaded model's pointer now, and loads a version promoted meanwhile: SnapStart's
        after-restore step (a snapshot may be hours old). It also restamps each check with this
        instance's clock, which a restore does not carry over from the snapshot's."""
        for model_id, entry in list(self._entries.items()):
            entry.checked_at = float("-inf")
            try:
                self.get(model_id)
            except ClassifierError as exc:
                logger.warning("pointer not refreshed after restore", extra={"model": model_id, "error": str(exc)})

    def status(self) -> dict[str, dict]:
        """What this container has loaded, for /health."""
        return {
            model_id: {
                "version": e.current.pointer.version if e.current else None,
                "load_ms": round(e.current.load_ms, 1) if e.current else None,
                "loaded_at": e.current.loaded_at if e.current else None,
                "refused": dict(e.refused),
            }
            for model_id, e in self._entries.items()
        }


# A PredictionResult field with this metadata stays out of the response body.
NOT_IN_RESPONSE = {"in_response": False}


@dataclass(frozen=True)
class PredictionResult:
    model_id: str
    version: str
    predictions: list
    inference_ms: float
    # Each input's summary, in request order (tabular: feature name -> value; images:
    # domain.image_statistics), for out-of-distribution checks and drift capture.
    inputs: list[dict[str, float]] = field(default_factory=list, metadata=NOT_IN_RESPONSE)


def flag_out_of_distribution(predictions: list[Prediction], verdicts: list[Verdict]) -> None:
    """Each prediction gets its input's out-of-distribution verdict (domain.ood)."""
    for prediction, (in_distribution, reasons) in zip(predictions, verdicts, strict=True):
        prediction["in_distribution"] = in_distribution
        prediction["ood_reasons"] = reasons


def _probabilities(predictions: list[Prediction]) -> list[dict[str, float]]:
    return [prediction["probabilities"] for prediction in predictions]


def _classes(predictions: list[Prediction]) -> list[int]:
    return [prediction["class_index"] for prediction in predictions]


def _attach(predictions: list[Prediction], explanations: list) -> None:
    for prediction, explanation in zip(predictions, explanations, strict=True):
        prediction["explanation"] = explanation


def predict_rows(
    cache: ModelCache, model_id: str, rows: list, max_rows: int, *, numbers_only: bool = False, explain: bool = False
) -> PredictionResult:
    """Tabular prediction: resolve the production model, validate rows against its
    manifest, run it (``numbers_only``: see tabular.rows_to_matrix); ``explain``: each
    prediction with its feature contributions (domain/explanations.py)."""
    from .tabular import rows_to_matrix

    loaded = cache.get(model_id)
    spec = loaded.manifest.input
    if spec.kind != "tabular":
        raise InvalidInput(f"Model {model_id!r} takes images, not feature rows.")
    matrix = rows_to_matrix(rows, spec, max_rows, numbers_only=numbers_only)
    if explain:
        check_budget("tabular", len(matrix))
    predictions, elapsed_ms = loaded.classifier.predict(matrix)
    flag_out_of_distribution(
        predictions, assess(loaded.manifest.ood, spec.feature_names, matrix, _probabilities(predictions))
    )
    if explain:
        _attach(predictions, feature_contributions(loaded.classifier, matrix, _classes(predictions)))
    return PredictionResult(
        model_id=model_id,
        version=loaded.pointer.version,
        predictions=predictions,
        inference_ms=elapsed_ms,
        inputs=[dict(zip(spec.feature_names, row)) for row in matrix.tolist()],
    )


def predict_images(
    cache: ModelCache,
    model_id: str,
    images: list[bytes],
    limits: PixelLimits = DEFAULT_PIXEL_LIMITS,
    *,
    explain: bool = False,
) -> PredictionResult:
    """Image prediction: resolve the production model, check every image's header against the
    pixel limits, preprocess them with the manifest's spec (the same code training evaluated
    with), run them as one batch; ``explain``: each prediction with its occlusion map
    (domain/explanations.py)."""
    loaded = cache.get(model_id)
    spec = loaded.manifest.input
    if spec.kind != "image":
        raise InvalidInput(
            f'Model {model_id!r} takes feature rows, not images: send {{"instances": [...]}} as application/json.'
        )
    if explain:
        check_budget("image", len(images))
    batch, statistics = decode_batch(images, spec, limits)
    predictions, elapsed_ms = loaded.classifier.predict(batch)
    flag_out_of_distribution(
        predictions, assess_summaries(loaded.manifest.ood, statistics, _probabilities(predictions))
    )
    if explain:
        _attach(predictions, occlusion_maps(loaded.classifier, batch, _classes(predictions)))
    return PredictionResult(
        model_id=model_id,
        version=loaded.pointer.version,
        predictions=predictions,
        inference_ms=elapsed_ms,
        inputs=statistics,
    )
