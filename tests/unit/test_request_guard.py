"""The checks every API function makes on the raw API Gateway event before Powertools reads the body:
media type (415), size (413), UTF-8 (400), JSON nesting and number length (400), GET left alone."""

import base64
import json

import pytest

from med_classifier.api.image_requests import MEDIA_TYPE_HINT, MEDIA_TYPES
from med_classifier.api.request_guard import (
    BodyPolicy,
    json_policy,
    longest_number,
    nesting_depth,
    outside_strings,
    proxy_error,
    refusal,
)

JSON_ROUTE = json_policy(max_bytes=1000)
IMAGE_ROUTE = BodyPolicy(MEDIA_TYPES, MEDIA_TYPE_HINT, max_bytes=1000)


def event(body: str | bytes | None = "{}", content_type: str | None = "application/json", method="POST") -> dict:
    """A proxy event; bytes bodies arrive base64-encoded, as binary media types do."""
    binary = isinstance(body, bytes)
    return {
        "httpMethod": method,
        "headers": {} if content_type is None else {"Content-Type": content_type},
        "body": base64.b64encode(body).decode() if binary else body,
        "isBase64Encoded": binary,
    }


def refused(ev: dict, policy: BodyPolicy = JSON_ROUTE) -> tuple[int, dict] | None:
    response = refusal(ev, policy)
    return None if response is None else (response["statusCode"], json.loads(response["body"])["error"])


def error(code: str, message: str, details=None) -> dict:
    return {"code": code, "message": message, "details": details or []}


# --- media type ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("image/png", b"\x89PNG\r\n\x1a\n raw image bytes"),  # measured: a 500 on the tabular route
        ("application/x-www-form-urlencoded", "instances=1"),  # Powertools would parse it as a form
        ("multipart/form-data; boundary=x", '--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--x--'),
        ("application/jsonfoo", "{}"),  # Powertools accepts whatever starts with "application/json"
        ("application/json-patch+json", "[]"),
        ("text/plain", "17.99, 10.38"),
    ],
)
def test_a_json_route_refuses_every_other_media_type_before_the_body_is_parsed(content_type, body):
    media_type = content_type.split(";")[0]
    assert refused(event(body, content_type)) == (
        415,
        error("unsupported_media_type", f"Content-Type {media_type!r} is not accepted here: send application/json."),
    )


@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON; charset=utf-8", None, ""])
def test_a_json_route_takes_json_with_parameters_or_no_content_type_as_powertools_reads_it(content_type):
    assert refused(event('{"instances": [[1]]}', content_type)) is None


def test_the_header_is_found_whatever_its_case():
    ev = event("{}", None)
    ev["headers"] = {"content-TYPE": "text/plain"}
    assert refused(ev)[0] == 415
    assert refused({**ev, "headers": None}) is None  # a direct invocation may have no headers at all


def test_the_image_route_needs_a_content_type():
    assert refused(event(b"\xff\xd8\xff", None), IMAGE_ROUTE) == (
        415,
        error(
            "unsupported_media_type",
            'The request has no Content-Type: send image/jpeg or image/png, or application/json with {"images": '
            '["<base64>", ...]}.',
        ),
    )


def test_the_image_route_takes_its_three_media_types_and_names_them_when_refusing():
    for content_type in ("image/jpeg", "image/png", "application/json"):
        assert (
            refused(event(b"\x89PNG" if content_type != "application/json" else "{}", content_type), IMAGE_ROUTE)
            is None
        )
    assert refused(event(b"GIF89a", "image/gif"), IMAGE_ROUTE) == (
        415,
        error("unsupported_media_type", f"Content-Type 'image/gif' is not accepted here: send {MEDIA_TYPE_HINT}."),
    )


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "get"])
def test_get_routes_ignore_bodies(method):
    assert refused(event(b"\xff" * 5000, "text/plain", method=method)) is None


# --- size ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, size",
    [("x" * 1001, 1001), (b"x" * 1001, 1001), ("é" * 501, 1002)],
    ids=["text", "base64, sized without decoding", "text counted in UTF-8 bytes"],
)
def test_a_body_over_the_limit_is_413_before_it_is_parsed(body, size):
    assert refused(event(body)) == (
        413,
        error(
            "payload_too_large",
            f"The request body is {size} bytes; at most 1000 are accepted here.",
            [{"max_request_bytes": 1000}],
        ),
    )


def test_a_body_of_exactly_the_limit_passes_the_size_check():
    assert refused(event('"' + "x" * 998 + '"')) is None
    assert refused(event(b"[" + b"1" * 998 + b"]")) is None


# --- encoding ------------------------------------------------------------------------------------------


def test_a_json_body_that_is_not_utf8_is_400():
    assert refused(event(b'{"instances": [[1]]}\xff')) == (
        400,
        error("invalid_body_encoding", "The request body is not UTF-8 (at byte 20): JSON must be UTF-8 encoded."),
    )
    assert refused(event(b"\xfe\xff", None))[0] == 400  # no Content-Type: read as JSON


def test_a_text_body_with_a_lone_surrogate_is_not_utf8_either():
    # A str body can hold what no UTF-8 byte sequence encodes ("\udcff" in the event's JSON).
    assert refused(event('{"a": "\udcff"}')) == (
        400,
        error("invalid_body_encoding", "The request body is not UTF-8 (at byte 7): JSON must be UTF-8 encoded."),
    )


def test_a_json_body_flagged_base64_that_is_not_base64_is_400():
    ev = {**event("{}"), "body": "%%%%", "isBase64Encoded": True}
    assert refused(ev) == (400, error("invalid_body_encoding", "The request body is not valid base64."))


def test_an_image_body_is_binary_and_not_checked_as_text():
    assert refused(event(b"\xff\xd8\xff\xfe\xff", "image/jpeg"), IMAGE_ROUTE) is None


# --- JSON shape ----------------------------------------------------------------------------------------


def test_json_nested_deeper_than_the_limit_is_400():
    assert refused(event("[" * 33 + "]" * 33)) == (
        400,
        error("json_too_deep", "The JSON body nests 33 levels deep; at most 32 are accepted."),
    )
    assert refused(event("[" * 32 + "]" * 32)) is None
    # Measured: 5,000 levels raised RecursionError in the parser (a 500).
    deep = json_policy(max_bytes=20_000)
    assert refused(event("[" * 5000 + "]" * 5000), deep)[1]["message"] == (
        "The JSON body nests 5000 levels deep; at most 32 are accepted."
    )


def test_an_integer_longer_than_python_reads_is_400():
    # Python refuses to convert more than 4300 digits (a ValueError: a 500 from Powertools' parser).
    long = json_policy(max_bytes=10_000)
    assert refused(event("[" + "9" * 4301 + "]"), long) == (
        400,
        error("number_too_long", "A number in the JSON body has 4301 digits; at most 4300 are accepted."),
    )
    assert refused(event("[" + "9" * 4300 + "]"), long) is None
    assert refused(event('["' + "9" * 4301 + '"]'), long) is None  # a string of digits is a string


def shape(text: str | bytes) -> tuple[int, int]:
    structure = outside_strings(text.encode() if isinstance(text, str) else text)
    return nesting_depth(structure), longest_number(structure)


@pytest.mark.parametrize(
    "text, depth, digits",
    [
        ('{"a": [1, 22]}', 2, 2),
        ('"[[[[123"', 0, 0),  # brackets and digits inside a string do not count
        (r'["\"[[[", 1]', 1, 1),  # an escaped quote does not end the string
        (r'["\\", [[1]]]', 3, 1),  # an escaped backslash does not escape the quote after it
        (r'["\\\"[[", 7]', 1, 1),  # three backslashes: one escaped backslash, then an escaped quote
        ('["a"1"b"2]', 1, 1),  # a string between two numbers keeps them apart
        ("", 0, 0),
        ("]]][[", 0, 0),  # not JSON: the parser refuses it afterwards
    ],
)
def test_the_scan_sees_the_structure_outside_strings(text, depth, digits):
    assert shape(text) == (depth, digits)


def depth_of(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    return 0


def test_the_scan_agrees_with_the_parser_on_many_strings_and_escapes():
    # More strings than the split-and-join path takes: the vectorised path must give the same answer.
    document = [['x\\"[' * (i % 3), i, {'k"]': [[[i]]]}] for i in range(3000)]
    text = json.dumps(document)
    assert text.count('"') > 4096
    assert shape(text) == (depth_of(json.loads(text)), 4) == (6, 4)


def test_a_body_of_escaped_quotes_is_one_string():
    assert shape(b'["' + b'\\"' * 100_000 + b'"]') == (1, 0)


# --- the response ---------------------------------------------------------------------------------------


def test_the_refusal_is_a_proxy_response_in_the_one_error_shape():
    assert proxy_error(415, "unsupported_media_type", "No.") == {
        "statusCode": 415,
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "body": '{"error":{"code":"unsupported_media_type","message":"No.","details":[]}}',
        "isBase64Encoded": False,
    }


def test_a_refusal_is_logged_with_its_code():
    logged = []

    class Logger:
        def info(self, message, extra):
            logged.append((message, extra))

    refusal(event("x", "text/plain"), JSON_ROUTE, Logger())
    assert logged == [
        (
            "request refused",
            {
                "code": "unsupported_media_type",
                "reason": "Content-Type 'text/plain' is not accepted here: send application/json.",
            },
        )
    ]


def test_an_empty_body_is_left_to_the_route():
    assert refused(event("")) is None and refused(event(None)) is None and refused(event(b"")) is None


@pytest.mark.parametrize("path", ["/models/\n", "/models/breast-cancer\n", "/models/chest-ct/retrain/j\x00", "/x\x7f"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_path_with_a_control_character_matches_no_route(path, method):
    ev = {**event(method=method), "path": path}
    assert refused(ev) == (
        404,
        error("not_found", f"No route {method} {path!r}: the path holds a control character. See /docs for the API."),
    )


def test_ordinary_paths_pass_the_path_check():
    assert refused({**event(method="GET"), "path": "/models/breast-cancer"}) is None
