"""Checks on the raw API Gateway proxy event, made before Powertools reads the body.

Powertools' request validation runs before any middleware of ours and parses the body itself:
form and multipart bodies as forms, any media type that merely starts with "application/json"
as JSON, a body that is not UTF-8 into a 500, JSON nested thousands of levels deep into a
RecursionError (500), an integer of more digits than Python converts into a ValueError (500).
So each API function's handler calls `refusal` on the event before `app.resolve` and answers
the proxy response it returns, in the one error shape. In order: media type (415), size (413),
UTF-8 (400), then JSON nesting and number length (400), all from the raw body, in time linear
in its size (numpy, no regular expression: one that skips JSON strings backtracks badly on
runs of escaped quotes). GET routes take no body: their requests are not checked.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ..domain.errors import ClassifierError
from .error_shape import error_body

JSON = "application/json"
BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Our request schemas nest 3 levels; Python's parser recurses once per level.
DEFAULT_MAX_JSON_DEPTH = 32

_FEW_STRINGS = 4096  # up to this many quotes, split and join beat a pass over every byte
_QUOTE = ord('"')
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class BodyPolicy:
    """What one function's POST routes accept."""

    media_types: tuple[str, ...]  # without parameters, lower case
    hint: str  # what to send instead, for the 415 message
    max_bytes: int
    missing_media_type_is_json: bool = False  # as Powertools reads a body without Content-Type
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH


def json_policy(max_bytes: int) -> BodyPolicy:
    """Routes whose body Powertools validates as JSON."""
    return BodyPolicy((JSON,), "application/json", max_bytes, missing_media_type_is_json=True)


class RequestRefused(ClassifierError):
    def __init__(self, status_code: int, code: str, message: str, details: list | None = None):
        super().__init__(message, details=details)
        self.status_code, self.code = status_code, code


def refusal(
    event: Mapping, policy: BodyPolicy | Callable[[], BodyPolicy], logger=None, *, nesting: bool = True
) -> dict | None:
    """The API Gateway proxy response refusing this request, or None to let it through. A callable
    policy is called only for a request with a body (GET /openapi.json reads no settings).
    `nesting=False` leaves the JSON nesting unchecked, for a reader that refuses deep nesting itself
    (the fast path's orjson stops at 1024 levels and takes only a body 3 levels deep); whatever it
    does not answer must then be checked again in full before the resolver reads it."""
    try:
        check_request(event, policy, nesting=nesting)
    except RequestRefused as exc:
        if logger is not None:
            logger.info("request refused", extra={"code": exc.code, "reason": exc.message})
        return proxy_error(exc.status_code, exc.code, exc.message, exc.details)
    return None


def proxy_error(status: int, code: str, message: str, details: list | None = None) -> dict:
    """A proxy response in the one error shape, as Powertools would serialise it."""
    return {
        "statusCode": status,
        "multiValueHeaders": {"Content-Type": [JSON]},
        "body": json.dumps(error_body(code, message, details), separators=(",", ":")),
        "isBase64Encoded": False,
    }


def check_request(event: Mapping, policy: BodyPolicy | Callable[[], BodyPolicy], *, nesting: bool = True) -> None:
    """Raises RequestRefused for a path no route may match or a body this function must not parse."""
    check_path(event)
    if str(event.get("httpMethod") or "").upper() in BODYLESS_METHODS:
        return
    policy = policy if isinstance(policy, BodyPolicy) else policy()
    media_type = _check_media_type(content_type(event), policy)
    body, base64_encoded = event.get("body") or "", bool(event.get("isBase64Encoded"))
    raw = None if base64_encoded else body.encode("utf-8", "surrogatepass")
    size = len(raw) if raw is not None else base64_size(body)
    if size > policy.max_bytes:
        raise RequestRefused(
            413,
            "payload_too_large",
            f"The request body is {size} bytes; at most {policy.max_bytes} are accepted here.",
            details=[{"max_request_bytes": policy.max_bytes}],
        )
    if media_type in ("", JSON) and size:
        raw = _base64_decoded(body) if raw is None else raw
        check_utf8(raw)
        check_json_shape(raw, policy.max_json_depth if nesting else None)


def check_path(event: Mapping) -> None:
    """Powertools matches routes with `$`, which also matches before a trailing newline: without this,
    GET /models/%0A would be answered by GET /models. No model id or job id holds a control character."""
    path = str(event.get("path") or "")
    if _CONTROL_CHARACTER.search(path):
        method = str(event.get("httpMethod") or "")
        raise RequestRefused(
            404, "not_found", f"No route {method} {path!r}: the path holds a control character. See /docs for the API."
        )


def content_type(event: Mapping) -> str:
    """The Content-Type header, whatever its case ('' without one)."""
    for name, value in (event.get("headers") or {}).items():
        if name.lower() == "content-type":
            return value or ""
    return ""


def _check_media_type(header: str, policy: BodyPolicy) -> str:
    media_type = header.split(";", 1)[0].strip().lower()
    if not media_type and policy.missing_media_type_is_json:
        return ""
    if not media_type:
        raise RequestRefused(415, "unsupported_media_type", f"The request has no Content-Type: send {policy.hint}.")
    if media_type not in policy.media_types:
        raise RequestRefused(
            415, "unsupported_media_type", f"Content-Type {media_type!r} is not accepted here: send {policy.hint}."
        )
    return media_type


def base64_size(body: str) -> int:
    """The decoded size of a base64 body, from its length (API Gateway's base64 has no line breaks)."""
    return len(body) * 3 // 4 - body.endswith("=") - body.endswith("==")


def _base64_decoded(body: str) -> bytes:
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise RequestRefused(400, "invalid_body_encoding", "The request body is not valid base64.") from None


def check_utf8(raw: bytes) -> None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestRefused(
            400,
            "invalid_body_encoding",
            f"The request body is not UTF-8 (at byte {exc.start}): JSON must be UTF-8 encoded.",
        ) from None


def check_json_shape(raw: bytes, max_depth: int | None) -> None:
    """Refuses JSON nested deeper than `max_depth` (None: not checked) or with an integer too long for
    Python to read. For a body that is not JSON the answer may be either way; the parser then refuses it."""
    codes = np.frombuffer(raw, dtype=np.uint8)
    # The common body is answered from bounds: it cannot nest deeper than it has opening brackets,
    # and a run of digits outside its strings is a run of digits of the whole body.
    if max_depth is not None and _openers(codes) > max_depth:
        depth = nesting_depth(outside_strings(raw))
        if depth > max_depth:
            raise RequestRefused(
                400, "json_too_deep", f"The JSON body nests {depth} levels deep; at most {max_depth} are accepted."
            )
    limit = sys.get_int_max_str_digits()
    # A substring search (linear, in C) over the digits as zeros finds whether any run is too long.
    if limit and len(raw) > limit and b"0" * (limit + 1) in raw.translate(_DIGITS_AS_ZEROS):
        digits = longest_number(outside_strings(raw))
        if digits > limit:
            raise RequestRefused(
                400,
                "number_too_long",
                f"A number in the JSON body has {digits} digits; at most {limit} are accepted.",
            )


def _openers(codes: np.ndarray) -> int:
    return int(np.count_nonzero(codes == ord("["))) + int(np.count_nonzero(codes == ord("{")))


_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= code <= 0x39 else 0x20 for code in range(256))


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and (exclusive) ends of the runs of True in a boolean array."""
    edges = np.flatnonzero(np.diff(mask.view(np.int8), prepend=np.int8(0), append=np.int8(0)))
    return edges[::2], edges[1::2]


def outside_strings(raw: bytes) -> bytes:
    """The bytes outside JSON strings, in order, strings replaced by one quote (a separator).
    For a body of base64 images that is a few bytes, so what follows costs nothing."""
    # Without escaped backslashes, then escaped quotes, every quote left opens or closes a string.
    text = raw.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in raw else raw
    if text.count(b'"') <= _FEW_STRINGS:
        return b'"'.join(text.split(b'"')[::2])
    codes = np.frombuffer(text, dtype=np.uint8)
    inside = np.bitwise_xor.accumulate((codes == _QUOTE).view(np.uint8))  # 1 from an opening quote on
    return codes[inside == 0].tobytes()


def nesting_depth(structure: bytes) -> int:
    """The deepest nesting of arrays and objects."""
    codes = np.frombuffer(structure, dtype=np.uint8)
    opens = (codes == ord("[")) | (codes == ord("{"))
    closes = (codes == ord("]")) | (codes == ord("}"))
    steps = opens.view(np.int8) - closes.view(np.int8)
    steps = steps[np.flatnonzero(steps)]
    return max(0, int(np.cumsum(steps, dtype=np.int32).max())) if steps.size else 0


def longest_number(structure: bytes) -> int:
    """The longest run of digits."""
    codes = np.frombuffer(structure, dtype=np.uint8)
    starts, ends = _runs((codes >= ord("0")) & (codes <= ord("9")))
    return int((ends - starts).max()) if starts.size else 0
