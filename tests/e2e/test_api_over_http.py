"""HTTP against the local stack: the same requests a user sends with curl."""

import json

import pytest

from tests.helpers.models import MALIGNANT_EXAMPLE, breast_cancer_candidate, publish
from tests.helpers.polling import wait_for

PREDICT = "/models/breast-cancer/predict"


def test_health_and_registry(stack):
    http, url = stack["http"], stack["url"]
    health = http.get(url + "/health", timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    models = http.get(url + "/models", timeout=30).json()["models"]
    assert "breast-cancer" in [m["model"] for m in models]
    one = http.get(url + "/models/breast-cancer", timeout=30).json()
    assert one["production_version"] and len(one["input"]["feature_names"]) == 30


def test_public_example_row_comes_back_malignant(stack):
    response = stack["http"].post(stack["url"] + PREDICT, json={"instances": [MALIGNANT_EXAMPLE]}, timeout=30)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    (prediction,) = response.json()["predictions"]
    assert prediction["label"] == "malignant" and prediction["confidence"] > 0.9


def test_an_absurd_radius_over_http_is_flagged_out_of_distribution(stack):
    absurd = [-3e38, *MALIGNANT_EXAMPLE[1:]]
    response = stack["http"].post(stack["url"] + PREDICT, json={"instances": [MALIGNANT_EXAMPLE, absurd]}, timeout=30)
    assert response.status_code == 200
    usual, flagged = response.json()["predictions"]
    assert (usual["in_distribution"], usual["ood_reasons"]) == (True, [])
    assert flagged["in_distribution"] is False
    (reason,) = flagged["ood_reasons"]
    assert reason.startswith("mean radius = -3e+38 is outside the range seen in training (")


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        ({"instances": [MALIGNANT_EXAMPLE[:10]]}, 422, "expected 30 features, got 10"),
        ('{"instances": [[NaN' + ", 1" * 29 + "]]}", 422, "finite number"),
        ('{"instances": [[Infinity' + ", 1" * 29 + "]]}", 422, "finite number"),
        ({"instances": [["big"] * 30]}, 422, "expected a number, got str"),
        ({"instances": []}, 422, "at least one row"),
        ({"instances": [MALIGNANT_EXAMPLE] * 101}, 413, "at most 100 rows"),
        ("this is not json", 400, "not valid JSON"),
    ],
)
def test_bad_input_over_http_is_a_clear_4xx(stack, body, status, fragment):
    kwargs = (
        {"json": body} if not isinstance(body, str) else {"data": body, "headers": {"Content-Type": "application/json"}}
    )
    response = stack["http"].post(stack["url"] + PREDICT, timeout=30, **kwargs)
    assert response.status_code == status
    error = response.json()["error"]
    assert fragment in error["message"] + json.dumps(error["details"])


def test_unknown_model_is_404(stack):
    response = stack["http"].post(
        stack["url"] + "/models/no-such-model/predict", json={"instances": [MALIGNANT_EXAMPLE]}, timeout=30
    )
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_model"


def test_docs_and_openapi(stack):
    docs = stack["http"].get(stack["url"] + "/docs", timeout=30)
    assert docs.status_code == 200 and "text/html" in docs.headers["Content-Type"]
    assert "SwaggerUIBundle" in docs.text and "unpkg.com" not in docs.text  # offline: no CDN
    spec = stack["http"].get(stack["url"] + "/openapi.json", timeout=30).json()
    assert {"/health", "/models", "/models/{model}", "/models/{model}/predict"} <= set(spec["paths"])
    # One document for the whole API: every function's routes, served by the predict function.
    assert {"/", "/docs", "/openapi.json", "/models/skin-lesion/predict", "/models/{model}/uploads"} <= set(
        spec["paths"]
    )
    assert spec["servers"] == [{"url": "/"}]  # locally the stage is not part of the URL
    assert stack["http"].get(stack["url"] + "/docs?format=json", timeout=30).json() == spec


def served_version(stack):
    response = stack["http"].post(stack["url"] + PREDICT, json={"instances": [MALIGNANT_EXAMPLE]}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["version"]


def refused_versions(stack):
    return stack["http"].get(stack["url"] + "/health", timeout=30).json()["models"]["breast-cancer"]["refused"]


def test_hot_swap_then_broken_version_is_refused(stack):
    newer = publish(stack["store"], breast_cancer_candidate())
    wait_for(lambda: served_version(stack) == newer.version, 30, "the newly promoted version to be served")

    broken = publish(stack["store"], breast_cancer_candidate())
    stack["s3"].put_object(
        Bucket=stack["store"].bucket, Key=f"models/breast-cancer/{broken.version}/model.onnx", Body=b"truncated upload"
    )
    try:
        # A prediction makes the function re-read the pointer (at most every second here); it finds the
        # broken version, refuses it and keeps serving the one it has.
        wait_for(
            lambda: served_version(stack) == newer.version and broken.version in refused_versions(stack),
            30,
            "the broken version to be refused",
        )
        for _ in range(3):
            assert served_version(stack) == newer.version
    finally:
        # Leave production as it was found: a good version, whatever test runs next.
        stack["store"].promote("breast-cancer", newer.version)
