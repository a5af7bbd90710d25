"""The predict routes' successful requests, answered without the resolver.

Powertools' resolver with request and response validation costs more per request than the
model itself (about 100 µs for one row, 1 ms for 100 rows on the dev machine, against 6-20 µs
of onnxruntime), and so does the standard library's JSON. So each predict function's handler
first offers the event to its fast path: the same domain call the route makes, its result
written with orjson into the response the resolver would build (`json_response`; the resolvers
use the same serializer). Anything else returns None and the resolver answers as it always has:
another method or path, a body the route's schema does not take as it stands, and every error
(the domain raises, the resolver runs the route again and answers in its own words). So no
message exists twice, and tests/integration/test_fast_path.py asserts that both answer every
request alike.
"""

from __future__ import annotations

import decimal
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from ..domain.manifest import is_valid_model_id

JSON = "application/json"
_PREDICT_PATH = re.compile(r"/models/([^/]+)/predict")


def _jsonable(value: Any) -> Any:
    # What Powertools' JSON encoder writes for a type orjson does not know.
    if isinstance(value, decimal.Decimal):
        return math.nan if value.is_nan() else str(value)
    raise TypeError  # orjson says which type


def json_text(value: Any) -> str:
    """Compact JSON, as the resolvers' serializer (orjson: UTF-8 rather than \\u escapes, a float
    as its shortest round-trip digits, NaN as null)."""
    return orjson.dumps(value, default=_jsonable, option=orjson.OPT_NON_STR_KEYS).decode()


def json_response(body: Any, status: int = 200) -> dict:
    """A JSON proxy response, as the resolver builds one."""
    return {
        "statusCode": status,
        "body": json_text(body),
        "isBase64Encoded": False,
        "multiValueHeaders": {"Content-Type": [JSON]},
    }


def header(event: Mapping, name: str) -> str | None:
    """A request header, as Powertools reads it: whatever its case, the last of several spellings."""
    value = None
    for key, header_value in (event.get("headers") or {}).items():
        if key.lower() == name:
            value = header_value
    return value


def predict_model(event: Mapping) -> str | None:
    """The model id of a POST /models/{model}/predict event, None for any other request."""
    if event.get("httpMethod") != "POST":
        return None
    matched = _PREDICT_PATH.fullmatch(str(event.get("path") or ""))
    return matched.group(1) if matched and is_valid_model_id(matched.group(1)) else None


def instances(event: Mapping) -> list | None:
    """The rows of a tabular predict body: a JSON object whose one key is "instances", a list. None
    otherwise (the legacy "features", any other key or type: the resolver reads those). A row that
    is not a list or an object, e.g. of a flat row, fails the domain's checks, and the resolver
    then answers it in the schema's words."""
    body = event.get("body")
    if event.get("isBase64Encoded") or not isinstance(body, str):
        return None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:  # NaN, integers beyond 64 bits, lone surrogates: json.loads reads them
        return None
    if type(parsed) is not dict or len(parsed) != 1:
        return None
    rows = parsed.get("instances")
    return rows if type(rows) is list else None


def numbers_only(event: Mapping) -> bool:
    """True when the JSON body's only string is its one key and it has no true, false or null: then
    every value it holds is a number, a list or an object."""
    body = str(event.get("body") or "")
    # true and null hold a "u", false and null an "l"; numbers and the key "instances" neither. One
    # letter is found at memchr's speed, a word 40 times slower (17 µs in a body of 100 rows).
    return body.count('"') == 2 and "u" not in body and "l" not in body


def asks_explanation(event: Mapping) -> bool:
    """True when the query string names explain: the resolver reads it (a boolean query parameter,
    validated as the route declares it), so such a request is not answered here."""
    return any(
        "explain" in (event.get(key) or {}) for key in ("queryStringParameters", "multiValueQueryStringParameters")
    )


def answer(predict: Callable[[], dict]) -> dict | None:
    """The response for the body `predict` returns, or None when it raised: the domain refused the
    request, or something failed; the resolver then runs the route and answers in its words."""
    try:
        return json_response(predict())
    except Exception:  # noqa: BLE001 - a refusal, or a failure the resolver's handlers answer (500)
        return None
