"""Read-only registry view over the model store (GET /models, GET /models/{model})."""

from __future__ import annotations

from .errors import IntegrityError, UnknownModel
from .manifest import Manifest, is_valid_model_id
from .ports import ModelReader


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

    def list_models(self) -> list[dict]:
        return [self.describe(model_id, include_versions=False) for model_id in self.store.list_model_ids()]

    def describe(self, model_id: str, include_versions: bool = True) -> dict:
        if not is_valid_model_id(model_id):
            raise UnknownModel(f"No model named {model_id!r}. GET /models lists the models.")
        versions = self.store.list_versions(model_id)
        pointer = self.store.read_pointer_or_none(model_id)
        if not versions and pointer is None:
            raise UnknownModel(f"No model named {model_id!r}. GET /models lists the models.")
        production = self._manifest(model_id, pointer.version) if pointer else None
        latest = production or (self._manifest(model_id, versions[-1]) if versions else None)
        view: dict = {
            "model": model_id,
            "production_version": pointer.version if pointer else None,
            "promoted_at": pointer.promoted_at.isoformat() if pointer else None,
            "previous_version": pointer.previous if pointer else None,
            "n_versions": len(versions),
        }
        if latest is not None:
            view.update(summary(latest))
        if include_versions:
            view["versions"] = []
            for version in reversed(versions):
                manifest = self._manifest(model_id, version)
                view["versions"].append(
                    {
                        "version": version,
                        "created_at": manifest.created_at.isoformat() if manifest else None,
                        "metrics": manifest.metrics if manifest else None,
                        "production": pointer is not None and pointer.version == version,
                    }
                )
        return view


def summary(manifest: Manifest) -> dict:
    return {
        "description": manifest.description,
        "task": manifest.task,
        "classes": manifest.classes,
        "input": manifest.input.model_dump(),
        "metrics": manifest.metrics,
        "estimator": manifest.estimator,
        "framework": manifest.framework,
        "converter": manifest.converter,
        "parity": manifest.parity,
        "quantization": _quantization_summary(manifest.quantization),
        "training_data": manifest.training_data.model_dump(),
        "mlflow": manifest.mlflow,
    }


def _quantization_summary(quantization: dict | None) -> dict | None:
    if not quantization:
        return None
    return {key: quantization.get(key) for key in ("scheme", "chosen", "reasons", "fp32", "int8")}
