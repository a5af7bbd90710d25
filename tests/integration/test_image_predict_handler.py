"""The image function's handler on API Gateway events against moto, with a tiny
hand-built ONNX image model (the trained models are tested in their own files and
over HTTP)."""

import base64
import copy
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.helpers.image_models import colour_candidate, image_bytes
from tests.helpers.models import REPO_ROOT, LambdaContext, breast_cancer_candidate, load_function_module, publish
from tests.integration.conftest import BUCKET

TEMPLATE_EVENT = json.loads((REPO_ROOT / "events" / "api-predict-breast-cancer.json").read_text())


@pytest.fixture
def handler(store, monkeypatch):
    monkeypatch.setenv("MODELS_BUCKET", BUCKET)
    monkeypatch.setenv("POINTER_REFRESH_SECONDS", "0")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Test")
    publish(store, colour_candidate("colour-test"))
    publish(store, colour_candidate("colour-nhwc", layout="NHWC"))
    module = load_function_module("image_predict")
    context = LambdaContext("ImagePredictFunction", 2048)
    return lambda event: module.lambda_handler(event, context)


def image_event(body: bytes | str, content_type: str, model: str = "colour-test", binary: bool | None = None) -> dict:
    event = copy.deepcopy(TEMPLATE_EVENT)
    binary = content_type.startswith("image/") if binary is None else binary
    event["body"] = base64.b64encode(body).decode() if binary else (body.decode() if isinstance(body, bytes) else body)
    event["isBase64Encoded"] = binary
    event["headers"]["Content-Type"] = content_type
    event["multiValueHeaders"]["Content-Type"] = [content_type]
    event["pathParameters"] = {"model": model}
    event["path"] = f"/models/{model}/predict"
    return event


def call(handler, event) -> tuple[int, dict]:
    response = handler(event)
    return response["statusCode"], json.loads(response["body"])


@pytest.mark.parametrize("fmt, content_type", [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_raw_binary_body(handler, fmt, content_type):
    status, body = call(handler, image_event(image_bytes("green", fmt=fmt), content_type))
    assert status == 200, body
    (prediction,) = body["predictions"]
    assert prediction["label"] == "green" and prediction["confidence"] > 0.9
    assert set(prediction["probabilities"]) == {"red", "green", "blue"}
    assert body["model"] == "colour-test" and "NOT FOR CLINICAL USE" in body["notice"]


def test_json_batch_of_base64_images_keeps_order(handler):
    colours = ["blue", "red", "green", "red"]
    images = [base64.b64encode(image_bytes(c)).decode() for c in colours]
    images[1] = "data:image/png;base64," + images[1]
    for model in ("colour-test", "colour-nhwc"):
        status, body = call(handler, image_event(json.dumps({"images": images}), "application/json", model))
        assert status == 200, body
        assert [p["label"] for p in body["predictions"]] == colours


def truncated_png() -> bytes:
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    noise.save(buffer, "PNG")
    return buffer.getvalue()[:2000]


def bomb_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (9000, 6000)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


BAD_REQUESTS = [
    ("text as PNG", lambda: image_event(b"hello, not an image", "image/png"), 415, "unsupported_media_type"),
    ("truncated PNG", lambda: image_event(truncated_png(), "image/png"), 422, "invalid_input"),
    ("decompression bomb", lambda: image_event(bomb_png(), "image/png"), 413, "payload_too_large"),
    ("GIF content type", lambda: image_event(b"GIF89a", "image/gif", binary=True), 415, "unsupported_media_type"),
    ("empty body", lambda: image_event(b"", "image/png"), 422, "invalid_input"),
    ("bad JSON", lambda: image_event("{nope", "application/json"), 422, "invalid_input"),
    (
        "bad one in a batch",
        lambda: image_event(
            json.dumps({"images": [base64.b64encode(image_bytes("red")).decode(), base64.b64encode(b"junk").decode()]}),
            "application/json",
        ),
        415,
        "unsupported_media_type",
    ),
    ("unknown model", lambda: image_event(image_bytes(), "image/png", model="no-such-model"), 404, "unknown_model"),
    ("bad model id", lambda: image_event(image_bytes(), "image/png", model="..%2Fetc"), 404, "unknown_model"),
]


@pytest.mark.parametrize("name, make_event, status, code", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_json_4xx_and_the_worker_keeps_serving(handler, name, make_event, status, code):
    got_status, body = call(handler, make_event())
    assert (got_status, body["error"]["code"]) == (status, code), body
    assert body["error"]["message"] and "Traceback" not in json.dumps(body)
    ok_status, ok = call(handler, image_event(image_bytes("blue"), "image/png"))
    assert ok_status == 200 and ok["predictions"][0]["label"] == "blue"


def test_batch_error_names_the_bad_image(handler):
    images = [base64.b64encode(image_bytes("red")).decode(), base64.b64encode(truncated_png()).decode()]
    status, body = call(handler, image_event(json.dumps({"images": images}), "application/json"))
    assert status == 422 and body["error"]["message"].startswith("images[1]:")


def test_oversized_image_is_413_with_the_upload_path(handler, monkeypatch):
    monkeypatch.setenv("MAX_IMAGE_BYTES", "1000")
    big = Image.fromarray(np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    big.save(buffer, "PNG")
    status, body = call(handler, image_event(buffer.getvalue(), "image/png"))
    assert status == 413 and body["error"]["details"][0]["upload_path"] == "/models/colour-test/uploads"


def test_tabular_model_on_the_image_function_and_images_on_the_tabular_function(handler, store, monkeypatch):
    publish(store, breast_cancer_candidate())
    status, body = call(handler, image_event(image_bytes(), "image/png", model="breast-cancer"))
    assert status == 422 and "takes feature rows" in body["error"]["message"]
    monkeypatch.setenv("MAX_PREDICT_ROWS", "50")
    tabular = load_function_module("predict")
    images = json.dumps({"images": [base64.b64encode(image_bytes()).decode()]})
    response = tabular.lambda_handler(image_event(images, "application/json", model="breast-cancer"), LambdaContext())
    assert response["statusCode"] == 422 and "takes feature rows" in json.loads(response["body"])["error"]["message"]


def test_a_model_with_versions_but_none_in_production_is_503(handler, store):
    publish(store, colour_candidate("colour-draft"), promote=False)
    status, body = call(handler, image_event(image_bytes(), "image/png", model="colour-draft"))
    assert (status, body["error"]["code"]) == (503, "model_unavailable")
    assert body["error"]["message"] == "Model 'colour-draft' has versions but none is promoted to production."


def test_the_response_body_keeps_its_keys(handler):
    status, body = call(handler, image_event(image_bytes("red"), "image/png"))
    assert status == 200 and list(body) == ["model", "version", "predictions", "inference_ms", "notice"]
    prediction = body["predictions"][0]
    assert list(prediction) == [
        "label",
        "class_index",
        "confidence",
        "probabilities",
        "in_distribution",
        "ood_reasons",
    ]
    # A version published without an out-of-distribution reference: not checked.
    assert (prediction["in_distribution"], prediction["ood_reasons"]) == (None, [])


# --- bounded cost: checks on the raw event and on every image header before decoding ---------------------


def error_of(status: int, code: str, message: str, details=None) -> tuple[int, dict]:
    return status, {"error": {"code": code, "message": message, "details": details or []}}


def as_json(*images: bytes) -> str:
    return json.dumps({"images": [base64.b64encode(image).decode() for image in images]})


def without_content_type(event: dict) -> dict:
    del event["headers"]["Content-Type"], event["multiValueHeaders"]["Content-Type"]
    return event


def test_a_request_without_content_type_is_415(handler):
    assert call(handler, without_content_type(image_event(image_bytes(), "image/png"))) == error_of(
        415,
        "unsupported_media_type",
        'The request has no Content-Type: send image/jpeg or image/png, or application/json with {"images": '
        '["<base64>", ...]}.',
    )


def test_a_json_body_that_is_not_utf8_is_400(handler):
    event = image_event(b'{"images": ["\xff"]}', "application/json", binary=True)
    assert call(handler, event) == error_of(
        400, "invalid_body_encoding", "The request body is not UTF-8 (at byte 13): JSON must be UTF-8 encoded."
    )


def test_json_nested_too_deep_is_400(handler):
    event = image_event('{"images": ' + "[" * 40 + "]" * 40 + "}", "application/json")
    assert call(handler, event) == error_of(
        400, "json_too_deep", "The JSON body nests 41 levels deep; at most 32 are accepted."
    )


def test_a_body_over_max_request_bytes_is_413(handler, monkeypatch):
    monkeypatch.setenv("MAX_REQUEST_BYTES", "1000")
    assert call(handler, image_event(b"\x89PNG" + b"\0" * 997, "image/png")) == error_of(
        413,
        "payload_too_large",
        "The request body is 1001 bytes; at most 1000 are accepted here.",
        [{"max_request_bytes": 1000}],
    )


def test_an_image_over_max_image_pixels_is_413_naming_it_in_a_batch(handler, monkeypatch):
    monkeypatch.setenv("MAX_IMAGE_PIXELS", str(64 * 48 - 1))
    body = as_json(image_bytes("red", size=(8, 8)), image_bytes("red", size=(64, 48)))
    assert call(handler, image_event(body, "application/json")) == error_of(
        413,
        "payload_too_large",
        "images[1]: The image is 64x48 pixels; at most 3071 pixels are accepted (decompression-bomb guard). "
        "Downscale it first.",
    )


def test_a_request_over_max_request_pixels_is_413_before_any_image_is_decoded(handler, monkeypatch):
    monkeypatch.setenv("MAX_REQUEST_PIXELS", str(3 * 64 * 48 - 1))
    cut = image_bytes("red", size=(64, 48))[:60]  # its header is whole, its pixels are not: decoding it is a 422
    body = as_json(image_bytes("red", size=(64, 48)), cut, image_bytes("red", size=(64, 48)))
    assert call(handler, image_event(body, "application/json")) == error_of(
        413,
        "payload_too_large",
        "images[2] brings the request to 9216 decoded pixels; at most 9215 are accepted per request. "
        "Send fewer or smaller images.",
        [{"max_request_pixels": 9215, "max_image_pixels": 2048 * 2048}],
    )
    monkeypatch.setenv("MAX_REQUEST_PIXELS", str(3 * 64 * 48))  # within the budget, the cut image is decoded
    fresh = load_function_module("image_predict")  # a new container: settings are read once per container
    status, refused = call(lambda e: fresh.lambda_handler(e, LambdaContext()), image_event(body, "application/json"))
    assert status == 422 and refused["error"]["message"].startswith("images[1]: The image is truncated or corrupt")


def test_a_large_jpeg_counts_the_pixels_it_decodes_to(handler, monkeypatch):
    monkeypatch.setenv("MAX_IMAGE_PIXELS", str(80 * 60))  # the colour model takes 32x32: 640x480 decodes at 1/8
    status, body = call(handler, image_event(image_bytes("green", size=(640, 480), fmt="JPEG"), "image/jpeg"))
    assert status == 200 and body["predictions"][0]["label"] == "green"
    status, body = call(handler, image_event(image_bytes("green", size=(640, 480)), "image/png"))
    assert status == 413 and body["error"]["message"].startswith("The image is 640x480 pixels; at most 4800 pixels")
