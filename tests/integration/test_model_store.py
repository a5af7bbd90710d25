"""Publish → load → predict against moto's S3, and what happens when artefacts are broken."""

import base64
import hashlib
import json
from datetime import timedelta

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from med_classifier.adapters.model_store import ModelStore
from med_classifier.domain.errors import IntegrityError
from med_classifier.domain.serving import ModelCache, predict_rows
from tests.helpers.models import MALIGNANT_EXAMPLE, breast_cancer_candidate, manifest_for, publish
from tests.integration.conftest import BUCKET


def keys(s3, prefix="models/"):
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def test_publish_writes_the_documented_layout_and_serves(store, s3):
    manifest = publish(store, breast_cancer_candidate())
    v = manifest.version
    assert keys(s3) == [
        f"models/breast-cancer/{v}/manifest.json",
        f"models/breast-cancer/{v}/model.onnx",
        "models/breast-cancer/production.json",
    ]
    pointer = json.loads(s3.get_object(Bucket=BUCKET, Key="models/breast-cancer/production.json")["Body"].read())
    assert pointer["version"] == v and pointer["sha256"] == manifest.onnx_sha256 and pointer["previous"] is None
    assert {"version", "sha256", "promoted_at", "previous"} == set(pointer)
    result = predict_rows(ModelCache(store, 60), "breast-cancer", [MALIGNANT_EXAMPLE], max_rows=10)
    assert result.version == v and result.predictions[0]["label"] == "malignant"


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


# --- each guard on its own ----------------------------------------------------------------


def put(s3, key, body):
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)


def test_an_onnx_file_that_does_not_match_its_manifest_is_refused(store, s3):
    manifest = publish(store, breast_cancer_candidate())
    put(s3, f"models/breast-cancer/{manifest.version}/model.onnx", b"tampered")
    with pytest.raises(IntegrityError) as info:
        store.read_version("breast-cancer", manifest.version)  # no pointer hash to compare with
    tampered = hashlib.sha256(b"tampered").hexdigest()
    assert str(info.value) == (
        f"breast-cancer/{manifest.version}: model.onnx sha256 {tampered[:12]}… does not "
        f"match the manifest's {manifest.onnx_sha256[:12]}…"
    )


def test_a_pointer_hash_that_does_not_match_the_onnx_file_is_refused(store):
    manifest = publish(store, breast_cancer_candidate())
    with pytest.raises(IntegrityError) as info:
        store.read_version("breast-cancer", manifest.version, expected_sha256="ab" * 32)
    assert str(info.value) == (
        f"breast-cancer/{manifest.version}: production.json expects sha256 abababababab…, "
        f"model.onnx has {manifest.onnx_sha256[:12]}…"
    )
    assert store.read_version("breast-cancer", manifest.version, expected_sha256=manifest.onnx_sha256).onnx


def test_missing_files_are_named(store, s3):
    manifest = publish(store, breast_cancer_candidate())
    s3.delete_object(Bucket=BUCKET, Key=f"models/breast-cancer/{manifest.version}/model.onnx")
    with pytest.raises(IntegrityError, match=rf"^breast-cancer/{manifest.version}: model.onnx is missing$"):
        store.read_version("breast-cancer", manifest.version)
    with pytest.raises(IntegrityError, match=r"^breast-cancer/20990101T000000Z-00000000: manifest.json is missing$"):
        store.read_manifest("breast-cancer", "20990101T000000Z-00000000")


def test_a_manifest_that_names_another_model_or_version_is_refused(store, s3):
    manifest = publish(store, breast_cancer_candidate())
    moved = "20990101T000000Z-0badc0de"
    put(s3, f"models/breast-cancer/{moved}/manifest.json", manifest.model_dump_json())
    with pytest.raises(IntegrityError) as info:
        store.read_manifest("breast-cancer", moved)
    assert str(info.value) == f"breast-cancer/{moved}: manifest names breast-cancer/{manifest.version}"
    put(s3, f"models/other-model/{manifest.version}/manifest.json", manifest.model_dump_json())
    with pytest.raises(IntegrityError, match=rf"^other-model/{manifest.version}: manifest names breast-cancer/"):
        store.read_manifest("other-model", manifest.version)


def test_an_invalid_manifest_is_an_integrity_error_not_a_validation_error(store, s3):
    put(s3, "models/breast-cancer/20990101T000000Z-00000000/manifest.json", b'{"model_id": "breast-cancer"}')
    with pytest.raises(IntegrityError, match=r"^breast-cancer/20990101T000000Z-00000000: manifest.json is invalid: "):
        store.read_manifest("breast-cancer", "20990101T000000Z-00000000")


@pytest.mark.parametrize("body", [b"{not json", b'{"version": "latest"}', b"[]"])
def test_a_corrupt_pointer_is_an_integrity_error(store, s3, body):
    put(s3, "models/breast-cancer/production.json", body)
    with pytest.raises(IntegrityError, match=r"^breast-cancer: production.json is not a valid pointer: "):
        store.read_pointer("breast-cancer")
    assert store.read_pointer_or_none("breast-cancer") is None


def test_promotion_over_a_corrupt_pointer_replaces_it(store, s3):
    manifest = publish(store, breast_cancer_candidate(), promote=False)
    put(s3, "models/breast-cancer/production.json", b"{not json")
    pointer = store.promote("breast-cancer", manifest.version)
    assert (pointer.version, pointer.previous) == (manifest.version, None)
    assert store.read_pointer("breast-cancer") == pointer


def test_no_pointer_is_none(store):
    assert store.read_pointer("breast-cancer") is None


def test_publish_without_promote_leaves_production_alone(store):
    first = publish(store, breast_cancer_candidate())
    candidate = breast_cancer_candidate()
    second = manifest_for(candidate)
    assert store.publish(second, candidate.onnx, promote=False) is None
    assert store.read_pointer("breast-cancer").version == first.version
    assert store.list_versions("breast-cancer") == sorted([first.version, second.version])


def test_publish_promotes_by_default_and_returns_the_pointer(store):
    candidate = breast_cancer_candidate()
    manifest = manifest_for(candidate)
    pointer = store.publish(manifest, candidate.onnx)
    assert (pointer.version, pointer.sha256, pointer.previous) == (manifest.version, manifest.onnx_sha256, None)
    assert store.read_pointer("breast-cancer") == pointer


def test_publish_refuses_a_manifest_whose_size_is_wrong(store, s3):
    candidate = breast_cancer_candidate()
    manifest = manifest_for(candidate).model_copy(update={"onnx_bytes": len(candidate.onnx) + 1})
    with pytest.raises(IntegrityError, match="^manifest's onnx_sha256/onnx_bytes do not describe the model bytes$"):
        store.publish(manifest, candidate.onnx)
    assert keys(s3) == []


def test_publish_refuses_a_version_whose_model_file_alone_exists(store, s3):
    candidate = breast_cancer_candidate()
    manifest = manifest_for(candidate)
    put(s3, f"models/breast-cancer/{manifest.version}/model.onnx", candidate.onnx)
    with pytest.raises(IntegrityError) as info:
        store.publish(manifest, candidate.onnx)
    assert str(info.value) == f"breast-cancer/{manifest.version} already exists: versions are immutable"
    assert keys(s3) == [f"models/breast-cancer/{manifest.version}/model.onnx"]  # left as it was


def test_a_version_that_does_not_read_back_intact_is_deleted_and_not_promoted(store, s3, monkeypatch):
    first = publish(store, breast_cancer_candidate())
    candidate = breast_cancer_candidate()
    manifest = manifest_for(candidate)
    real_put = s3.put_object

    def corrupting_put(**kwargs):  # storage that silently damages what it stores
        if kwargs["Key"].endswith("model.onnx"):
            kwargs = {**kwargs, "Body": kwargs["Body"][:-1] + b"\x00", "ChecksumAlgorithm": "CRC32"}
        return real_put(**kwargs)

    monkeypatch.setattr(s3, "put_object", corrupting_put)
    with pytest.raises(IntegrityError, match="does not match the manifest's"):
        store.publish(manifest, candidate.onnx)
    assert manifest.version not in "".join(keys(s3))
    assert store.read_pointer("breast-cancer").version == first.version


def test_a_version_with_a_broken_model_is_never_promoted(store, s3):
    first = publish(store, breast_cancer_candidate())
    second = publish(store, breast_cancer_candidate(), promote=False)
    put(s3, f"models/breast-cancer/{second.version}/model.onnx", b"broken")
    with pytest.raises(IntegrityError, match="does not match the manifest's"):
        store.promote("breast-cancer", second.version)
    assert store.read_pointer("breast-cancer").version == first.version


def test_promoting_records_the_previous_version_but_never_itself(store):
    first = publish(store, breast_cancer_candidate())
    second = publish(store, breast_cancer_candidate())
    assert store.read_pointer("breast-cancer").previous == first.version
    again = store.promote("breast-cancer", second.version)
    assert (again.version, again.previous) == (second.version, None)
    back = store.promote("breast-cancer", first.version)
    assert (back.version, back.previous) == (first.version, second.version)


def test_versions_are_listed_oldest_first_and_models_by_name(store, s3):
    candidate = breast_cancer_candidate()
    versions = ["20260103T000000Z-0000000c", "20260101T000000Z-0000000a", "20260102T000000Z-0000000b"]
    for version in versions:
        store.publish(manifest_for(candidate, version), candidate.onnx, promote=False)
    assert store.list_versions("breast-cancer") == sorted(versions)
    put(s3, "models/another-model/20260101T000000Z-0000000a/manifest.json", b"{}")
    assert store.list_model_ids() == ["another-model", "breast-cancer"]


def test_listing_follows_every_page():
    store, stubber = stubbed_store()  # S3 lists at most 1,000 prefixes a page
    stubber.add_response(
        "list_objects_v2",
        {"CommonPrefixes": [{"Prefix": "models/zeta/"}], "IsTruncated": True, "NextContinuationToken": "page-2"},
        {"Bucket": BUCKET, "Prefix": "models/", "Delimiter": "/"},
    )
    stubber.add_response(
        "list_objects_v2",
        {"CommonPrefixes": [{"Prefix": "models/alpha/"}], "IsTruncated": False},
        {"Bucket": BUCKET, "Prefix": "models/", "Delimiter": "/", "ContinuationToken": "page-2"},
    )
    with stubber:
        assert store.list_model_ids() == ["alpha", "zeta"]


# --- S3 errors other than "not found" are never mistaken for "nothing there" -------------------


def stubbed_store():
    client = boto3.client("s3", region_name="us-east-1")
    return ModelStore(BUCKET, client), Stubber(client)


@pytest.mark.parametrize("code, status", [("AccessDenied", 403), ("SlowDown", 503), ("InternalError", 500)])
def test_s3_errors_reading_the_pointer_propagate(code, status):
    store, stubber = stubbed_store()
    stubber.add_client_error("get_object", service_error_code=code, http_status_code=status)
    with stubber, pytest.raises(ClientError) as info:
        store.read_pointer("breast-cancer")
    assert info.value.response["Error"]["Code"] == code


@pytest.mark.parametrize("code", ["NoSuchKey", "404", "NotFound"])
def test_not_found_codes_mean_nothing_there(code):
    store, stubber = stubbed_store()
    stubber.add_client_error("get_object", service_error_code=code, http_status_code=404)
    with stubber:
        assert store.read_pointer("breast-cancer") is None


def test_a_forbidden_existence_check_propagates_instead_of_allowing_an_overwrite():
    store, stubber = stubbed_store()
    candidate = breast_cancer_candidate()
    manifest = manifest_for(candidate)
    stubber.add_client_error("head_object", service_error_code="403", http_status_code=403)
    with stubber, pytest.raises(ClientError):
        store.publish(manifest, candidate.onnx)
    stubber.assert_no_pending_responses()


def test_versions_whose_manifest_cannot_be_checked_are_an_error_not_absent():
    store, stubber = stubbed_store()
    stubber.add_response("list_objects_v2", {"CommonPrefixes": [{"Prefix": "models/m/20260101T000000Z-0000000a/"}]})
    stubber.add_client_error("head_object", service_error_code="403", http_status_code=403)
    with stubber, pytest.raises(ClientError):
        store.list_versions("m")


def test_a_version_written_after_the_existence_check_is_not_replaced(store, s3, monkeypatch):
    """Between publish's check and its write another writer created the version: S3's If-None-Match
    refuses the write (the training role may write version files only so), and nothing is replaced."""
    candidate = breast_cancer_candidate()
    manifest = manifest_for(candidate)
    theirs = f"models/breast-cancer/{manifest.version}/model.onnx"
    monkeypatch.setattr(store, "_exists", lambda key: put(s3, theirs, b"theirs") or False)
    with pytest.raises(IntegrityError, match="already exists: versions are immutable$"):
        store.publish(manifest, candidate.onnx)
    assert keys(s3) == [theirs] and s3.get_object(Bucket=BUCKET, Key=theirs)["Body"].read() == b"theirs"


def test_publish_refuses_a_version_whose_manifest_alone_exists(store, s3):
    candidate = breast_cancer_candidate()
    manifest = manifest_for(candidate)
    put(s3, f"models/breast-cancer/{manifest.version}/manifest.json", manifest.model_dump_json())
    with pytest.raises(IntegrityError, match="already exists: versions are immutable$"):
        store.publish(manifest, candidate.onnx)


def test_stored_objects_are_indented_json_and_octets_with_their_content_types(store, s3):
    candidate = breast_cancer_candidate()
    manifest = manifest_for(candidate)
    pointer = store.publish(manifest, candidate.onnx)
    prefix = f"models/breast-cancer/{manifest.version}/"
    expected = {
        prefix + "model.onnx": (candidate.onnx, "application/octet-stream"),
        prefix + "manifest.json": (manifest.model_dump_json(indent=2).encode(), "application/json"),
        "models/breast-cancer/production.json": (pointer.model_dump_json(indent=2).encode(), "application/json"),
    }
    for key, (body, content_type) in expected.items():
        stored = s3.get_object(Bucket=BUCKET, Key=key)
        assert (stored["Body"].read(), stored["ContentType"]) == (body, content_type), key


def test_version_files_are_uploaded_with_an_s3_checked_sha256(store, s3):
    candidate = breast_cancer_candidate()
    manifest = manifest_for(candidate)
    store.publish(manifest, candidate.onnx)
    head = s3.head_object(
        Bucket=BUCKET, Key=f"models/breast-cancer/{manifest.version}/model.onnx", ChecksumMode="ENABLED"
    )
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(candidate.onnx).digest()).decode()


def test_promotion_time_is_utc(store):
    pointer = store.publish(manifest_for(breast_cancer_candidate()), breast_cancer_candidate().onnx)
    assert pointer.promoted_at.utcoffset() == timedelta(0)
    assert store.read_pointer("breast-cancer").promoted_at == pointer.promoted_at


class UnreachableS3:
    """A client whose every call fails below the API (DNS, TLS, connection reset)."""

    def __getattr__(self, name):
        def fail(**kwargs):
            raise ConnectionError(f"{name}: connection reset")

        return fail


def test_errors_that_are_not_s3_answers_propagate_unchanged():
    store = ModelStore(BUCKET, UnreachableS3())
    with pytest.raises(ConnectionError, match="^get_object: connection reset$"):
        store.read_pointer("breast-cancer")
    candidate = breast_cancer_candidate()
    with pytest.raises(ConnectionError, match="^head_object: connection reset$"):
        store.publish(manifest_for(candidate), candidate.onnx)
