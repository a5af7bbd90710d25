"""The predict functions' fast paths answer exactly as the request guard and the resolver did before
they existed (med_classifier.api.fast_path), for any body; and they are the path that well-formed
requests take. Against moto, with a published breast-cancer model and a tiny colour image model."""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import math
import sys

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from med_classifier.api.request_guard import refusal
from tests.helpers.image_models import colour_candidate, image_bytes
from tests.helpers.models import (
    MALIGNANT_EXAMPLE,
    REPO_ROOT,
    LambdaContext,
    breast_cancer_candidate,
    load_function_module,
    publish,
)
from tests.helpers.properties import DETERMINISTIC
from tests.integration.conftest import BUCKET

N_FEATURES = len(MALIGNANT_EXAMPLE)
FEATURE_NAMES = [f"f{i}" for i in range(N_FEATURES)]  # replaced by the manifest's in the fixture
EVENT = json.loads((REPO_ROOT / "events" / "api-predict-breast-cancer.json").read_text())
EXAMPLES = settings(DETERMINISTIC, max_examples=150)
pytestmark = pytest.mark.usefixtures("failing_examples_are_printed")


@contextlib.contextmanager
def serving(function_dir: str, env: dict[str, str], candidate):
    """A function's module, with `env`, serving `candidate` published in moto."""
    import boto3
    from moto import mock_aws

    from med_classifier.adapters.model_store import ModelStore

    with pytest.MonkeyPatch.context() as patch, mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        for name, value in {**env, "MODELS_BUCKET": BUCKET, "POWERTOOLS_METRICS_NAMESPACE": "Test"}.items():
            patch.setenv(name, value)
        manifest = publish(ModelStore(BUCKET, client), candidate)
        yield manifest, load_function_module(function_dir)


@pytest.fixture(scope="module")
def function():
    """The predict function's module, serving a published breast-cancer model from moto."""
    env = {"POINTER_REFRESH_SECONDS": "3600", "MAX_PREDICT_ROWS": "20"}
    with serving("predict", env, breast_cancer_candidate()) as (manifest, module):
        FEATURE_NAMES[:] = manifest.input.feature_names
        yield module


def predict_event(body: str, model: str = "breast-cancer") -> dict:
    event = copy.deepcopy(EVENT)
    event.update(body=body, path=f"/models/{model}/predict", pathParameters={"model": model})
    return event


def reference_answer(module, event: dict) -> dict:
    """What the function answered before the fast path: the whole guard, then the resolver."""
    return refusal(event, module.body_policy) or module.resolver().resolve(copy.deepcopy(event), LambdaContext())


def comparable(response: dict) -> tuple:
    """A response with its one varying value, the ONNX time, checked and left out."""
    body = json.loads(response["body"])
    if isinstance(body, dict) and "inference_ms" in body:
        assert isinstance(body.pop("inference_ms"), float | int)
    return response["statusCode"], dict(response["multiValueHeaders"]), response["isBase64Encoded"], body


# --- bodies of any shape ------------------------------------------------------------------------------

NUMBERS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6),
    st.integers(-(10**6), 10**6),
)
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=4),
    st.floats(),  # NaN and infinities, written as Python writes them
    st.sampled_from([10**40, 2**64, 1e39, -3e38, [1.0], {"a": 1}]),
)
VALUES = st.one_of(NUMBERS, NUMBERS, NUMBERS, ODD_VALUES)
LIST_ROWS = st.lists(VALUES, min_size=N_FEATURES - 1, max_size=N_FEATURES + 1)
GOOD_LIST_ROWS = st.lists(NUMBERS, min_size=N_FEATURES, max_size=N_FEATURES)


@st.composite
def dict_rows(draw, values=VALUES):
    names = draw(st.permutations(FEATURE_NAMES))
    row = {name: draw(values) for name in names}
    if draw(st.booleans()):
        del row[names[0]]
    if draw(st.booleans()):
        row["colour"] = draw(values)
    return row


ROWS = st.lists(st.one_of(GOOD_LIST_ROWS, GOOD_LIST_ROWS, LIST_ROWS, dict_rows(), VALUES), max_size=4)
GOOD_ROWS = st.lists(GOOD_LIST_ROWS, min_size=1, max_size=3)  # what the fast path answers, alone
BODIES = st.one_of(
    st.fixed_dictionaries({"instances": ROWS}),
    st.fixed_dictionaries({"instances": GOOD_ROWS, "features": st.one_of(ROWS, st.none())}),
    st.fixed_dictionaries({"features": st.one_of(ROWS, GOOD_LIST_ROWS)}),
    st.fixed_dictionaries({"instances": GOOD_ROWS, "images": st.lists(st.text(max_size=3), max_size=1)}),
    st.fixed_dictionaries({"instances": GOOD_ROWS, "Instances": st.just(1)}),
    st.fixed_dictionaries({"instances": st.one_of(st.none(), VALUES, GOOD_LIST_ROWS)}),
    st.lists(GOOD_LIST_ROWS, max_size=2),
)


@EXAMPLES
@given(body=BODIES, model=st.sampled_from(["breast-cancer", "breast-cancer", "no-such-model", "Bad_Id"]))
@example(body={"instances": [MALIGNANT_EXAMPLE] * 21}, model="breast-cancer")  # over MAX_PREDICT_ROWS
@example(body={"instances": []}, model="breast-cancer")
@example(body={"instances": [MALIGNANT_EXAMPLE], "features": [MALIGNANT_EXAMPLE]}, model="breast-cancer")
@example(body={"instances": [MALIGNANT_EXAMPLE], "images": []}, model="breast-cancer")
@example(body={"instances": MALIGNANT_EXAMPLE}, model="breast-cancer")  # a flat row: the schema refuses it
@example(body={"instances": [[True] + MALIGNANT_EXAMPLE[1:]]}, model="breast-cancer")
@example(body={"instances": [[math.nan] + MALIGNANT_EXAMPLE[1:]]}, model="breast-cancer")
def test_every_body_gets_the_answer_it_got_before_the_fast_path(function, body, model, capsys):
    event = predict_event(json.dumps(body), model)
    answered = function.lambda_handler(copy.deepcopy(event), LambdaContext())
    assert comparable(answered) == comparable(reference_answer(function, event))


RAW_BODIES = {
    # orjson reads a float of 5,000 digits; the guard refuses any run of digits over Python's limit.
    "long float": '{"instances": [[0.' + "1" * (sys.get_int_max_str_digits() + 1) + "]]}",
    "long int": '{"instances": [[' + "1" * (sys.get_int_max_str_digits() + 1) + "]]}",
    "deep row": '{"instances": [' + "[" * 40 + "1" + "]" * 40 + "]}",
    "NaN literal": '{"instances": [[NaN' + ", 1" * (N_FEATURES - 1) + "]]}",
    "25-digit int": '{"instances": [[1111111111111111111111111' + ", 1" * (N_FEATURES - 1) + "]]}",
    "duplicate key": '{"instances": [[1]], "instances": [' + json.dumps(MALIGNANT_EXAMPLE) + "]}",
    "lone surrogate": '{"instances": [["\\ud800"' + ", 1" * (N_FEATURES - 1) + "]]}",
    "not JSON": '{"instances": [[1, 2',
    "empty": "",
}


@pytest.mark.parametrize("name", RAW_BODIES)
def test_bodies_the_parsers_read_differently_get_the_answer_they_got_before(function, name, capsys):
    event = predict_event(RAW_BODIES[name])
    answered = function.lambda_handler(copy.deepcopy(event), LambdaContext())
    assert comparable(answered) == comparable(reference_answer(function, event))


@EXAMPLES
@given(
    rows=st.lists(
        st.one_of(
            GOOD_LIST_ROWS, dict_rows(NUMBERS).filter(lambda row: len(row) == N_FEATURES and "colour" not in row)
        ),
        min_size=1,
        max_size=20,
    )
)
def test_well_formed_rows_are_answered_by_the_fast_path(function, rows, capsys):
    event = predict_event(json.dumps({"instances": rows}))
    fast = function.fast_answer(copy.deepcopy(event))
    assert fast is not None
    assert comparable(fast) == comparable(reference_answer(function, event))
    assert len(json.loads(fast["body"])["predictions"]) == len(rows)


# --- the image function -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_function():
    """The image function's module, serving a tiny colour model from moto."""
    env = {"POINTER_REFRESH_SECONDS": "3600", "MAX_IMAGES_PER_REQUEST": "4"}
    with serving("image_predict", env, colour_candidate("colour-test")) as (_, module):
        yield module


def image_event(body: bytes, content_type: str | None, binary: bool, model: str = "colour-test") -> dict:
    event = copy.deepcopy(EVENT)
    event["body"] = base64.b64encode(body).decode() if binary else body.decode("utf-8", "replace")
    event.update(isBase64Encoded=binary, path=f"/models/{model}/predict", pathParameters={"model": model})
    for headers in (event["headers"], event["multiValueHeaders"]):
        headers.pop("Content-Type")
    if content_type is not None:
        event["headers"]["content-type"] = content_type
        event["multiValueHeaders"]["content-type"] = [content_type]
    return event


def image_reference_answer(module, event: dict) -> dict:
    return refusal(event, module.body_policy) or module.resolver().resolve(copy.deepcopy(event), LambdaContext())


COLOURS = st.sampled_from(["red", "green", "blue"])
IMAGE_FILES = st.one_of(
    st.builds(lambda colour, fmt: image_bytes(colour, fmt=fmt), COLOURS, st.sampled_from(["PNG", "JPEG"])),
    st.binary(max_size=40),
    st.builds(lambda colour, cut: image_bytes(colour)[:cut], COLOURS, st.integers(10, 60)),
)


@st.composite
def image_requests(draw):
    if draw(st.booleans()):
        body = draw(IMAGE_FILES)
        content_type = draw(st.sampled_from(["image/png", "image/jpeg", "image/gif", "application/json", None]))
        return body, content_type, draw(st.booleans())
    images = draw(st.lists(IMAGE_FILES.map(lambda data: base64.b64encode(data).decode()), max_size=5))
    document = draw(st.sampled_from([{"images": images}, {"images": images, "more": 1}, images, {"image": images}]))
    return json.dumps(document).encode(), "application/json", False


@EXAMPLES
@given(request=image_requests(), model=st.sampled_from(["colour-test", "colour-test", "no-such-model"]))
def test_every_image_request_gets_the_answer_it_got_before_the_fast_path(image_function, request, model, capsys):
    event = image_event(*request, model=model)
    answered = image_function.lambda_handler(copy.deepcopy(event), LambdaContext("ImagePredictFunction", 2048))
    assert comparable(answered) == comparable(image_reference_answer(image_function, event))


@pytest.mark.parametrize("fmt, content_type", [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_an_image_is_answered_by_the_fast_path(image_function, fmt, content_type, capsys):
    event = image_event(image_bytes("blue", fmt=fmt), content_type, binary=True)
    fast = image_function.fast_answer(copy.deepcopy(event))
    assert fast is not None and json.loads(fast["body"])["predictions"][0]["label"] == "blue"
    assert comparable(fast) == comparable(image_reference_answer(image_function, event))
