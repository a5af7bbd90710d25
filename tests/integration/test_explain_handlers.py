"""Explanations through both predict functions' handlers on API Gateway events against moto: asked in
the JSON body or the query string, shaped as the OpenAPI document says, and bounded per request.
NOT FOR CLINICAL USE."""

import base64
import json

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from tests.helpers.image_models import colour_candidate, image_bytes
from tests.helpers.models import (
    MALIGNANT_EXAMPLE,
    REPO_ROOT,
    LambdaContext,
    breast_cancer_candidate,
    load_function_module,
    publish,
)
from tests.integration.conftest import BUCKET
from tests.integration.test_image_predict_handler import image_event
from tests.integration.test_predict_handler import predict_event
from training import breast_cancer

SPEC = json.loads((REPO_ROOT / "functions" / "predict" / "openapi.json").read_text())


def validate_predict_body(body: dict) -> None:
    """The body against the document's PredictResponse (its $refs resolved in the document)."""
    schema = {**SPEC["components"]["schemas"]["PredictResponse"], "$defs": SPEC["components"]["schemas"]}
    text = json.dumps(schema).replace("#/components/schemas/", "#/$defs/")
    Draft202012Validator(json.loads(text)).validate(body)


@pytest.fixture
def tabular(store, monkeypatch):
    monkeypatch.setenv("MODELS_BUCKET", BUCKET)
    monkeypatch.setenv("POINTER_REFRESH_SECONDS", "0")
    monkeypatch.setenv("MAX_PREDICT_ROWS", "200")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Test")
    publish(store, breast_cancer_candidate())
    module = load_function_module("predict")
    return lambda event: module.lambda_handler(event, LambdaContext())


@pytest.fixture
def images(store, monkeypatch):
    monkeypatch.setenv("MODELS_BUCKET", BUCKET)
    monkeypatch.setenv("POINTER_REFRESH_SECONDS", "0")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Test")
    publish(store, colour_candidate("colour-test"))
    module = load_function_module("image_predict")
    return lambda event: module.lambda_handler(event, LambdaContext("ImagePredictFunction", 2048))


def call(handler, event, query: dict | None = None) -> tuple[int, dict]:
    if query is not None:
        event = {
            **event,
            "queryStringParameters": query,
            "multiValueQueryStringParameters": {k: [v] for k, v in query.items()},
        }
    response = handler(event)
    return response["statusCode"], json.loads(response["body"])


def malignant_log_odds() -> float:
    """The served linear model's log-odds of malignancy for the example row, refitted as training fits
    it (its served probability is 1.0 in float32)."""
    data = breast_cancer.load_wisconsin()
    X_train, _, y_train, _ = breast_cancer._split(data, smoke=False, seed=42)
    pipeline = breast_cancer.candidate_pipelines(42)["logistic_regression"].fit(X_train, y_train)
    return -float(pipeline.decision_function(np.asarray([MALIGNANT_EXAMPLE]))[0])  # coef_ is benign's


def test_a_tabular_prediction_is_explained_when_the_body_or_the_query_asks(tabular):
    logit = malignant_log_odds()
    rows = {"instances": [MALIGNANT_EXAMPLE, MALIGNANT_EXAMPLE]}
    status, plain = call(tabular, predict_event(rows))
    assert status == 200 and all("explanation" not in p for p in plain["predictions"])
    for body, query in (({**rows, "explain": True}, None), (rows, {"explain": "true"})):
        status, answered = call(tabular, predict_event(body), query)
        assert status == 200, answered
        validate_predict_body(answered)
        for prediction in answered["predictions"]:
            explanation = prediction["explanation"]
            assert explanation["method"] == "baseline_replacement"
            assert explanation["explained_class"] == prediction["label"] == "malignant"
            assert len(explanation["contributions"]) == 30
            assert breast_cancer_candidate().estimator == "logistic_regression"
            total = sum(explanation["contributions"].values()) + explanation["baseline_log_odds"]
            assert total == pytest.approx(logit, abs=1e-3)
        assert [p["probabilities"] for p in answered["predictions"]] == [
            p["probabilities"] for p in plain["predictions"]
        ]


def test_explain_false_or_absent_answers_without_explanations(tabular):
    for body, query in (({"instances": [MALIGNANT_EXAMPLE], "explain": False}, None), (None, {"explain": "false"})):
        status, answered = call(tabular, predict_event(body or {"instances": [MALIGNANT_EXAMPLE]}), query)
        assert status == 200 and "explanation" not in answered["predictions"][0]


def test_more_rows_than_one_request_may_explain_is_413_with_the_reason(tabular):
    status, body = call(tabular, predict_event({"instances": [MALIGNANT_EXAMPLE] * 101, "explain": True}))
    assert status == 413
    assert body["error"]["message"] == (
        "Explanations are computed for at most 100 rows per request; this one has 101. "
        "Send fewer, or leave out explain."
    )
    assert call(tabular, predict_event({"instances": [MALIGNANT_EXAMPLE] * 101}))[0] == 200


def test_an_explain_that_is_not_a_boolean_is_422(tabular, images):
    status, body = call(tabular, predict_event({"instances": [MALIGNANT_EXAMPLE], "explain": "yes"}))
    assert status == 422 and body["error"]["code"] == "invalid_request"  # the request schema's words
    assert call(tabular, predict_event({"instances": [MALIGNANT_EXAMPLE]}), {"explain": "maybe"})[0] == 422
    document = json.dumps({"images": [base64.b64encode(image_bytes("red")).decode()], "explain": 1})
    status, body = call(images, image_event(document, "application/json"))
    assert (status, body["error"]["message"]) == (422, '"explain" must be true or false.')
    assert call(images, image_event(image_bytes("red"), "image/png"), {"explain": "maybe"})[0] == 422


def test_a_raw_image_is_explained_when_the_query_asks(images):
    status, plain = call(images, image_event(image_bytes("red"), "image/png"))
    assert status == 200 and "explanation" not in plain["predictions"][0]
    status, answered = call(images, image_event(image_bytes("red"), "image/png"), {"explain": "true"})
    assert status == 200, answered
    validate_predict_body(answered)
    (prediction,) = answered["predictions"]
    explanation = prediction["explanation"]
    assert (explanation["method"], explanation["explained_class"]) == ("occlusion", "red")
    assert len(explanation["grid"]) == 6 and all(len(row) == 6 for row in explanation["grid"])
    assert base64.b64decode(explanation["heatmap_png"]).startswith(b"\x89PNG")


def test_json_images_are_explained_when_the_body_or_the_query_asks(images):
    encoded = [base64.b64encode(image_bytes(colour)).decode() for colour in ("blue", "green")]
    for body, query in (({"images": encoded, "explain": True}, None), ({"images": encoded}, {"explain": "1"})):
        status, answered = call(images, image_event(json.dumps(body), "application/json"), query)
        assert status == 200, answered
        assert [p["explanation"]["explained_class"] for p in answered["predictions"]] == ["blue", "green"]


def test_more_images_than_one_request_may_explain_is_413_with_the_reason(images):
    encoded = [base64.b64encode(image_bytes("red")).decode()] * 5
    status, body = call(images, image_event(json.dumps({"images": encoded, "explain": True}), "application/json"))
    assert status == 413
    assert body["error"]["message"] == (
        "Explanations are computed for at most 4 images per request; this one has 5. Send fewer, or leave out explain."
    )
    assert body["error"]["details"] == [{"max_explained": 4}]
