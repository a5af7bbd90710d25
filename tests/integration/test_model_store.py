"""Publish → load → predict against moto's S3, and what happens when artefacts are broken."""

import json

import pytest

from med_classifier.errors import IntegrityError
from med_classifier.serving import ModelCache, predict_rows
from tests.helpers.models import MALIGNANT_EXAMPLE, breast_cancer_candidate, manifest_for, publish
from tests.integration.conftest import BUCKET


def keys(s3, prefix="models/"):
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def test_publish_writes_the_documented_layout_and_serves(store, s3):
    manifest = publish(store, breast_cancer_candidate())
    v = manifest.version
    assert keys(s3) == [f"models/breast-cancer/{v}/manifest.json", f"models/breast-cancer/{v}/model.onnx",
                        "models/breast-cancer/production.json"]
    pointer = json.loads(s3.get_object(Bucket=BUCKET, Key="models/breast-cancer/production.json")["Body"].read())
    assert pointer["version"] == v and pointer["sha256"] == manifest.onnx_sha256 and pointer["previous"] is None
    assert {"version", "sha256", "promoted_at", "previous"} == set(pointer)
    result = predict_rows(ModelCache(store, 60), "breast-cancer", [MALIGNANT_EXAMPLE], max_rows=10)
    assert result.version == v and result.predictions[0].label == "malignant"


def test_second_publish_records_previous_and_hot_swaps(store):
    first = publish(store, breast_cancer_candidate())
    cache = ModelCache(store, refresh_seconds=0)
    assert cache.get("breast-cancer").pointer.version == first.version
    second = publish(store, breast_cancer_candidate())
    assert store.read_pointer("breast-cancer").previous == first.version
    assert cache.get("breast-cancer").pointer.version == second.version


@pytest.mark.parametrize("breakage", ["corrupt_onnx", "missing_onnx", "pointer_hash", "bad_manifest"])
def test_broken_new_version_is_refused_while_the_old_one_serves(store, s3, breakage):
    good = publish(store, breast_cancer_candidate())
    cache = ModelCache(store, refresh_seconds=0)
    cache.get("breast-cancer")
    bad = publish(store, breast_cancer_candidate())
    prefix = f"models/breast-cancer/{bad.version}/"
    if breakage == "corrupt_onnx":
        s3.put_object(Bucket=BUCKET, Key=prefix + "model.onnx", Body=b"tampered")
    elif breakage == "missing_onnx":
        s3.delete_object(Bucket=BUCKET, Key=prefix + "model.onnx")
    elif breakage == "pointer_hash":
        pointer = json.loads(s3.get_object(Bucket=BUCKET, Key="models/breast-cancer/production.json")["Body"].read())
        pointer["sha256"] = "0" * 64
        s3.put_object(Bucket=BUCKET, Key="models/breast-cancer/production.json", Body=json.dumps(pointer))
    else:
        s3.put_object(Bucket=BUCKET, Key=prefix + "manifest.json", Body=b"{not json")
    loaded = cache.get("breast-cancer")
    assert loaded.pointer.version == good.version
    assert bad.version in cache.status()["breast-cancer"]["refused"]


def test_failed_publish_leaves_no_partial_version(store, s3, monkeypatch):
    candidate = breast_cancer_candidate()
    manifest = manifest_for(candidate)
    real_put = s3.put_object

    def failing_put(**kwargs):
        if kwargs["Key"].endswith("manifest.json"):
            raise ConnectionError("network dropped mid-publish")
        return real_put(**kwargs)

    monkeypatch.setattr(s3, "put_object", failing_put)
    with pytest.raises(ConnectionError):
        store.publish(manifest, candidate.onnx)
    assert keys(s3) == []


def test_publish_refuses_mismatched_bytes_and_existing_versions(store, s3):
    candidate = breast_cancer_candidate()
    manifest = manifest_for(candidate)
    with pytest.raises(IntegrityError, match="do not describe"):
        store.publish(manifest, candidate.onnx + b"x")
    assert keys(s3) == []
    store.publish(manifest, candidate.onnx)
    with pytest.raises(IntegrityError, match="immutable"):
        store.publish(manifest, candidate.onnx)


def test_registry_lists_complete_versions_only(store, s3):
    manifest = publish(store, breast_cancer_candidate())
    s3.put_object(Bucket=BUCKET, Key="models/breast-cancer/20990101T000000Z-deadbeef/model.onnx", Body=b"half")
    assert store.list_versions("breast-cancer") == [manifest.version]
    assert store.list_model_ids() == ["breast-cancer"]
