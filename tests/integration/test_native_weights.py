"""Native weights published with a version (model.pt / model.weights.h5 next to model.onnx), with
the all-or-nothing guarantees model.onnx has, and read back only when their sha256 matches the
manifest's. The store does not look inside the file: any bytes stand in for the weights here."""

import dataclasses
import hashlib

import pytest
from pydantic import ValidationError

from med_classifier.domain.errors import IntegrityError
from med_classifier.domain.manifest import NativeWeights
from tests.helpers.models import breast_cancer_candidate, manifest_for, publish
from tests.integration.conftest import BUCKET
from training.candidate import NativeWeightsFile

WEIGHTS = b"state_dict bytes " * 64


def with_weights(data: bytes = WEIGHTS):
    return dataclasses.replace(breast_cancer_candidate(), native_weights=NativeWeightsFile("torch_state_dict", data))


def keys(s3):
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="models/").get("Contents", []))


def test_weights_are_published_next_to_the_model_with_their_hash_in_the_manifest(store, s3):
    manifest = publish(store, with_weights())
    v = manifest.version
    assert keys(s3) == [
        f"models/breast-cancer/{v}/manifest.json",
        f"models/breast-cancer/{v}/model.onnx",
        f"models/breast-cancer/{v}/model.pt",
        "models/breast-cancer/production.json",
    ]
    assert manifest.native_weights == NativeWeights(
        format="torch_state_dict", file="model.pt", sha256=hashlib.sha256(WEIGHTS).hexdigest(), size_bytes=len(WEIGHTS)
    )
    stored = store.read_manifest("breast-cancer", v)
    assert stored.native_weights == manifest.native_weights
    assert store.read_native_weights(stored) == WEIGHTS


def test_a_version_without_native_weights_reads_none(store):
    manifest = publish(store, breast_cancer_candidate())
    assert manifest.native_weights is None
    assert store.read_native_weights(store.read_manifest("breast-cancer", manifest.version)) is None


def test_tampered_weights_are_refused_with_both_hashes(store, s3):
    manifest = publish(store, with_weights())
    s3.put_object(Bucket=BUCKET, Key=f"models/breast-cancer/{manifest.version}/model.pt", Body=b"tampered")
    with pytest.raises(IntegrityError) as info:
        store.read_native_weights(manifest)
    tampered = hashlib.sha256(b"tampered").hexdigest()
    assert str(info.value) == (
        f"breast-cancer/{manifest.version}/model.pt sha256 {tampered[:12]}… (8 bytes) does not match the "
        f"manifest's {manifest.native_weights.sha256[:12]}… ({len(WEIGHTS)} bytes)"
    )


def test_missing_weights_are_refused(store, s3):
    manifest = publish(store, with_weights())
    s3.delete_object(Bucket=BUCKET, Key=f"models/breast-cancer/{manifest.version}/model.pt")
    with pytest.raises(IntegrityError) as info:
        store.read_native_weights(manifest)
    assert str(info.value) == f"breast-cancer/{manifest.version}/model.pt is missing"


@pytest.mark.parametrize(
    "case, message",
    [
        ("other_bytes", "manifest's native_weights sha256/size_bytes do not describe the weights bytes"),
        ("bytes_without_manifest_entry", "native weights and the manifest's native_weights must be given together"),
        ("manifest_entry_without_bytes", "native weights and the manifest's native_weights must be given together"),
    ],
)
def test_publish_refuses_weights_the_manifest_does_not_describe(store, s3, case, message):
    candidate = with_weights()
    manifest = manifest_for(candidate)
    if case == "other_bytes":
        manifest_arg, weights = manifest, WEIGHTS + b"x"
    elif case == "bytes_without_manifest_entry":
        manifest_arg, weights = manifest.model_copy(update={"native_weights": None}), WEIGHTS
    else:
        manifest_arg, weights = manifest, None
    with pytest.raises(IntegrityError) as info:
        store.publish(manifest_arg, candidate.onnx, native_weights=weights)
    assert str(info.value) == message
    assert keys(s3) == []


def test_a_publish_that_fails_after_the_weights_leaves_nothing(store, s3, monkeypatch):
    candidate = with_weights()
    manifest = manifest_for(candidate)
    real_put = s3.put_object
    written = []

    def failing_put(**kwargs):
        if kwargs["Key"].endswith("manifest.json"):
            raise ConnectionError("network dropped mid-publish")
        written.append(kwargs["Key"].rsplit("/", 1)[1])
        return real_put(**kwargs)

    monkeypatch.setattr(s3, "put_object", failing_put)
    with pytest.raises(ConnectionError):
        store.publish(manifest, candidate.onnx, native_weights=WEIGHTS)
    assert written == ["model.onnx", "model.pt"] and keys(s3) == []


def test_weights_that_do_not_read_back_intact_are_deleted_with_their_version_and_not_promoted(store, s3, monkeypatch):
    first = publish(store, with_weights())
    candidate = with_weights(WEIGHTS + b"second")
    manifest = manifest_for(candidate)
    real_put = s3.put_object

    def corrupting_put(**kwargs):  # storage that silently damages what it stores
        if kwargs["Key"].endswith("model.pt"):
            kwargs = {**kwargs, "Body": kwargs["Body"][:-1] + b"\x00", "ChecksumAlgorithm": "CRC32"}
        return real_put(**kwargs)

    monkeypatch.setattr(s3, "put_object", corrupting_put)
    with pytest.raises(IntegrityError, match="model.pt sha256 .* does not match the manifest's"):
        store.publish(manifest, candidate.onnx, native_weights=candidate.native_weights.data)
    assert manifest.version not in "".join(keys(s3))
    assert store.read_pointer("breast-cancer").version == first.version


def test_a_weights_file_name_must_be_its_formats():
    with pytest.raises(ValidationError, match="torch_state_dict weights are published as model.pt"):
        NativeWeights(format="torch_state_dict", file="model.weights.h5", sha256="0" * 64, size_bytes=1)
