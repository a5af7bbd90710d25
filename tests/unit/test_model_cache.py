"""Hot swap and refusal of broken versions, with an in-memory store and a fake clock."""

import logging

import numpy as np
import pytest

from med_classifier.domain.errors import (
    IntegrityError,
    InvalidInput,
    ModelUnavailable,
    UnknownModel,
    UnsupportedMediaType,
)
from med_classifier.domain.manifest import ProductionPointer
from med_classifier.domain.serving import REFUSED_POINTER, REFUSED_VERSION, ModelCache, predict_images, predict_rows
from tests.helpers.fakes import MemoryStore
from tests.helpers.image_models import colour_candidate, image_bytes
from tests.helpers.models import MALIGNANT_EXAMPLE, breast_cancer_candidate, manifest_for


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def pointer_to(manifest):
    return ProductionPointer(version=manifest.version, sha256=manifest.onnx_sha256, promoted_at="2026-01-01T00:00:00Z")


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
    assert result.version == first.version and result.predictions[0]["label"] == "malignant"


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
    assert p["label"] == "malignant" and p["class_index"] == 0
    assert set(p["probabilities"]) == {"malignant", "benign"}
    assert np.isclose(sum(p["probabilities"].values()), 1.0) and p["confidence"] == max(p["probabilities"].values())


# --- each guard on its own ----------------------------------------------------------------


def test_the_pointer_is_reread_once_the_interval_has_passed_exactly(two_versions):
    versions, first, second = two_versions
    store, clock = MemoryStore(versions, pointer_to(first)), Clock()
    cache = ModelCache(store, refresh_seconds=30, clock=clock)
    cache.get("breast-cancer")
    store.pointer = pointer_to(second)
    clock.now = 29.999
    assert cache.get("breast-cancer").pointer.version == first.version
    clock.now = 30.0
    assert cache.get("breast-cancer").pointer.version == second.version


def test_the_interval_counts_from_the_last_check_not_the_first_load(two_versions):
    versions, first, second = two_versions
    store, clock = MemoryStore(versions, pointer_to(first)), Clock()
    cache = ModelCache(store, refresh_seconds=10, clock=clock)
    cache.get("breast-cancer")
    clock.now = 15
    cache.get("breast-cancer")  # checked again at 15: nothing new
    store.pointer = pointer_to(second)
    clock.now = 24
    assert cache.get("breast-cancer").pointer.version == first.version
    clock.now = 25
    assert cache.get("breast-cancer").pointer.version == second.version


def test_a_pointer_with_a_new_hash_for_the_same_version_is_reloaded_and_checked(two_versions):
    versions, first, _ = two_versions
    store = MemoryStore(versions, pointer_to(first))
    cache = ModelCache(store, refresh_seconds=0)
    cache.get("breast-cancer")
    store.pointer = ProductionPointer(version=first.version, sha256="f" * 64, promoted_at="2026-01-02T00:00:00Z")
    assert cache.get("breast-cancer").pointer.sha256 == first.onnx_sha256  # the mismatch was refused
    assert cache.status()["breast-cancer"]["refused"] == {first.version: REFUSED_VERSION}


def test_a_refused_version_that_is_fixed_loads_and_is_no_longer_listed(two_versions):
    versions, first, second = two_versions
    good = versions[second.version]
    store = MemoryStore(versions, pointer_to(first))
    cache = ModelCache(store, refresh_seconds=0)
    cache.get("breast-cancer")
    versions[second.version] = (second, b"not onnx")
    store.pointer = pointer_to(second)
    cache.get("breast-cancer")
    assert second.version in cache.status()["breast-cancer"]["refused"]
    versions[second.version] = good
    assert cache.get("breast-cancer").pointer.version == second.version
    assert cache.status()["breast-cancer"]["refused"] == {}


def test_an_unreadable_pointer_is_listed_until_a_readable_one_returns(two_versions):
    versions, first, _ = two_versions
    store = MemoryStore(versions, pointer_to(first))
    cache = ModelCache(store, refresh_seconds=0)
    cache.get("breast-cancer")
    store.pointer_error = IntegrityError("breast-cancer: production.json is not a valid pointer: x")
    cache.get("breast-cancer")
    # Callers get a fixed sentence; the check's own words are in the logs.
    assert cache.status()["breast-cancer"]["refused"] == {"production.json": REFUSED_POINTER}
    assert REFUSED_POINTER == "production.json is not a valid pointer; the details are in the logs."
    store.pointer_error = None
    cache.get("breast-cancer")
    assert cache.status()["breast-cancer"]["refused"] == {}


def test_a_cold_container_with_an_unreadable_pointer_answers_503_with_the_reason(two_versions):
    versions, first, _ = two_versions
    store = MemoryStore(versions, pointer_error=IntegrityError("s3://secret-bucket/production.json is not JSON"))
    with pytest.raises(ModelUnavailable) as info:
        ModelCache(store, refresh_seconds=0).get("breast-cancer")
    assert info.value.message == (
        "Model 'breast-cancer' has no loadable version (production.json: production.json is not a valid pointer; "
        "the details are in the logs.)."
    )


def test_a_cold_container_that_cannot_reach_the_store_answers_503():
    store = MemoryStore({}, pointer_error=ConnectionError("S3 unreachable"))
    with pytest.raises(ModelUnavailable) as info:
        ModelCache(store, refresh_seconds=0).get("breast-cancer")
    assert info.value.message == "Model store unreachable for 'breast-cancer'."
    assert isinstance(info.value.__cause__, ConnectionError)


def test_a_deleted_pointer_keeps_the_loaded_version_serving(two_versions):
    versions, first, _ = two_versions
    store = MemoryStore(versions, pointer_to(first))
    cache = ModelCache(store, refresh_seconds=0)
    cache.get("breast-cancer")
    store.pointer = None
    assert cache.get("breast-cancer").pointer.version == first.version


def test_an_unknown_model_is_404_and_not_kept_in_the_status():
    cache = ModelCache(MemoryStore({}, None), refresh_seconds=0)
    with pytest.raises(UnknownModel) as info:
        cache.get("no-such-model")
    assert info.value.message == "No model named 'no-such-model'. GET /models lists the models."
    with pytest.raises(UnknownModel) as info:
        cache.get("../etc")
    assert info.value.message == "No model named '../etc'. GET /models lists the models."
    assert cache.status() == {}


def test_the_status_says_what_is_loaded(two_versions, monkeypatch):
    versions, first, _ = two_versions
    monkeypatch.setattr("med_classifier.domain.serving.time.time", lambda: 1700000000.0)
    cache = ModelCache(MemoryStore(versions, pointer_to(first)), refresh_seconds=60)
    loaded = cache.get("breast-cancer")
    status = cache.status()["breast-cancer"]
    assert status == {
        "version": first.version,
        "load_ms": round(loaded.load_ms, 1),
        "loaded_at": 1700000000.0,
        "refused": {},
    }
    assert loaded.load_ms > 0 and loaded.manifest == first


def test_rows_for_an_image_model_and_images_for_a_tabular_model_are_refused():
    candidate = colour_candidate("colour-test")
    image_manifest = manifest_for(candidate)
    tabular = breast_cancer_candidate()
    tabular_manifest = manifest_for(tabular)
    store = MemoryStore(
        {
            image_manifest.version: (image_manifest, candidate.onnx),
            tabular_manifest.version: (tabular_manifest, tabular.onnx),
        }
    )
    cache = ModelCache(store, refresh_seconds=60)
    store.pointer = pointer_to(image_manifest)
    with pytest.raises(InvalidInput) as info:
        predict_rows(cache, "colour-test", [[1.0]], max_rows=10)
    assert info.value.message == "Model 'colour-test' takes images, not feature rows."
    cache = ModelCache(store, refresh_seconds=60)
    store.pointer = pointer_to(tabular_manifest)
    with pytest.raises(InvalidInput) as info:
        predict_images(cache, "breast-cancer", [image_bytes("red")])
    assert info.value.message == (
        "Model 'breast-cancer' takes feature rows, not images: send {\"instances\": [...]} as application/json."
    )


@pytest.fixture
def colour_cache():
    candidate = colour_candidate("colour-test")
    manifest = manifest_for(candidate)
    return ModelCache(MemoryStore({manifest.version: (manifest, candidate.onnx)}, pointer_to(manifest)), 60), manifest


def test_images_are_predicted_as_one_batch_in_order(colour_cache):
    cache, manifest = colour_cache
    result = predict_images(cache, "colour-test", [image_bytes("blue"), image_bytes("red"), image_bytes("green")])
    assert [p["label"] for p in result.predictions] == ["blue", "red", "green"]
    assert (result.model_id, result.version) == ("colour-test", manifest.version) and result.inference_ms > 0


def test_a_bad_image_in_a_batch_is_named_by_its_index_with_its_status(colour_cache):
    cache, _ = colour_cache
    with pytest.raises(UnsupportedMediaType) as info:
        predict_images(cache, "colour-test", [image_bytes("red"), b"GIF89a not ours"])
    assert (info.value.message, info.value.status_code) == ("images[1]: Not a JPEG or PNG image.", 415)
    with pytest.raises(UnsupportedMediaType) as info:
        predict_images(cache, "colour-test", [b"GIF89a not ours"])
    assert info.value.message == "Not a JPEG or PNG image."


class SlowStore(MemoryStore):
    """Reading a version takes 12.34 ms on the cache's clock."""

    clock: Clock = None

    def read_version(self, model_id, version, expected_sha256=None):
        self.clock.now += 0.01234
        return super().read_version(model_id, version, expected_sha256)


def test_load_time_is_measured_on_the_cache_clock_and_logged(two_versions, caplog):
    versions, first, _ = two_versions
    clock = Clock()
    clock.now = 100.0
    store = SlowStore(versions, pointer_to(first))
    store.clock = clock
    cache = ModelCache(store, refresh_seconds=60, clock=clock)
    with caplog.at_level(logging.INFO, logger="med_classifier.domain.serving"):
        loaded = cache.get("breast-cancer")
    assert loaded.load_ms == pytest.approx(12.34)
    assert cache.status()["breast-cancer"]["load_ms"] == 12.3
    (record,) = [r for r in caplog.records if r.getMessage() == "model loaded"]
    assert (record.model, record.version, record.load_ms) == ("breast-cancer", first.version, 12.3)


def test_a_refused_version_is_logged_with_what_keeps_serving(two_versions, caplog):
    versions, first, second = two_versions
    store = MemoryStore(versions, pointer_to(first))
    cache = ModelCache(store, refresh_seconds=0)
    cache.get("breast-cancer")
    versions[second.version] = (second, b"not onnx")
    store.pointer = pointer_to(second)
    with caplog.at_level(logging.ERROR, logger="med_classifier.domain.serving"):
        cache.get("breast-cancer")
    (record,) = [r for r in caplog.records if r.getMessage() == "refusing broken model version"]
    assert (record.model, record.version, record.serving) == ("breast-cancer", second.version, first.version)
    assert record.error.startswith(f"breast-cancer/{second.version}: ONNX model does not load: ")
    assert cache.status()["breast-cancer"]["refused"][second.version] == REFUSED_VERSION
    assert REFUSED_VERSION == "failed its integrity checks (hash, manifest or ONNX); the details are in the logs."


def test_a_bad_image_in_a_batch_keeps_its_details(colour_cache, monkeypatch):
    cache, _ = colour_cache

    def refuse(data, spec, pixel_limit):
        raise InvalidInput("The image is too dark.", details=[{"mean_brightness": 0.01}])

    monkeypatch.setattr("med_classifier.domain.preprocessing.open_image", refuse)
    with pytest.raises(InvalidInput) as info:
        predict_images(cache, "colour-test", [b"a", b"b"])
    assert (info.value.message, info.value.details) == (
        "images[0]: The image is too dark.",
        [{"mean_brightness": 0.01}],
    )


def test_every_refused_version_is_named_in_the_503(two_versions):
    versions, first, second = two_versions
    versions[first.version] = (first, b"broken one")
    versions[second.version] = (second, b"broken two")
    store = MemoryStore(versions, pointer_to(first))
    cache = ModelCache(store, refresh_seconds=0)
    with pytest.raises(ModelUnavailable):
        cache.get("breast-cancer")
    store.pointer = pointer_to(second)
    with pytest.raises(ModelUnavailable) as info:
        cache.get("breast-cancer")
    refused = cache.status()["breast-cancer"]["refused"]
    assert info.value.message == (
        f"Model 'breast-cancer' has no loadable version ({first.version}: "
        f"{refused[first.version]}; {second.version}: {refused[second.version]})."
    )
    assert cache.status()["breast-cancer"] | {"refused": None} == {
        "version": None,
        "load_ms": None,
        "loaded_at": None,
        "refused": None,
    }


def test_pointer_problems_are_logged_with_the_model_and_the_error(two_versions, caplog):
    versions, first, _ = two_versions
    store = MemoryStore(versions, pointer_to(first))
    cache = ModelCache(store, refresh_seconds=0)
    cache.get("breast-cancer")
    store.pointer_error = IntegrityError("production.json is not JSON")
    with caplog.at_level(logging.WARNING, logger="med_classifier.domain.serving"):
        cache.get("breast-cancer")
        store.pointer_error = ConnectionError("S3 unreachable")
        cache.get("breast-cancer")
    unreadable, unreachable = caplog.records
    assert (unreadable.levelname, unreadable.getMessage(), unreadable.model, unreadable.error) == (
        "ERROR",
        "unreadable production pointer, keeping current version",
        "breast-cancer",
        "production.json is not JSON",
    )
    assert (unreachable.levelname, unreachable.getMessage(), unreachable.model, unreachable.error) == (
        "WARNING",
        "pointer refresh failed, keeping current version",
        "breast-cancer",
        "S3 unreachable",
    )
