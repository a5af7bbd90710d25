"""Read-only registry view over the model store (GET /models, GET /models/{model}).

Its results are typed, and they are the API's response bodies too: ModelSummary and
ModelView are the one definition of those shapes (the API documents and serializes them)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Annotated, Any, Literal, TypeVar

from pydantic import ConfigDict, Field

from .errors import IntegrityError, UnknownModel
from .manifest import (
    Calibration,
    ImageInput,
    Manifest,
    OperatingPoint,
    ProductionPointer,
    TabularInput,
    TrainingData,
    is_valid_model_id,
)
from .ports import ModelReader
from .retraining import RetrainingStatus

T = TypeVar("T")


def _is_none(value: object) -> bool:
    return value is None


# A key left out of the JSON (rather than null) when there is nothing to say.
Absent = Annotated[T | None, Field(exclude_if=_is_none)]
InputSpec = Annotated[TabularInput | ImageInput, Field(discriminator="kind")]
QUANTIZATION_KEYS = ("scheme", "chosen", "reasons", "fp32", "int8")


@dataclass(frozen=True, kw_only=True)
class ModelSummary:
    """One model: its production pointer and the summary of its production manifest (of its latest
    version when none is in production). The manifest's keys are left out only when no manifest
    of the model is readable."""

    # Every field not marked Absent is always in the JSON: the response schema requires it.
    __pydantic_config__ = ConfigDict(json_schema_serialization_defaults_required=True)

    model: str
    production_version: str | None
    promoted_at: str | None
    previous_version: str | None
    n_versions: int
    description: Absent[str] = None
    task: Absent[Literal["binary", "multiclass"]] = None
    classes: Absent[list[str]] = None
    input: Absent[InputSpec] = None
    metrics: Absent[dict[str, float]] = None
    estimator: Absent[str] = None
    framework: Absent[dict[str, str]] = None
    converter: Absent[dict[str, str]] = None
    parity: Absent[dict[str, float | int]] = None
    quantization: Annotated[
        dict[str, Any] | None,
        Field(description=f"The static INT8 variant: {', '.join(QUANTIZATION_KEYS)}; null when none was tried"),
    ] = None
    training_data: Absent[TrainingData] = None
    mlflow: Absent[dict[str, str | None]] = None
    # What the page charts: the gate's thresholds (min_/max_ + metric name, and passed), the
    # decision threshold of a binary model and its calibration (absent in versions without them).
    gate: Absent[dict[str, float | bool | str]] = None
    operating_point: Absent[OperatingPoint] = None
    calibration: Absent[Calibration] = None


@dataclass(frozen=True)
class VersionEntry:
    version: str
    created_at: Annotated[str | None, Field(description="null when the version's manifest is unreadable")]
    metrics: dict[str, float] | None
    production: bool


@dataclass(frozen=True, kw_only=True)
class ModelView(ModelSummary):
    """One model with every version (newest first) and, for image models, its upload counter and
    recent retraining jobs."""

    versions: list[VersionEntry]
    retraining: Absent[RetrainingStatus] = None


class RegistryView:
    def __init__(self, store: ModelReader):
        self.store = store
        self._manifests: dict[tuple[str, str], Manifest] = {}  # versions are immutable

    def _manifest(self, model_id: str, version: str) -> Manifest | None:
        key = (model_id, version)
        if key not in self._manifests:
            try:
                self._manifests[key] = self.store.read_manifest(model_id, version)
            except IntegrityError:
                return None
        return self._manifests[key]

    def production_manifest(self, model_id: str) -> Manifest:
        """The manifest of the version in production (no ONNX is read)."""
        pointer = self.store.read_pointer_or_none(model_id) if is_valid_model_id(model_id) else None
        manifest = self._manifest(model_id, pointer.version) if pointer else None
        if manifest is None:
            raise UnknownModel(f"No model named {model_id!r} in production. GET /models lists the models.")
        return manifest

    def list_models(self) -> list[ModelSummary]:
        return [self._summary(model_id, *self._published(model_id)) for model_id in self.store.list_model_ids()]

    def describe(self, model_id: str) -> ModelView:
        pointer, versions = self._published(model_id)
        summary = self._summary(model_id, pointer, versions)
        entries = []
        for version in reversed(versions):
            manifest = self._manifest(model_id, version)
            entries.append(
                VersionEntry(
                    version=version,
                    created_at=manifest.created_at.isoformat() if manifest else None,
                    metrics=manifest.metrics if manifest else None,
                    production=pointer is not None and pointer.version == version,
                )
            )
        return ModelView(**{f.name: getattr(summary, f.name) for f in fields(summary)}, versions=entries)

    def _published(self, model_id: str) -> tuple[ProductionPointer | None, list[str]]:
        if not is_valid_model_id(model_id):
            raise UnknownModel(f"No model named {model_id!r}. GET /models lists the models.")
        versions = self.store.list_versions(model_id)
        pointer = self.store.read_pointer_or_none(model_id)
        if not versions and pointer is None:
            raise UnknownModel(f"No model named {model_id!r}. GET /models lists the models.")
        return pointer, versions

    def _summary(self, model_id: str, pointer: ProductionPointer | None, versions: list[str]) -> ModelSummary:
        production = self._manifest(model_id, pointer.version) if pointer else None
        latest = production or (self._manifest(model_id, versions[-1]) if versions else None)
        return ModelSummary(
            model=model_id,
            production_version=pointer.version if pointer else None,
            promoted_at=pointer.promoted_at.isoformat() if pointer else None,
            previous_version=pointer.previous if pointer else None,
            n_versions=len(versions),
            **(summary(latest) if latest is not None else {}),
        )


def summary(manifest: Manifest) -> dict:
    """The manifest's part of a ModelSummary."""
    return {
        "description": manifest.description,
        "task": manifest.task,
        "classes": manifest.classes,
        "input": manifest.input,
        "metrics": manifest.metrics,
        "estimator": manifest.estimator,
        "framework": manifest.framework,
        "converter": manifest.converter,
        "parity": manifest.parity,
        "quantization": _quantization_summary(manifest.quantization),
        "training_data": manifest.training_data,
        "mlflow": manifest.mlflow,
        "gate": manifest.gate,
        "operating_point": manifest.operating_point,
        "calibration": manifest.calibration,
    }


def _quantization_summary(quantization: dict | None) -> dict | None:
    if not quantization:
        return None
    return {key: quantization.get(key) for key in QUANTIZATION_KEYS}
