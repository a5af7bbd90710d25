"""Hot swap and refusal of broken versions, with an in-memory store and a fake clock."""

from dataclasses import dataclass

import numpy as np
import pytest

from med_classifier.errors import IntegrityError, ModelUnavailable, UnknownModel
from med_classifier.manifest import ProductionPointer
from med_classifier.model_store import ModelVersion
from med_classifier.serving import ModelCache, predict_rows
from tests.helpers.models import MALIGNANT_EXAMPLE, breast_cancer_candidate, manifest_for


@dataclass
class MemoryStore:
    """Stands in for ModelStore: the cache only needs these three reads."""

    versions: dict
    pointer: ProductionPointer | None = None
    pointer_error: Exception | None = None

    def read_pointer(self, model_id):
        if self.pointer_error:
            raise self.pointer_error
        return self.pointer

    def read_version(self, model_id, version, expected_sha256=None):
        manifest, onnx = self.versions[version]
        if expected_sha256 and expected_sha256 != manifest.onnx_sha256:
            raise IntegrityError("sha mismatch")
        return ModelVersion(manifest=manifest, onnx=onnx)

    def list_versions(self, model_id):
        return sorted(self.versions)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def pointer_to(manifest):
    return ProductionPointer(version=manifest.version, sha256=manifest.onnx_sha256,
                             promoted_at="2026-01-01T00:00:00Z")


@pytest.fixture
def two_versions():
    candidate = breast_cancer_candidate()
    first, second = manifest_for(candidate), manifest_for(candidate)
    return {first.version: (first, candidate.onnx), second.version: (second, candidate.onnx)}, first, second


def test_new_version_is_swapped_in_only_after_the_refresh_interval(two_versions):
    versions, first, second = two_versions
    store, clock = MemoryStore(versions, pointer_to(first)), Clock()
    cache = ModelCache(store, refresh_seconds=30, clock=clock)
    assert cache.get("breast-cancer").pointer.version == first.version
    store.pointer = pointer_to(second)
    clock.now = 29
    assert cache.get("breast-cancer").pointer.version == first.version  # cached
    clock.now = 31
    assert cache.get("breast-cancer").pointer.version == second.version  # hot swap


def test_broken_version_is_refused_and_current_keeps_serving(two_versions):
    versions, first, second = two_versions
    store, clock = MemoryStore(versions, pointer_to(first)), Clock()
    cache = ModelCache(store, refresh_seconds=0, clock=clock)
    cache.get("breast-cancer")
    versions[second.version] = (second, b"not an onnx graph")
    store.pointer = pointer_to(second)
    served = cache.get("breast-cancer")
    assert served.pointer.version == first.version
    assert second.version in cache.status()["breast-cancer"]["refused"]
    result = predict_rows(cache, "breast-cancer", [MALIGNANT_EXAMPLE], max_rows=10)
    assert result.version == first.version and result.predictions[0].label == "malignant"


def test_unreadable_pointer_or_unreachable_store_keeps_current(two_versions):
    versions, first, _ = two_versions
    store = MemoryStore(versions, pointer_to(first))
    cache = ModelCache(store, refresh_seconds=0)
    cache.get("breast-cancer")
    store.pointer_error = IntegrityError("production.json is not JSON")
    assert cache.get("breast-cancer").pointer.version == first.version
    store.pointer_error = ConnectionError("S3 unreachable")
    assert cache.get("breast-cancer").pointer.version == first.version


def test_cold_container_with_only_a_broken_version_answers_503(two_versions):
    versions, first, _ = two_versions
    versions[first.version] = (first, b"\x00garbage")
    cache = ModelCache(MemoryStore(versions, pointer_to(first)), refresh_seconds=0)
    with pytest.raises(ModelUnavailable) as info:
        cache.get("breast-cancer")
    assert info.value.status_code == 503 and first.version in info.value.message


def test_unknown_and_unsafe_model_ids_are_404():
    cache = ModelCache(MemoryStore({}, None), refresh_seconds=0)
    for model_id in ("no-such-model", "../../etc/passwd"):
        with pytest.raises(UnknownModel):
            cache.get(model_id)


def test_versions_without_a_pointer_are_503_not_404(two_versions):
    versions, _, _ = two_versions
    with pytest.raises(ModelUnavailable, match="none is promoted"):
        ModelCache(MemoryStore(versions, None), refresh_seconds=0).get("breast-cancer")


def test_prediction_shape_and_probabilities(two_versions):
    versions, first, _ = two_versions
    cache = ModelCache(MemoryStore(versions, pointer_to(first)), refresh_seconds=60)
    result = predict_rows(cache, "breast-cancer", [MALIGNANT_EXAMPLE, MALIGNANT_EXAMPLE], max_rows=10)
    assert len(result.predictions) == 2
    p = result.predictions[0]
    assert p.label == "malignant" and p.class_index == 0
    assert set(p.probabilities) == {"malignant", "benign"}
    assert np.isclose(sum(p.probabilities.values()), 1.0) and p.confidence == max(p.probabilities.values())
