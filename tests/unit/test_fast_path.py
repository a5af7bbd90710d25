"""med_classifier.api.fast_path: which requests the predict functions answer without their resolver,
and the JSON they write (the resolvers write theirs with the same serializer). Each condition on
its own; tests/integration/test_fast_path.py checks the answers against the resolver's."""

from __future__ import annotations

import decimal
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from med_classifier.api import fast_path
from med_classifier.api.routes_loader import load_routes
from tests.helpers.properties import DETERMINISTIC

pytestmark = pytest.mark.usefixtures("failing_examples_are_printed")

ROW = [1.5, 2, -3.25]


def event(body=None, *, method="POST", path="/models/breast-cancer/predict", base64=False, **extra) -> dict:
    text = body if isinstance(body, str) or body is None else json.dumps(body)
    return {"httpMethod": method, "path": path, "body": text, "isBase64Encoded": base64, **extra}


@pytest.mark.parametrize(
    "request_event, model",
    [
        (event(), "breast-cancer"),
        (event(path="/models/skin-lesion/predict"), "skin-lesion"),
        (event(method="GET"), None),
        (event(method="post"), None),  # API Gateway writes methods in capitals
        (event(path="/models/breast-cancer/predict/"), None),
        (event(path="/models/breast-cancer"), None),
        (event(path="/v1/models/breast-cancer/predict"), None),
        (event(path="/models/a/b/predict"), None),
        (event(path="/models/Breast_Cancer/predict"), None),  # not a model id: the resolver answers 404
        (event(path=None), None),
    ],
)
def test_only_a_post_to_a_models_predict_path_is_taken(request_event, model):
    assert fast_path.predict_model(request_event) == model


@pytest.mark.parametrize(
    "body",
    [
        {"instances": [ROW]},
        {"instances": [ROW, {"a": 1}]},
        # The domain refuses these: answer() returns None and the resolver answers in its words.
        {"instances": []},
        {"instances": ROW},  # a flat row
        {"instances": [ROW, 5]},
        {"instances": [ROW, "x"]},
    ],
)
def test_a_list_of_instances_is_taken_as_it_is(body):
    assert fast_path.instances(event(body)) == body["instances"]


@pytest.mark.parametrize(
    "request_event",
    [
        event({"features": [ROW]}),  # the legacy field: the resolver reads it
        event({"instances": [ROW], "features": [ROW]}),  # two fields: the schema's own message
        event({"instances": [ROW], "images": []}),
        event({"instances": None}),
        event({"instances": {"0": ROW}}),
        event([ROW]),
        event("[1, 2"),  # not JSON
        event('{"instances": [[NaN, 1, 2]]}'),  # Python's JSON reads NaN; orjson does not
        event('{"instances": [["\\ud800", 1, 2]]}'),  # a lone surrogate
        event(json.dumps({"instances": [ROW]}).encode().hex(), base64=True),  # a base64 body
        event(None),
    ],
)
def test_any_other_body_is_left_to_the_resolver(request_event):
    assert fast_path.instances(request_event) is None


@pytest.mark.parametrize(
    "body, plain",
    [
        ({"instances": [ROW, [[1.5], 2, {}]]}, True),
        ({"instances": [[True, 1, 2]]}, False),
        ({"instances": [[False]]}, False),
        ({"instances": [[None]]}, False),
        ({"instances": [["1.5"]]}, False),
        ({"instances": [{"a": 1}]}, False),  # another key: a string
        ('{"instances": [[1, 2]]} ', True),
        ('{"instances": [[1e5, -2.5E-3, 0.1]]}', True),  # exponents: an "e" is no literal
        ('{"\\u0069nstances": [[1]]}', False),  # an escaped key: not known to be plain, so looked at
        ("", False),
    ],
)
def test_a_body_holds_numbers_only_without_other_strings_bools_or_nulls(body, plain):
    assert fast_path.numbers_only(event(body)) is plain


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)


def leaves(value):
    if isinstance(value, list):
        return [leaf for item in value for leaf in leaves(item)]
    if isinstance(value, dict):
        return [*value.keys(), *(leaf for item in value.values() for leaf in leaves(item))]
    return [value]


@DETERMINISTIC
@given(rows=st.lists(JSON_VALUES, max_size=4), ensure_ascii=st.booleans())
def test_a_body_said_to_hold_numbers_only_holds_nothing_else(rows, ensure_ascii):
    # The fast path skips the domain's per-value type scan on the strength of this answer.
    body = json.dumps({"instances": rows}, ensure_ascii=ensure_ascii)
    numbers = [leaf for leaf in leaves(rows) if type(leaf) in (int, float)]
    assert fast_path.numbers_only(event(body)) is (numbers == leaves(rows))


def test_the_last_spelling_of_a_header_wins_whatever_its_case_as_in_powertools():
    headers = {"Content-Type": "image/png", "accept": "*/*", "content-type": "image/jpeg"}
    assert fast_path.header({"headers": headers}, "content-type") == "image/jpeg"
    assert fast_path.header({"headers": {"CONTENT-TYPE": "image/png"}}, "content-type") == "image/png"
    assert fast_path.header({"headers": None}, "content-type") is None
    assert fast_path.header({}, "content-type") is None


def test_json_is_compact_utf8_and_writes_decimals_as_powertools_does():
    value = {"a": [1, 2.5, None], "ß": "±", 3: decimal.Decimal("1.10"), "nan": decimal.Decimal("NaN")}
    assert fast_path.json_text(value) == '{"a":[1,2.5,null],"ß":"±","3":"1.10","nan":null}'
    assert json.loads(fast_path.json_text({"x": math.nan})) == {"x": None}
    with pytest.raises(TypeError, match="Type is not JSON serializable: set"):
        fast_path.json_text({"a": {1}})


def test_a_response_is_the_proxy_shape_the_resolver_builds():
    assert fast_path.json_response({"ok": True}) == {
        "statusCode": 200,
        "body": '{"ok":true}',
        "isBase64Encoded": False,
        "multiValueHeaders": {"Content-Type": ["application/json"]},
    }
    assert fast_path.json_response([], status=201)["statusCode"] == 201


def test_answer_is_none_when_the_prediction_raises_anything():
    from med_classifier.domain.errors import InvalidInput

    def refused():
        raise InvalidInput("no")

    def broken():
        raise RuntimeError("a bug: the resolver's handler answers it (500)")

    assert fast_path.answer(refused) is None
    assert fast_path.answer(broken) is None
    assert fast_path.answer(lambda: {"x": {1}}) is None  # not JSON: the resolver answers it
    assert fast_path.answer(lambda: {"x": 1})["body"] == '{"x":1}'


# --- the routes, loaded on demand -----------------------------------------------------------------------


@pytest.fixture
def function_dir(tmp_path):
    (tmp_path / "app.py").write_text("import sys\nSERVICE = object()\n")
    (tmp_path / "routes.py").write_text(
        "from types import ModuleType\nhandler: ModuleType = globals()['handler']\nseen = handler.SERVICE\n"
    )
    return tmp_path


def load_handler(folder, name: str):
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, folder / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_routes_see_their_handler_module_and_each_handler_gets_its_own(function_dir):
    first, second = load_handler(function_dir, "first_app"), load_handler(function_dir, "second_app")
    routes_of_first, routes_of_second = load_routes(first), load_routes(second)
    assert routes_of_first.seen is first.SERVICE and routes_of_second.seen is second.SERVICE
    assert routes_of_first.__name__ == "first_app_routes" and routes_of_first is not routes_of_second


def test_routes_imported_without_a_handler_fail_at_once(function_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(function_dir))
    with pytest.raises(KeyError, match="handler"):
        __import__("routes")


def test_routes_that_fail_to_import_are_not_left_half_loaded(function_dir):
    import sys

    (function_dir / "routes.py").write_text("raise RuntimeError('broken routes')\n")
    handler = load_handler(function_dir, "broken_app")
    with pytest.raises(RuntimeError, match="broken routes"):
        load_routes(handler)
    assert "broken_app_routes" not in sys.modules
