"""Property tests of every parser of what a client or AWS sends: tabular rows, image bodies and image
files, upload and retrain requests, S3 notifications (SQS message bodies) and upload keys, and job
state-change events. NOT FOR CLINICAL USE.

Each parser raises only the exceptions it documents, whatever it is given (JSON of any shape,
numbers no float holds, nesting thousands deep, bytes that are not UTF-8 or not an image), and what
it accepts comes back intact (a valid row is the same float32 matrix, a key built by upload_key
parses back, a notification yields exactly its uploads). Hypothesis is derandomized and keeps no
example database, so every run tries the same inputs; no AWS, no network."""

from __future__ import annotations

import base64
import io
import json
from urllib.parse import quote_plus

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydantic import ValidationError

from med_classifier.api.image_requests import ImageLimits, images_from_body
from med_classifier.api.schemas import RetrainRequest, UploadRequest
from med_classifier.domain.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from med_classifier.domain.jobs import JobStateChange
from med_classifier.domain.manifest import ImageInput, TabularInput
from med_classifier.domain.preprocessing import tensor_from_bytes
from med_classifier.domain.retraining import BATCH_STATES, SAGEMAKER_STATES, state_change_from_event
from med_classifier.domain.tabular import checked_matrix, clean_matrix, rows_to_matrix
from med_classifier.domain.uploads import (
    UPLOAD_CONTENT_TYPES,
    UploadedObject,
    parse_upload_key,
    upload_key,
    uploads_in_notification,
)
from tests.helpers.properties import DETERMINISTIC
from training.gate import PromotionGate
from training.retrain import tightened_gate

# Image decoding costs milliseconds per example.
IMAGES = settings(DETERMINISTIC, max_examples=40)

pytestmark = pytest.mark.usefixtures("failing_examples_are_printed")


# --- inputs of any shape ---------------------------------------------------------------------------

# Numbers no float32 (or no float at all) holds, and the edges of float32.
HUGE_INTS = st.sampled_from([10**400, -(10**400), 2**128, -(2**128), 2**127 * 3, 10**39, 2**1024])
EDGE_FLOATS = st.sampled_from(
    [1e39, -1e39, 3.4028235e38, 3.4028236e38, 3.5e38, 1.7976931348623157e308, 5e-324, -0.0, 1e-46]
)
NUMBERS = st.one_of(
    st.integers(), HUGE_INTS, st.floats(), EDGE_FLOATS, st.floats(width=32), st.integers(-(2**64), 2**64)
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=20))


def json_containers(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)


JSON_ANY = st.recursive(SCALARS, json_containers, max_leaves=25)


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


DEEP_JSON = deep(100_000)


def json_text(value) -> str:
    """JSON text for any value JSON_ANY draws (NaN and Infinity as Python writes them)."""
    return json.dumps(value)


# --- tabular rows ----------------------------------------------------------------------------------

FEATURES = [f"feature {i}" for i in range(5)]
TABULAR = TabularInput(feature_names=FEATURES, input_name="input")
MAX_ROWS = 8
# Python floats from here up (in magnitude) round to infinity in float32.
FLOAT32_INFINITE_FROM = 2.0**128 - 2.0**103
IN_RANGE = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: abs(x) < FLOAT32_INFINITE_FROM),
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.integers(-(2**53), 2**53),
)
OUT_OF_RANGE = st.one_of(
    HUGE_INTS,
    st.sampled_from([1e39, -1e39, 3.5e38, -3.5e38, FLOAT32_INFINITE_FROM, 1.7976931348623157e308]),
    st.floats(min_value=FLOAT32_INFINITE_FROM, allow_infinity=False),
    st.integers(min_value=2**128).map(lambda n: -n),
)
VALID_ROWS = st.lists(st.lists(IN_RANGE, min_size=len(FEATURES), max_size=len(FEATURES)), min_size=1, max_size=MAX_ROWS)


def expected_matrix(rows: list[list]) -> np.ndarray:
    # Each value as a Python float, then float32 (numpy rounds to nearest, as the parser does).
    return np.array([[float(v) for v in row] for row in rows], dtype=np.float64).astype(np.float32)


@DETERMINISTIC
@given(rows=st.one_of(JSON_ANY, st.lists(st.lists(NUMBERS, min_size=5, max_size=5), max_size=MAX_ROWS + 2)))
@example(rows=[[10**400] * 5])
@example(rows=[[1e39] * 5])
@example(rows=[[-1e39, 1.0, 2.0, 3.0, 4.0]])
@example(rows=[dict.fromkeys(FEATURES, 10**400)])
@example(rows=[[float("nan")] * 5])
def test_tabular_rows_raise_only_domain_errors_and_give_finite_float32(rows):
    try:
        matrix = rows_to_matrix(rows, TABULAR, MAX_ROWS)
    except (InvalidInput, PayloadTooLarge):
        return
    assert matrix.dtype == np.float32 and matrix.shape == (len(rows), len(FEATURES))
    assert np.isfinite(matrix).all(), matrix


@DETERMINISTIC
@given(rows=VALID_ROWS, data=st.data())
def test_valid_tabular_rows_round_trip_as_lists_and_as_objects(rows, data):
    expected = expected_matrix(rows)
    assert np.array_equal(rows_to_matrix(rows, TABULAR, MAX_ROWS), expected)
    # The same rows keyed by feature name, keys in any order.
    as_objects = [dict(data.draw(st.permutations(list(zip(FEATURES, row))))) for row in rows]
    assert np.array_equal(rows_to_matrix(as_objects, TABULAR, MAX_ROWS), expected)


@DETERMINISTIC
@given(rows=VALID_ROWS, data=st.data())
@example(rows=[[1.0] * 5], data=None)
def test_a_number_outside_float32_is_refused_never_served(rows, data):
    """An int of 400 digits or a float from 1e39 up has no float32: refused (422), never a crash
    (OverflowError) nor an infinity passed to the model."""
    if data is None:
        r, c, value = 0, 0, 10**400
    else:
        r = data.draw(st.integers(0, len(rows) - 1))
        c = data.draw(st.integers(0, len(FEATURES) - 1))
        value = data.draw(OUT_OF_RANGE)
    rows[r][c] = value
    with pytest.raises(InvalidInput) as refused:
        rows_to_matrix(rows, TABULAR, MAX_ROWS)
    assert any(f"row {r}" in detail for detail in refused.value.details), refused.value.details


def any_rows(scalars: st.SearchStrategy) -> st.SearchStrategy:
    values = st.one_of(IN_RANGE, IN_RANGE, scalars, st.lists(IN_RANGE, max_size=2))
    return st.lists(
        st.one_of(
            st.lists(values, min_size=4, max_size=6),
            st.fixed_dictionaries({name: values for name in FEATURES}),
            st.dictionaries(st.sampled_from([*FEATURES, "colour"]), values, max_size=6),
            scalars,
        ),
        min_size=1,
        max_size=MAX_ROWS,
    )


ANY_ROWS = any_rows(SCALARS)


@DETERMINISTIC
@given(rows=ANY_ROWS)
@example(rows=[[1, 2.5, True, 4, 5]])
@example(rows=[[2**70, 2**53 + 1, -(2**63), 0, -0.0]])
@example(rows=[[1, 2, 3, 4, 10**400]])
@example(rows=[dict.fromkeys(FEATURES, 1.5), [1, 2, 3, 4, 5]])
def test_the_whole_row_checks_answer_as_the_value_by_value_checks(rows):
    """rows_to_matrix first checks whole rows and arrays (clean_matrix) and names problems value by
    value only when those fail: any rows get the same matrix, bit for bit, or the same refusal."""
    try:
        expected = checked_matrix(rows, FEATURES)
    except InvalidInput as by_value:
        with pytest.raises(InvalidInput) as refused:
            rows_to_matrix(rows, TABULAR, MAX_ROWS)
        assert (refused.value.message, refused.value.details) == (by_value.message, by_value.details)
        assert clean_matrix(rows, FEATURES) is None
    else:
        assert rows_to_matrix(rows, TABULAR, MAX_ROWS).tobytes() == expected.tobytes()


@DETERMINISTIC
@given(rows=any_rows(NUMBERS))
@example(rows=[[1, 2, 3, 4, 2**64]])
@example(rows=[[1, 2, 3, 4, 10**400]])
@example(rows=[[1, 2, 3, 4, [5]], [1, 2, 3, 4, 5]])
@example(rows=[[1, 2, 3, 4, float("nan")]])
def test_without_bools_strings_or_nulls_the_look_at_every_type_may_be_spared(rows):
    """A caller that knows every value is a number, a list or an object (numbers_only) gets what
    any caller gets."""
    try:
        expected = rows_to_matrix(rows, TABULAR, MAX_ROWS)
    except (InvalidInput, PayloadTooLarge) as refused:
        with pytest.raises(type(refused)) as again:
            rows_to_matrix(rows, TABULAR, MAX_ROWS, numbers_only=True)
        assert (again.value.message, again.value.details) == (refused.message, refused.details)
    else:
        assert rows_to_matrix(rows, TABULAR, MAX_ROWS, numbers_only=True).tobytes() == expected.tobytes()


@DETERMINISTIC
@given(rows=VALID_ROWS, data=st.data())
def test_well_formed_rows_take_the_whole_row_checks(rows, data):
    as_objects = [dict(data.draw(st.permutations(list(zip(FEATURES, row))))) for row in rows]
    for form in (rows, as_objects):
        assert clean_matrix(form, FEATURES).tobytes() == expected_matrix(rows).tobytes()


@DETERMINISTIC
@given(row=st.one_of(st.lists(IN_RANGE, min_size=5, max_size=5), JSON_ANY), extra=st.integers(1, 50))
def test_more_rows_than_the_limit_is_payload_too_large(row, extra):
    with pytest.raises(PayloadTooLarge):
        rows_to_matrix([row] * (MAX_ROWS + extra), TABULAR, MAX_ROWS)


# --- image request bodies --------------------------------------------------------------------------

LIMITS = ImageLimits(max_bytes=256, max_images=4)
IMAGE_MEDIA_TYPES = st.sampled_from(
    ["image/jpeg", "image/png", "IMAGE/PNG", "image/png; charset=binary", " image/jpeg "]
)
CONTENT_TYPES = st.one_of(
    st.none(),
    IMAGE_MEDIA_TYPES,
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "",
            "text/plain",
            "image/gif",
            "multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded",
            "application/jsonx",
            ";",
        ]
    ),
    st.text(max_size=30),
)
BODIES = st.one_of(
    st.binary(max_size=400),
    JSON_ANY.map(lambda value: json_text({"images": value}).encode()),
    JSON_ANY.map(lambda value: json_text(value).encode()),
    st.lists(st.binary(max_size=50).map(lambda b: base64.b64encode(b).decode()), max_size=6).map(
        lambda images: json.dumps({"images": images}).encode()
    ),
    st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


@DETERMINISTIC
@given(content_type=CONTENT_TYPES, body=BODIES)
@example(content_type="application/json", body=DEEP_JSON.encode())
@example(content_type="application/json", body=deep(2000).encode())  # under the size cap: json.loads recurses
@example(content_type="application/json", body=b'{"images": [' + b"9" * 5000 + b"]}")
@example(content_type="application/json", body=b'{"images": ["\xff\xfe"]}')
@example(content_type=None, body=b"\x89PNG\r\n\x1a\n")
def test_image_bodies_raise_only_the_documented_errors(content_type, body):
    try:
        images = images_from_body("skin-lesion", content_type, body, LIMITS).images
    except (UnsupportedMediaType, PayloadTooLarge, InvalidInput):
        return
    assert images and len(images) <= LIMITS.max_images
    assert all(isinstance(image, bytes) and image for image in images)


@DETERMINISTIC
@given(media_type=IMAGE_MEDIA_TYPES, body=st.binary(min_size=1, max_size=LIMITS.max_bytes))
def test_a_raw_image_body_comes_back_as_it_was_sent(media_type, body):
    assert images_from_body("chest-ct", media_type, body, LIMITS).images == [body]


@DETERMINISTIC
@given(
    images=st.lists(st.binary(min_size=1, max_size=LIMITS.max_bytes), min_size=1, max_size=LIMITS.max_images),
    data_urls=st.booleans(),
    content_type=st.sampled_from(["application/json", "application/json; charset=utf-8", "APPLICATION/JSON"]),
)
def test_base64_images_in_json_come_back_as_they_were_encoded(images, data_urls, content_type):
    encoded = [("data:image/png;base64," if data_urls else "") + base64.b64encode(image).decode() for image in images]
    body = json.dumps({"images": encoded}).encode()
    assert images_from_body("chest-ct", content_type, body, LIMITS).images == images


@DETERMINISTIC
@given(size=st.integers(LIMITS.max_bytes + 1, 4 * LIMITS.max_bytes), media_type=IMAGE_MEDIA_TYPES)
@example(size=LIMITS.max_bytes + 1, media_type="image/png")
def test_an_image_over_the_limit_is_payload_too_large_raw_or_base64(size, media_type):
    with pytest.raises(PayloadTooLarge):
        images_from_body("chest-ct", media_type, b"\x89" * size, LIMITS)
    body = json.dumps({"images": [base64.b64encode(b"\x89" * size).decode()]}).encode()
    with pytest.raises(PayloadTooLarge):
        images_from_body("chest-ct", "application/json", body, LIMITS)


# --- image files -> tensors ------------------------------------------------------------------------

SPECS = st.builds(
    lambda size, channels, layout, mean, std: ImageInput(
        input_name="input",
        height=size[0],
        width=size[1],
        channels=channels,
        layout=layout,
        mean=[mean] * channels,
        std=[std] * channels,
    ),
    size=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    channels=st.sampled_from([1, 3]),
    layout=st.sampled_from(["NCHW", "NHWC"]),
    mean=st.floats(0, 1),
    std=st.floats(0.05, 2),
)
IMAGE_MODES = ["RGB", "L", "RGBA", "LA", "P", "I;16", "1", "CMYK"]
# The modes each format can store; anything else is sent as RGB.
STORABLE = {"PNG": ("RGB", "L", "RGBA", "LA", "P", "I;16", "1"), "JPEG": ("RGB", "L", "CMYK")}


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if image.mode not in STORABLE[fmt]:
        image = image.convert("RGB")
    image.save(buffer, fmt)
    return buffer.getvalue()


def random_image(mode: str, width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "I;16":  # 16-bit grayscale, as CT exports are
        return Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    return Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), "RGBA").convert(mode)


@st.composite
def image_files(draw) -> bytes:
    """A PNG or JPEG in any mode and size, as sent, or cut short, or with bytes changed."""
    mode = draw(st.sampled_from(IMAGE_MODES))
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    image = random_image(mode, width, height, draw(st.integers(0, 2**32 - 1)))
    data = encoded(image, draw(st.sampled_from(["PNG", "JPEG"])))
    damage = draw(st.sampled_from(["none", "truncate", "flip"]))
    if damage == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip":
        at = draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8))
        changed = bytearray(data)
        for index in at:
            changed[index] ^= draw(st.integers(1, 255))
        data = bytes(changed)
    return data


def tensor_shape(spec: ImageInput) -> tuple[int, int, int]:
    if spec.layout == "NCHW":
        return (spec.channels, spec.height, spec.width)
    return (spec.height, spec.width, spec.channels)


@IMAGES
@given(
    data=st.one_of(
        image_files(),
        st.binary(max_size=300),
        st.binary(max_size=300).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
        st.binary(max_size=300).map(lambda b: b"\xff\xd8\xff" + b),
    ),
    spec=SPECS,
)
@example(data=b"", spec=ImageInput(input_name="x", height=4, width=4, mean=[0, 0, 0], std=[1, 1, 1]))
@example(
    data=b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
    spec=ImageInput(input_name="x", height=4, width=4, mean=[0, 0, 0], std=[1, 1, 1]),
)
def test_image_files_raise_only_domain_errors_and_give_the_manifest_tensor(data, spec):
    try:
        tensor = tensor_from_bytes(data, spec, pixel_limit=40 * 40)
    except (InvalidInput, UnsupportedMediaType, PayloadTooLarge):
        return
    assert tensor.dtype == np.float32 and tensor.shape == tensor_shape(spec)
    assert np.isfinite(tensor).all()


@IMAGES
@given(spec=SPECS, seed=st.integers(0, 2**32 - 1))
def test_a_png_of_the_models_size_is_exactly_the_normalised_pixels(spec, seed):
    """No resize, lossless: the tensor is (pixels / 255 - mean) / std in the manifest's layout."""
    shape = (spec.height, spec.width) + ((3,) if spec.channels == 3 else ())
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    data = encoded(Image.fromarray(pixels, "RGB" if spec.channels == 3 else "L"), "PNG")
    scaled = pixels.reshape(spec.height, spec.width, spec.channels).astype(np.float32) / 255
    expected = (scaled - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    if spec.layout == "NCHW":
        expected = expected.transpose(2, 0, 1)
    np.testing.assert_array_equal(tensor_from_bytes(data, spec), expected)


@IMAGES
@given(width=st.integers(1, 64), height=st.integers(1, 64), mode=st.sampled_from(["RGB", "L", "P", "I;16"]))
def test_a_png_over_the_pixel_limit_is_payload_too_large(width, height, mode):
    """A PNG decodes at its full size. (A JPEG may decode smaller, at libjpeg's reduced scale,
    which is what the limit counts; the property above covers it.)"""
    spec = ImageInput(input_name="x", height=4, width=4, mean=[0, 0, 0], std=[1, 1, 1])
    data = encoded(random_image(mode, width, height, seed=width * height), "PNG")
    limit = 200
    if width * height > limit:
        with pytest.raises(PayloadTooLarge):
            tensor_from_bytes(data, spec, pixel_limit=limit)
    else:
        assert tensor_from_bytes(data, spec, pixel_limit=limit).shape == (3, 4, 4)


# --- upload and retrain requests -------------------------------------------------------------------

REQUEST_TEXT = st.one_of(
    JSON_ANY.map(json_text),
    st.dictionaries(st.sampled_from(["label", "content_type", "reason", "gate"]), JSON_ANY).map(json_text),
    st.text(max_size=50),
)
REQUEST_BYTES = st.one_of(REQUEST_TEXT.map(str.encode), st.binary(max_size=100))


@DETERMINISTIC
@given(body=REQUEST_BYTES)
@example(body=DEEP_JSON.encode())
@example(body=b'{"label": ' + b"9" * 5000 + b"}")
@example(body=b'{"label": "\xff"}')
def test_upload_requests_raise_only_validation_errors(body):
    for parse in (UploadRequest.model_validate_json, RetrainRequest.model_validate_json):
        try:
            parse(body)
        except ValidationError:
            pass


@DETERMINISTIC
@given(value=JSON_ANY)
def test_decoded_requests_raise_only_validation_errors(value):
    for model in (UploadRequest, RetrainRequest):
        try:
            model.model_validate(value)
        except ValidationError:
            pass


LABELS = st.text(min_size=1, max_size=64)


@DETERMINISTIC
@given(label=LABELS, content_type=st.one_of(st.none(), st.text(max_size=30)))
def test_a_valid_upload_request_round_trips(label, content_type):
    document = {"label": label} if content_type is None else {"label": label, "content_type": content_type}
    request = UploadRequest.model_validate_json(json.dumps(document))
    assert request == UploadRequest.model_validate(document)
    assert request.model_dump() == {
        "label": label,
        "content_type": "image/jpeg" if content_type is None else content_type,
    }


METRICS = st.from_regex(r"[a-z][a-z0-9_]{0,63}", fullmatch=True)
THRESHOLDS = st.floats(allow_nan=False, allow_infinity=False)
GATES = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "min": st.dictionaries(METRICS, THRESHOLDS, max_size=3),
            "max": st.dictionaries(METRICS, THRESHOLDS, max_size=3),
        },
    ),
)


@DETERMINISTIC
@given(reason=st.one_of(st.none(), st.text(max_size=200)), gate=GATES)
def test_a_valid_retrain_request_round_trips_to_its_hyperparameters(reason, gate):
    document = {"reason": reason, "gate": gate}
    request = RetrainRequest.model_validate_json(json.dumps(document))
    assert request.reason == reason
    hyperparameters = request.hyperparameters()
    gate = gate or {}
    expected = {
        f"gate_{side}_{metric}": value for side in ("min", "max") for metric, value in gate.get(side, {}).items()
    }
    assert {key: float(text) for key, text in hyperparameters.items()} == expected


def gate_min_text(bounds: dict) -> str:
    """A retrain request whose minimums are written as given (NaN, Infinity, 1e400 included)."""
    return '{"gate": {"min": {' + ", ".join(f'"{k}": {v}' for k, v in bounds.items()) + "}}}"


@DETERMINISTIC
@given(
    body=st.one_of(
        st.dictionaries(
            METRICS, st.one_of(NUMBERS, st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400"])), max_size=2
        ).map(gate_min_text),
        st.dictionaries(METRICS, NUMBERS, max_size=2).map(lambda bounds: json_text({"gate": {"max": bounds}})),
    )
)
@example(body='{"gate": {"min": {"test_accuracy": NaN}}}')
@example(body='{"gate": {"max": {"cv_recall_std": 1e400}}}')
def test_a_retrain_request_the_api_accepts_is_one_the_training_job_accepts(body):
    """The API answers 202 only for gates the job can apply: training/retrain.py refuses a threshold
    that is not a finite number, so such a job would start only to fail."""
    try:
        request = RetrainRequest.model_validate_json(body)
    except ValidationError:
        return
    default = PromotionGate(minimums={"test_accuracy": 0.5}, maximums={"test_loss": 9.0})
    tightened_gate(default, request.hyperparameters())


# --- S3 notifications and upload keys --------------------------------------------------------------

MODEL_IDS = st.from_regex(r"[a-z0-9][a-z0-9-]{0,62}", fullmatch=True)
KEY_LABELS = st.text(min_size=1, max_size=20).filter(lambda label: "/" not in label)
UPLOAD_IDS = st.text(min_size=1, max_size=20).filter(lambda upload_id: "/" not in upload_id)
EXTENSIONS = st.sampled_from(sorted(UPLOAD_CONTENT_TYPES.values()) + ["JPG", "Png"])
BUCKET = "med-classifier-uploads"


@st.composite
def uploads(draw, bucket: str = BUCKET) -> UploadedObject:
    model, label = draw(MODEL_IDS), draw(KEY_LABELS)
    key = upload_key(model, label, draw(UPLOAD_IDS), draw(EXTENSIONS))
    return UploadedObject(bucket=bucket, key=key, model=model, label=label, size=draw(st.integers(0, 10**12)))


def record(bucket: str, key: str, size, event_name: str = "ObjectCreated:Put") -> dict:
    # S3 URL-encodes the key in a notification (a space as '+').
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": event_name,
        "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key), "size": size}},
    }


@DETERMINISTIC
@given(model=MODEL_IDS, label=KEY_LABELS, upload_id=UPLOAD_IDS, extension=EXTENSIONS, size=st.integers(0, 10**12))
def test_a_key_built_by_upload_key_parses_back(model, label, upload_id, extension, size):
    key = upload_key(model, label, upload_id, extension)
    assert parse_upload_key(BUCKET, key, size) == UploadedObject(BUCKET, key, model, label, size)


@DETERMINISTIC
@given(key=st.one_of(st.text(max_size=60), st.lists(st.text(max_size=12), max_size=6).map("/".join)))
def test_any_key_parses_to_an_upload_of_that_key_or_to_nothing(key):
    upload = parse_upload_key(BUCKET, key)
    if upload is not None:
        prefix, model, label, name = key.split("/")
        assert (prefix, upload.key, upload.model, upload.label) == ("uploads", key, model, label)
        assert name.rpartition(".")[2].lower() in UPLOAD_CONTENT_TYPES.values()


@st.composite
def notifications(draw) -> tuple[str, list[UploadedObject]]:
    """An S3 notification mixing upload records with records that announce none; and its uploads."""
    records, expected = [], []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["upload", "removed", "outside", "other-bucket"]))
        upload = draw(uploads())
        if kind == "upload":
            records.append(record(upload.bucket, upload.key, upload.size))
            expected.append(upload)
        elif kind == "removed":
            records.append(record(upload.bucket, upload.key, upload.size, "ObjectRemoved:Delete"))
        elif kind == "outside":
            key = draw(
                st.sampled_from(["models/x/production.json", "uploads/x.png", "uploads/A/b/c.png", "uploads/m/l/x.gif"])
            )
            records.append(record(BUCKET, key, upload.size))
        else:
            records.append(record("another-bucket", upload.key, upload.size))
    return json.dumps({"Records": records}), expected


@DETERMINISTIC
@given(notification=notifications())
def test_a_notification_yields_exactly_its_uploads(notification):
    body, expected = notification
    assert uploads_in_notification(body, bucket=BUCKET) == expected


@DETERMINISTIC
@given(upload=uploads())
def test_a_single_upload_record_yields_that_upload(upload):
    body = json.dumps({"Records": [record(upload.bucket, upload.key, upload.size)]})
    assert uploads_in_notification(body) == [upload]
    assert uploads_in_notification(json.dumps({"Event": "s3:TestEvent", "Bucket": BUCKET})) == []


def notification_shaped(leaf) -> st.SearchStrategy:
    """Records whose every field may hold anything."""
    field = st.one_of(leaf, st.just(None))
    created = st.fixed_dictionaries({}, optional={"key": field, "size": field})
    s3 = st.fixed_dictionaries(
        {},
        optional={
            "bucket": st.one_of(field, st.fixed_dictionaries({"name": field})),
            "object": st.one_of(field, created),
        },
    )
    one = st.one_of(
        field,
        st.fixed_dictionaries(
            {"eventName": st.one_of(st.just("ObjectCreated:Put"), field)}, optional={"s3": st.one_of(field, s3)}
        ),
    )
    return st.fixed_dictionaries({}, optional={"Records": st.one_of(field, st.lists(one, max_size=3)), "Event": field})


@DETERMINISTIC
@given(
    body=st.one_of(
        st.text(max_size=60),
        JSON_ANY.map(json_text),
        notification_shaped(JSON_ANY).map(json_text),
        notification_shaped(st.one_of(NUMBERS, st.sampled_from(["uploads/m/l/x.png", "b"]))).map(json_text),
    ),
    bucket=st.one_of(st.none(), st.just(BUCKET)),
)
@example(body=DEEP_JSON, bucket=None)
@example(
    body='{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, '
    '"object": {"key": "uploads/chest-ct/normal/x.png", "size": 1e400}}}]}',
    bucket=None,
)
def test_notifications_raise_only_value_errors(body, bucket):
    try:
        found = uploads_in_notification(body, bucket=bucket)
    except ValueError:
        return
    assert all(isinstance(upload, UploadedObject) and isinstance(upload.key, str) for upload in found)


# --- job state-change events -----------------------------------------------------------------------

SOURCES = st.one_of(st.sampled_from(["aws.sagemaker", "aws.batch", "aws.s3", ""]), st.text(max_size=15))
DETAIL_KEYS = [
    "TrainingJobName",
    "TrainingJobStatus",
    "FailureReason",
    "SecondaryStatus",
    "jobName",
    "status",
    "statusReason",
    "container",
]


@DETERMINISTIC
@given(
    source=SOURCES,
    detail=st.one_of(
        st.dictionaries(
            st.sampled_from(DETAIL_KEYS),
            st.one_of(JSON_ANY, st.sampled_from(sorted({*SAGEMAKER_STATES, *BATCH_STATES}))),
        ),
        st.dictionaries(st.text(max_size=10), JSON_ANY, max_size=4),
    ),
)
def test_job_events_of_any_shape_give_a_change_or_nothing(source, detail):
    change = state_change_from_event(source, detail)
    assert change is None or isinstance(change, JobStateChange)


NAMES = st.text(min_size=1, max_size=40)
REASONS = st.one_of(
    st.none(), st.text(max_size=40), st.sampled_from(["AlgorithmError: boom", "ClientError: x", "MaxRuntimeExceeded"])
)


@DETERMINISTIC
@given(
    name=NAMES,
    status=st.sampled_from(sorted(SAGEMAKER_STATES)),
    reason=REASONS,
    secondary=st.one_of(st.none(), st.sampled_from(["MaxRuntimeExceeded", "Stopped", "Training"])),
)
def test_a_sagemaker_event_gives_its_jobs_state(name, status, reason, secondary):
    detail = {
        "TrainingJobName": name,
        "TrainingJobStatus": status,
        "FailureReason": reason,
        "SecondaryStatus": secondary,
    }
    change = state_change_from_event("aws.sagemaker", detail)
    assert (change.job_id, change.state, change.service_status) == (name, SAGEMAKER_STATES[status], status)
    assert (change.failure_code is not None) == (status in ("Failed", "Stopped"))
    assert change.detail is None or change.failure_code is not None


@DETERMINISTIC
@given(name=NAMES, status=st.sampled_from(sorted(BATCH_STATES)), reason=REASONS)
def test_a_batch_event_gives_its_jobs_state(name, status, reason):
    change = state_change_from_event("aws.batch", {"jobName": name, "status": status, "statusReason": reason})
    assert (change.job_id, change.state, change.service_status) == (name, BATCH_STATES[status], status)
    assert (change.failure_code is not None) == (status == "FAILED")


@DETERMINISTIC
@given(name=NAMES, status=st.text(max_size=12).filter(lambda s: s not in SAGEMAKER_STATES and s not in BATCH_STATES))
def test_an_untracked_status_or_source_gives_nothing(name, status):
    assert state_change_from_event("aws.sagemaker", {"TrainingJobName": name, "TrainingJobStatus": status}) is None
    assert state_change_from_event("aws.batch", {"jobName": name, "status": status}) is None
    assert state_change_from_event("aws.ecs", {"jobName": name, "status": "SUCCEEDED"}) is None
    assert state_change_from_event("aws.sagemaker", {"TrainingJobName": "", "TrainingJobStatus": "Completed"}) is None
