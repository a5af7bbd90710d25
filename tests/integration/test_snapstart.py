"""The API functions' SnapStart runtime hooks (med_classifier/snapstart.py), run as Lambda runs them: the
handler module imported (init), the before-snapshot hooks in reverse order of registration, then, in a
restored instance, the after-restore hooks in order of registration (snapshot-restore-py's registries,
which the Python runtime reads). Against moto."""

from __future__ import annotations

import base64
import copy
import json

import pytest
import snapshot_restore_py

from tests.helpers.image_models import colour_candidate, image_bytes
from tests.helpers.models import (
    MALIGNANT_EXAMPLE,
    REPO_ROOT,
    LambdaContext,
    breast_cancer_candidate,
    load_function_module,
)
from tests.helpers.models import publish as publish_version
from tests.integration.conftest import BUCKET

PREDICT_EVENT = json.loads((REPO_ROOT / "events" / "api-predict-breast-cancer.json").read_text())
CLINICIAN = {"sub": "s-1", "cognito:username": "c", "cognito:groups": "clinicians"}


@pytest.fixture
def runtime(monkeypatch):
    """A fresh runtime's hook registries, and the environment of a function whose pointer refresh is an hour
    away: only the restore hook can make a restored instance see a new version at its first request."""
    monkeypatch.setattr(snapshot_restore_py, "_before_snapshot_registry", [])
    monkeypatch.setattr(snapshot_restore_py, "_after_restore_registry", [])
    for name, value in {
        "MODELS_BUCKET": BUCKET,
        "POINTER_REFRESH_SECONDS": "3600",
        "POWERTOOLS_METRICS_NAMESPACE": "Test",
        "UPLOADS_BUCKET": "uploads",
        "UPLOAD_COUNTS_TABLE": "counts",
        "JOBS_TABLE": "jobs",
    }.items():
        monkeypatch.setenv(name, value)


def snapshot() -> None:
    for hook, args, kwargs in reversed(snapshot_restore_py.get_before_snapshot()):
        hook(*args, **kwargs)


def restore() -> None:
    for hook, args, kwargs in snapshot_restore_py.get_after_restore():
        hook(*args, **kwargs)


def predicted_version(module, event: dict) -> str:
    response = module.lambda_handler(event, LambdaContext())
    assert response["statusCode"] == 200, response["body"]
    return json.loads(response["body"])["version"]


def tabular_event() -> dict:
    event = copy.deepcopy(PREDICT_EVENT)
    event["requestContext"] = {"authorizer": {"claims": CLINICIAN}}
    event["body"] = json.dumps({"instances": [MALIGNANT_EXAMPLE]})
    return event


def test_each_api_function_registers_one_hook_of_each_kind(runtime):
    for function in ("predict", "image_predict", "retraining_api"):
        load_function_module(function)
    assert len(snapshot_restore_py.get_before_snapshot()) == 3
    assert len(snapshot_restore_py.get_after_restore()) == 3


def test_the_snapshot_holds_the_production_models_and_a_version_promoted_before_the_restore_serves(runtime, store):
    first = publish_version(store, breast_cancer_candidate())
    module = load_function_module("predict")
    snapshot()
    assert module.model_cache().status()["breast-cancer"]["version"] == first.version  # loaded before any request
    client_in_snapshot = module.model_store().client
    second = publish_version(store, breast_cancer_candidate())  # promoted while the snapshot waits
    restore()
    assert predicted_version(module, tabular_event()) == second.version
    assert module.model_store().client is not client_in_snapshot  # no connection from the snapshot is reused


def test_without_the_restore_hook_a_restored_instance_would_serve_the_snapshots_version(runtime, store):
    first = publish_version(store, breast_cancer_candidate())
    module = load_function_module("predict")
    snapshot()
    publish_version(store, breast_cancer_candidate())
    assert predicted_version(module, tabular_event()) == first.version  # what after_restore is there to prevent


def test_health_counts_uptime_from_the_restore(runtime, store):
    module = load_function_module("predict")
    snapshot()
    module.STARTED_AT -= 3600  # the snapshot was taken an hour ago
    restore()
    health = module.lambda_handler(
        {"httpMethod": "GET", "path": "/health", "resource": "/health", "headers": {}, "requestContext": {}},
        LambdaContext(),
    )
    assert json.loads(health["body"])["uptime_s"] < 3600


def test_the_image_function_snapshots_image_models_only(runtime, store):
    publish_version(store, breast_cancer_candidate())
    colour = publish_version(store, colour_candidate("colour-test"))
    module = load_function_module("image_predict")
    snapshot()
    assert {model: s["version"] for model, s in module.model_cache().status().items()} == {
        "colour-test": colour.version
    }
    restore()
    event = tabular_event()
    event.update(path="/models/colour-test/predict", pathParameters={"model": "colour-test"}, isBase64Encoded=True)
    event["headers"] = {"Content-Type": "image/png"}
    event["body"] = base64.b64encode(image_bytes("green")).decode()
    assert predicted_version(module, event) == colour.version


def test_a_model_that_cannot_load_does_not_stop_the_snapshot(runtime, store, s3):
    good = publish_version(store, breast_cancer_candidate())
    broken = publish_version(store, breast_cancer_candidate())
    s3.delete_object(Bucket=BUCKET, Key=f"models/breast-cancer/{broken.version}/model.onnx")
    s3.copy_object(
        Bucket=BUCKET, Key="models/other/production.json", CopySource=f"{BUCKET}/models/breast-cancer/production.json"
    )
    module = load_function_module("predict")
    assert module.model_cache().load_production("tabular") == []  # neither loads; both are logged
    snapshot()  # and the hook does not raise: the version still publishes
    assert good.version != broken.version


def test_the_retraining_api_makes_its_clients_before_the_snapshot_and_new_ones_after_a_restore(runtime, store):
    module = load_function_module("retraining_api")
    snapshot()
    adapters = module._services()[2], module._services()[1].jobs, module._services()[1].counter
    in_snapshot = [adapter._client for adapter in adapters]
    assert all(client is not None for client in in_snapshot)
    restore()
    assert all(adapter._client is None for adapter in adapters)  # made again at the next call
    assert [adapter.client for adapter in adapters] != in_snapshot
