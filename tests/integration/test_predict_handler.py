"""The predict function's handler on API Gateway events (events/*.json) against moto."""

import base64
import copy
import json

import pytest

from tests.helpers.charted_models import calibration, operating_point, publish_copies
from tests.helpers.models import (
    MALIGNANT_EXAMPLE,
    REPO_ROOT,
    LambdaContext,
    breast_cancer_candidate,
    load_function_module,
    manifest_for,
    publish,
)
from tests.integration.conftest import BUCKET

EVENTS = REPO_ROOT / "events"
SPEC_FILE = REPO_ROOT / "functions" / "predict" / "openapi.json"
SUMMARY_KEYS = [
    "model",
    "production_version",
    "promoted_at",
    "previous_version",
    "n_versions",
    "description",
    "task",
    "classes",
    "input",
    "metrics",
    "estimator",
    "framework",
    "converter",
    "parity",
    "quantization",
    "training_data",
    "mlflow",
    "gate",
    "operating_point",
    "calibration",
]


@pytest.fixture
def handler(store, monkeypatch):
    monkeypatch.setenv("MODELS_BUCKET", BUCKET)
    monkeypatch.setenv("POINTER_REFRESH_SECONDS", "0")
    monkeypatch.setenv("MAX_PREDICT_ROWS", "50")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Test")
    publish(store, breast_cancer_candidate())
    module = load_function_module("predict")
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


def model_view_event() -> dict:
    """GET /models/breast-cancer."""
    return event(
        "api-list-models.json",
        path="/models/breast-cancer",
        resource="/models/{model}",
        pathParameters={"model": "breast-cancer"},
    )


def test_sample_event_predicts_malignant(handler):
    status, body = call(handler, event("api-predict-breast-cancer.json"))
    assert status == 200
    (prediction,) = body["predictions"]
    assert prediction["label"] == "malignant" and prediction["class_index"] == 0
    assert prediction["confidence"] > 0.9 and set(prediction["probabilities"]) == {"malignant", "benign"}
    assert body["model"] == "breast-cancer" and body["version"] and body["inference_ms"] >= 0
    assert "NOT FOR CLINICAL USE" in body["notice"]


def radius_reference():
    return manifest_for(breast_cancer_candidate()).ood.features[0]


@pytest.mark.parametrize("shape", ["instances", "features"])  # the fast path, and the resolver's legacy shape
def test_an_absurd_radius_is_flagged_out_of_distribution_naming_the_feature(handler, shape):
    absurd = [-3e38, *MALIGNANT_EXAMPLE[1:]]
    status, body = call(handler, predict_event({shape: [MALIGNANT_EXAMPLE, absurd]}))
    assert status == 200
    usual, flagged = body["predictions"]
    assert (usual["in_distribution"], usual["ood_reasons"]) == (True, [])
    radius = radius_reference()
    assert radius.name == "mean radius" and radius.low < 6.981 and radius.high > 28.11
    assert (flagged["in_distribution"], flagged["ood_reasons"]) == (
        False,
        [f"mean radius = -3e+38 is outside the range seen in training ({radius.low:.4g} to {radius.high:.4g})"],
    )


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
    status, one = call(handler, model_view_event())
    assert status == 200 and one["versions"][0]["production"] is True
    call(handler, event("api-predict-breast-cancer.json"))
    status, health = call(handler, event("api-health.json"))
    assert status == 200 and health["models"]["breast-cancer"]["version"] == model["production_version"]


def docs_event(path: str = "/openapi.json", stage: str = "Prod", stage_in_url: bool = False, query=None) -> dict:
    ev = copy.deepcopy(event("api-health.json", path=path, resource=path, queryStringParameters=query))
    ev["requestContext"].update(stage=stage, path=f"/{stage}{path}" if stage_in_url else path)
    return ev


def test_openapi_and_swagger_ui_work_offline(handler):
    status, spec = call(handler, docs_event())
    assert status == 200
    assert "/models/{model}/predict" in spec["paths"] and "NOT FOR CLINICAL USE" in spec["info"]["description"]
    request_schema = json.dumps(spec["components"]["schemas"]["PredictRequest"])
    assert "instances" in request_schema
    # One document for the whole API: the image and retraining functions' routes are in it too.
    assert {"/models/chest-ct/predict", "/models/{model}/retrain", "/models/{model}/retrain/{job_id}"} <= set(
        spec["paths"]
    )
    assert spec == json.loads(SPEC_FILE.read_text()) | {"servers": [{"url": "/"}]}
    docs = handler(docs_event("/docs"))
    assert docs["statusCode"] == 200 and "SwaggerUIBundle" in docs["body"]
    assert "unpkg.com" not in docs["body"] and "cdn.jsdelivr" not in docs["body"]
    assert '"/models/{model}/retrain/{job_id}"' in docs["body"]  # the whole API's document, inlined
    status, downloaded = call(handler, docs_event("/docs", query={"format": "json"}))  # Swagger UI's download link
    assert status == 200 and downloaded == spec


def test_the_served_document_points_at_the_stage_it_was_requested_through(handler):
    # On API Gateway's own domain the stage is part of the URL, so "Try it out" must call /v1/...
    _, on_aws = call(handler, docs_event(stage="v1", stage_in_url=True))
    assert on_aws["servers"] == [{"url": "/v1"}]
    assert '"servers": [{"url": "/v1"}]' in handler(docs_event("/docs", stage="v1", stage_in_url=True))["body"]
    # sam local (and a custom domain) send a stage that is not in the URL.
    _, local = call(handler, docs_event(stage="v1"))
    assert local["servers"] == [{"url": "/"}]


def test_a_body_that_is_not_json_is_415_in_the_error_shape(handler):
    ev = predict_event("17.99, 10.38")
    ev["headers"]["Content-Type"] = "text/plain"
    ev["multiValueHeaders"]["Content-Type"] = ["text/plain"]
    status, body = call(handler, ev)
    assert (status, body) == (
        415,
        {
            "error": {
                "code": "unsupported_media_type",
                "message": "Content-Type 'text/plain' is not accepted here: send application/json.",
                "details": [],
            }
        },
    )


def test_health_and_registry_bodies_keep_their_keys(handler):
    call(handler, event("api-predict-breast-cancer.json"))
    _, health = call(handler, event("api-health.json"))
    assert list(health) == ["status", "uptime_s", "models", "notice"]
    assert list(health["models"]["breast-cancer"]) == ["version", "load_ms", "loaded_at", "refused"]
    _, listed = call(handler, event("api-list-models.json"))
    assert list(listed) == ["models", "notice"] and [list(m) for m in listed["models"]] == [SUMMARY_KEYS]
    status, one = call(handler, model_view_event())
    assert status == 200 and list(one) == SUMMARY_KEYS + ["versions"]  # a tabular model: no "retraining" key
    assert list(one["versions"][0]) == ["version", "created_at", "metrics", "production"]
    assert one["input"]["kind"] == "tabular" and list(one["training_data"])[:2] == ["name", "source"]


def test_new_version_is_served_without_redeploy(handler, store):
    _, before = call(handler, event("api-predict-breast-cancer.json"))
    newer = publish(store, breast_cancer_candidate())
    _, after = call(handler, event("api-predict-breast-cancer.json"))
    assert before["version"] != after["version"] == newer.version


def test_the_registry_shows_the_production_versions_gate_operating_point_and_calibration(handler, store):
    """What the page charts (tests/browser/test_charts.py); left out for a version without them."""
    without, charted = publish_copies(
        store,
        "breast-cancer",
        [
            {"operating_point": None, "calibration": None},
            {"operating_point": operating_point("malignant"), "calibration": calibration()},
        ],
        promote=1,
    )
    _, listed = call(handler, event("api-list-models.json"))
    _, one = call(handler, model_view_event())
    for body in (listed["models"][0], one):
        assert body["production_version"] == charted.version
        assert body["gate"] == charted.gate and body["gate"]["passed"] is True
        assert body["operating_point"] == operating_point("malignant").model_dump(mode="json")
        assert body["operating_point"]["pr_curve"][-1] == [1.0, 0.79] and body["operating_point"]["threshold"] == 0.23
        assert body["calibration"] == calibration().model_dump(mode="json")
        assert body["calibration"]["reliability"][0] == [0.03, 0.0, 52]
    store.promote("breast-cancer", without.version)
    _, listed = call(handler, event("api-list-models.json"))
    _, one = call(handler, model_view_event())
    for body in (listed["models"][0], one):
        assert body["production_version"] == without.version
        assert "operating_point" not in body and "calibration" not in body and "gate" in body


# --- bodies refused before Powertools parses them (med_classifier.api.request_guard) -------------------


def raw_event(body: bytes | str, content_type: str | None) -> dict:
    """A predict request as API Gateway sends it: a bytes body arrives base64-encoded (binary media type)."""
    ev = predict_event("{}")
    binary = isinstance(body, bytes)
    ev["body"], ev["isBase64Encoded"] = (base64.b64encode(body).decode() if binary else body), binary
    for headers in (ev["headers"], ev["multiValueHeaders"]):
        headers.pop("Content-Type", None)
    if content_type is not None:
        ev["headers"]["Content-Type"], ev["multiValueHeaders"]["Content-Type"] = content_type, [content_type]
    return ev


def refusal(status: int, code: str, message: str, details=None) -> tuple[int, dict]:
    return status, {"error": {"code": code, "message": message, "details": details or []}}


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("image/png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),  # reportedly a 500
        ("application/x-www-form-urlencoded", "instances=1"),  # Powertools parsed it as a form: a 422
        ("multipart/form-data; boundary=x", '--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--x--'),
        ("application/jsonfoo", json.dumps({"instances": [MALIGNANT_EXAMPLE]})),  # Powertools answered 200
    ],
    ids=["raw PNG", "form", "multipart", "application/jsonfoo"],
)
def test_a_body_of_another_media_type_is_415_before_it_is_parsed(handler, content_type, body):
    media_type = content_type.split(";")[0]
    assert call(handler, raw_event(body, content_type)) == refusal(
        415, "unsupported_media_type", f"Content-Type {media_type!r} is not accepted here: send application/json."
    )


def test_a_body_without_content_type_is_json(handler):
    status, body = call(handler, raw_event(json.dumps({"instances": [MALIGNANT_EXAMPLE]}), None))
    assert status == 200 and body["predictions"][0]["label"] == "malignant"


def test_a_json_body_that_is_not_utf8_is_400_not_500(handler):
    refused = refusal(
        400, "invalid_body_encoding", "The request body is not UTF-8 (at byte 14): JSON must be UTF-8 encoded."
    )
    assert call(handler, raw_event(b'{"instances": \xff}', "application/json")) == refused  # arrived base64-encoded
    assert call(handler, raw_event('{"instances": \udcff}', "application/json")) == refused  # arrived as text


def test_json_nested_5000_levels_deep_is_400_not_a_recursion_error(handler):
    assert call(handler, raw_event("[" * 5000 + "]" * 5000, "application/json")) == refusal(
        400, "json_too_deep", "The JSON body nests 5000 levels deep; at most 32 are accepted."
    )


def test_an_integer_of_more_digits_than_python_reads_is_400_not_500(handler):
    body = '{"instances": [[' + "9" * 5000 + ", 1" * 29 + "]]}"
    assert call(handler, raw_event(body, "application/json")) == refusal(
        400, "number_too_long", "A number in the JSON body has 5000 digits; at most 4300 are accepted."
    )


def test_a_body_over_max_request_bytes_is_413_before_it_is_parsed(handler, monkeypatch):
    monkeypatch.setenv("MAX_REQUEST_BYTES", "100")  # read on the first request
    assert call(handler, raw_event("[" + " " * 99 + "]", "application/json")) == refusal(
        413,
        "payload_too_large",
        "The request body is 101 bytes; at most 100 are accepted here.",
        [{"max_request_bytes": 100}],
    )


@pytest.mark.parametrize(
    "value, shown",
    [("1e39", "1e+39"), ("9" * 400, "9" * 37 + "..."), ("-3.5e38", "-3.5e+38")],
    ids=["1e39 (became inf in float32)", "400 digits (OverflowError, a 500)", "-3.5e38"],
)
def test_a_number_outside_float32s_range_is_422_naming_row_and_feature(handler, value, shown):
    body = '{"instances": [[17.99, 10.38, 122.8, ' + value + ", 0.1184" + ", 1" * 25 + "]]}"
    assert call(handler, raw_event(body, "application/json")) == refusal(
        422,
        "invalid_input",
        f"Invalid input: row 0, feature 3 (mean area): {shown} is outside the float32 range (±3.4028235e+38)",
        [f"row 0, feature 3 (mean area): {shown} is outside the float32 range (±3.4028235e+38)"],
    )


def test_a_get_route_ignores_its_body(handler):
    ev = event("api-health.json", body=base64.b64encode(b"\xff" * 100).decode(), isBase64Encoded=True)
    ev["headers"]["Content-Type"] = "text/plain"
    status, body = call(handler, ev)
    assert status == 200 and body["status"] == "ok"
