"""The predict function's handler on API Gateway events (events/*.json) against moto."""

import copy
import json

import pytest

from tests.helpers.models import (
    MALIGNANT_EXAMPLE,
    REPO_ROOT,
    LambdaContext,
    breast_cancer_candidate,
    load_function_module,
    publish,
)
from tests.integration.conftest import BUCKET

EVENTS = REPO_ROOT / "events"


@pytest.fixture
def handler(store, monkeypatch):
    monkeypatch.setenv("MODELS_BUCKET", BUCKET)
    monkeypatch.setenv("POINTER_REFRESH_SECONDS", "0")
    monkeypatch.setenv("MAX_PREDICT_ROWS", "50")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Test")
    publish(store, breast_cancer_candidate())
    module = load_function_module("predict")
    module._store = None  # fresh container for each test
    return lambda event: module.lambda_handler(event, LambdaContext())


def event(name: str, **changes) -> dict:
    loaded = json.loads((EVENTS / name).read_text())
    loaded.update(changes)
    return loaded


def call(handler, ev) -> tuple[int, dict]:
    response = handler(ev)
    return response["statusCode"], json.loads(response["body"])


def predict_event(body, model="breast-cancer"):
    ev = event("api-predict-breast-cancer.json")
    ev = copy.deepcopy(ev)
    ev["body"] = body if isinstance(body, str) else json.dumps(body)
    ev["pathParameters"] = {"model": model}
    ev["path"] = f"/models/{model}/predict"
    return ev


def test_sample_event_predicts_malignant(handler):
    status, body = call(handler, event("api-predict-breast-cancer.json"))
    assert status == 200
    (prediction,) = body["predictions"]
    assert prediction["label"] == "malignant" and prediction["class_index"] == 0
    assert prediction["confidence"] > 0.9 and set(prediction["probabilities"]) == {"malignant", "benign"}
    assert body["model"] == "breast-cancer" and body["version"] and body["inference_ms"] >= 0
    assert "NOT FOR CLINICAL USE" in body["notice"]


def test_legacy_features_and_named_rows_agree(handler, store):
    _, legacy = call(handler, event("api-predict-legacy-features.json"))
    _, flat = call(handler, predict_event({"features": MALIGNANT_EXAMPLE}))
    names = breast_cancer_candidate().input_spec["feature_names"]
    _, named = call(handler, predict_event({"instances": [dict(zip(names, MALIGNANT_EXAMPLE))]}))
    assert legacy["predictions"] == flat["predictions"] == named["predictions"]


BAD_INPUTS = [
    ("wrong feature count", {"instances": [MALIGNANT_EXAMPLE[:29]]}, 422, "expected 30 features, got 29"),
    ("NaN", '{"instances": [[NaN' + ", 1" * 29 + "]]}", 422, "finite number"),
    ("Infinity", '{"instances": [[Infinity' + ", 1" * 29 + "]]}", 422, "finite number"),
    ("string", {"instances": [["17.99"] + MALIGNANT_EXAMPLE[1:]]}, 422, "expected a number, got str"),
    ("empty", {"instances": []}, 422, "at least one row"),
    ("too many rows", {"instances": [MALIGNANT_EXAMPLE] * 51}, 413, "at most 50 rows"),
    ("not JSON", "17.99, 10.38", 400, "not valid JSON"),
    ("both shapes", {"instances": [MALIGNANT_EXAMPLE], "features": [MALIGNANT_EXAMPLE]}, 422, "exactly one"),
    ("unknown field", {"rows": [MALIGNANT_EXAMPLE]}, 422, "body.rows"),
    ("instances not a list", {"instances": 5}, 422, "valid list"),
]


@pytest.mark.parametrize("name, body, status, message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_a_4xx_json_error_a_person_can_act_on(handler, name, body, status, message):
    got_status, got = call(handler, predict_event(body))
    assert got_status == status
    assert message in got["error"]["message"] + " ".join(map(str, got["error"]["details"]))
    assert "Traceback" not in json.dumps(got)


def test_unknown_model_and_route_are_404(handler):
    status, body = call(handler, predict_event({"instances": [MALIGNANT_EXAMPLE]}, model="no-such-model"))
    assert status == 404 and body["error"]["code"] == "unknown_model"
    status, body = call(handler, event("api-health.json", path="/nowhere", resource="/nowhere"))
    assert status == 404 and "GET /nowhere" in body["error"]["message"]


def test_registry_and_health_views(handler):
    status, listed = call(handler, event("api-list-models.json"))
    assert status == 200
    (model,) = listed["models"]
    assert model["model"] == "breast-cancer" and model["production_version"]
    assert len(model["input"]["feature_names"]) == 30 and model["metrics"]["test_recall"] >= 0.95
    status, one = call(
        handler,
        event(
            "api-list-models.json",
            path="/models/breast-cancer",
            resource="/models/{model}",
            pathParameters={"model": "breast-cancer"},
        ),
    )
    assert status == 200 and one["versions"][0]["production"] is True
    call(handler, event("api-predict-breast-cancer.json"))
    status, health = call(handler, event("api-health.json"))
    assert status == 200 and health["models"]["breast-cancer"]["version"] == model["production_version"]


def test_openapi_and_swagger_ui_work_offline(handler):
    status, spec = call(handler, event("api-health.json", path="/openapi.json", resource="/openapi.json"))
    assert status == 200
    assert "/models/{model}/predict" in spec["paths"] and "NOT FOR CLINICAL USE" in spec["info"]["description"]
    request_schema = json.dumps(spec["components"]["schemas"]["PredictRequest"])
    assert "instances" in request_schema
    docs = handler(event("api-health.json", path="/docs", resource="/docs"))
    assert docs["statusCode"] == 200 and "SwaggerUIBundle" in docs["body"]
    assert "unpkg.com" not in docs["body"] and "cdn.jsdelivr" not in docs["body"]


def test_new_version_is_served_without_redeploy(handler, store):
    _, before = call(handler, event("api-predict-breast-cancer.json"))
    newer = publish(store, breast_cancer_candidate())
    _, after = call(handler, event("api-predict-breast-cancer.json"))
    assert before["version"] != after["version"] == newer.version
