"""The API's one OpenAPI document: every route of every function behind API Gateway.

On AWS each function is deployed on its own, so no function can ask the others for their
routes at run time. Instead `python -m scripts.openapi` loads every function's resolver, asks
Powertools for each one's document (get_openapi_json_schema), and `merged_document` here
turns them into the routes API Gateway serves (template.yaml's Api events). The result is
committed as functions/predict/openapi.json; the predict function serves it at
/openapi.json and, with Swagger UI, at /docs. A test fails when the committed file differs
from a fresh generation, so the document cannot drift from the code or the template.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types

from .. import NOT_FOR_CLINICAL_USE

INFO = {
    "title": "Medical classifier inference API",
    "version": "1.0.0",
    "description": "ONNX classifiers served by AWS Lambda behind API Gateway: the web page, the model "
    "registry, predictions, labelled uploads and retraining. Every route but the page, health, this "
    "document, the docs and the sign-in configuration needs a Cognito ID token of the API's user pool "
    "in the Authorization header; uploads need the group clinicians or ml-admins, retraining and its "
    "jobs ml-admins. Errors answered by the functions share one shape, "
    '`{"error": {"code", "message", "details"}}`; API Gateway answers its own errors as `{"message"}`: '
    "401 `Unauthorized` without a valid ID token, 403 `Missing Authentication Token` for a path or "
    "method no route matches. " + NOT_FOR_CLINICAL_USE,
}
SIGNED_IN = "CognitoUserPool"


def security_schemes() -> dict:
    # Powertools' OpenAPI models cost ~130 ms to import: only generating the document needs them.
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn

    return {
        SIGNED_IN: APIKey(
            name="Authorization",
            in_=APIKeyIn.header,
            description="A Cognito ID token of the API's user pool (API Gateway's Cognito authorizer): the page "
            "signs in with InitiateAuth (USER_PASSWORD_AUTH) against the client GET /auth/config names",
        )
    }


SIGN_IN_REQUIRED = [{SIGNED_IN: []}]
OPENAPI_VERSION = "3.1.0"


def html_doc(description: str) -> dict:
    """An OpenAPI response entry for an HTML page."""
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


OPENAPI_DOC = {
    "description": "This document (OpenAPI 3.1)",
    "content": {
        content_types.APPLICATION_JSON: {
            "schema": {
                "type": "object",
                "required": ["openapi", "info", "paths"],
                "properties": {"openapi": {"type": "string"}, "info": {"type": "object"}, "paths": {"type": "object"}},
            }
        }
    },
}


# --- serving the committed document ----------------------------------------------------------


@functools.cache
def _committed(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def stage_prefix(event) -> str:
    """'/v1' when the stage is part of the URL (API Gateway's own domain); '' locally (sam local
    sends a stage that is not in the URL) and behind a custom domain (as Powertools decides)."""
    context = event.request_context
    stage = context.stage
    if stage and stage != "$default" and (context.path or "").startswith(f"/{stage}"):
        return f"/{stage}"
    return ""


def served_document(path: Path, event) -> dict:
    """The committed document, with the server this request came through (so "Try it out" in
    Swagger UI calls the same stage)."""
    return {**_committed(path), "servers": [{"url": stage_prefix(event) or "/"}]}


def openapi_response(path: Path, event) -> Response:
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=served_document(path, event))


@functools.cache
def _swagger_assets() -> tuple[str, str]:
    """Swagger UI's script and style as Powertools ships them: inlined, so /docs works offline."""
    from aws_lambda_powertools.event_handler.openapi import swagger_ui

    folder = Path(swagger_ui.__file__).parent
    return (
        (folder / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
        (folder / "swagger-ui.min.css").read_text(encoding="utf-8"),
    )


def swagger_ui_response(path: Path, event) -> Response:
    """Swagger UI for the whole API; `?format=json` answers the document itself (its download link)."""
    if (event.query_string_parameters or {}).get("format") == "json":
        return openapi_response(path, event)
    from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_swagger_html

    script, style = _swagger_assets()
    # "</" inside the inlined JSON must not close the <script> element.
    spec = json.dumps(served_document(path, event)).replace("</", "<\\/")
    html = generate_swagger_html(spec, script, style, "", None, False)
    return Response(status_code=200, content_type="text/html; charset=utf-8", body=html)


# --- merging the functions' documents into the API's -----------------------------------------


@dataclass(frozen=True)
class ApiRoute:
    """One Api event of template.yaml: API Gateway sends `method path` to `function`."""

    function: str  # the function's logical id
    event: str  # the event's name: the operation's operationId
    path: str
    method: str  # lower case, as OpenAPI keys are
    signed_in: bool = False  # API Gateway's Cognito authorizer guards it


class SpecError(Exception):
    """The functions' routes and template.yaml's routes disagree, or their schemas clash."""


def merged_document(routes: list[ApiRoute], documents: dict[str, dict]) -> dict:
    """The API's document from each function's own (Powertools') document: one operation per
    template route, taken from the function the route goes to. Raises SpecError for a route no
    operation serves, an operation no route reaches, a security declaration the template does
    not enforce (or the reverse), a guarded route without its 401, a duplicate operationId, or
    two different schemas of one name."""
    paths: dict[str, dict[str, Any]] = {}
    served: set[tuple[str, str, str]] = set()
    for route in routes:
        source_path, bindings = _source_operation(route, documents[route.function])
        served.add((route.function, source_path, route.method))
        operation = documents[route.function]["paths"][source_path][route.method]
        paths.setdefault(route.path, {})[route.method] = _routed(route, operation, bindings)
    for function, document in documents.items():
        for path, operations in document.get("paths", {}).items():
            for method in operations:
                if (function, path, method) not in served:
                    raise SpecError(
                        f"{function} serves {method.upper()} {path}, but no Api event in template.yaml routes it there."
                    )
    ids = [operation["operationId"] for operations in paths.values() for operation in operations.values()]
    if len(set(ids)) != len(ids):
        raise SpecError(f"Duplicate operationIds (template.yaml event names): {sorted(ids)}")
    document = {
        "openapi": OPENAPI_VERSION,
        "info": INFO,
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": _merged_components(documents),
    }
    return _without_unused_components(document)


def _source_operation(route: ApiRoute, document: dict) -> tuple[str, dict[str, str]]:
    """The path of the function's operation that serves `route`, and the path parameters a
    literal template path fixes (API Gateway prefers /models/chest-ct/predict to /models/{model}/...)."""
    operations = document.get("paths", {})
    if route.method in operations.get(route.path, {}):
        return route.path, {}
    matches = [
        (path, bindings)
        for path, methods in operations.items()
        if route.method in methods and (bindings := _bindings(path, route.path)) is not None
    ]
    if len(matches) != 1:
        found = "no operation" if not matches else f"{len(matches)} operations ({[m[0] for m in matches]})"
        raise SpecError(
            f"template.yaml routes {route.method.upper()} {route.path} (event {route.event}) to {route.function}, "
            f"but {route.function}'s resolver has {found} for it."
        )
    return matches[0]


def _bindings(pattern: str, path: str) -> dict[str, str] | None:
    """{name: value} when `path` is `pattern` with each {name} part replaced by a literal; else None."""
    pattern_parts, path_parts = pattern.strip("/").split("/"), path.strip("/").split("/")
    if len(pattern_parts) != len(path_parts):
        return None
    bindings = {}
    for expected, actual in zip(pattern_parts, path_parts):
        parameter = re.fullmatch(r"\{(\w+)\}", expected)
        if parameter and not actual.startswith("{"):
            bindings[parameter.group(1)] = actual
        elif expected != actual:
            return None
    return bindings


def _routed(route: ApiRoute, operation: dict, bindings: dict[str, str]) -> dict:
    """The function's operation as API Gateway serves it at the route's path."""
    routed = copy.deepcopy(operation)
    routed["operationId"] = route.event
    if bindings:
        kept = [p for p in routed.get("parameters", []) if not (p["in"] == "path" and p["name"] in bindings)]
        routed["parameters"] = kept
        if not kept:
            del routed["parameters"]
        routed["summary"] += " (" + ", ".join(f"{name} {value}" for name, value in bindings.items()) + ")"
    declared = routed.get("security") == SIGN_IN_REQUIRED
    if declared != route.signed_in:
        needs = "the Cognito authorizer" if route.signed_in else "Authorizer: NONE"
        raise SpecError(
            f"{route.method.upper()} {route.path}: template.yaml gives it {needs}, "
            f"but the route declares security {routed.get('security')}."
        )
    if route.signed_in and "401" not in routed["responses"]:
        raise SpecError(
            f"{route.method.upper()} {route.path} needs a signed-in caller but does not document API Gateway's 401."
        )
    _check_validation_errors(route, routed)
    routed["responses"] = dict(sorted(routed["responses"].items()))
    return routed


def _check_validation_errors(route: ApiRoute, operation: dict) -> None:
    """Powertools documents a 422 in its own shape on every operation; ours answers a 422 in the
    one error shape, and only where a body or a typed parameter can fail validation."""
    schema = operation["responses"].get("422", {}).get("content", {}).get(content_types.APPLICATION_JSON, {})
    if not schema.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
        return
    if "requestBody" in operation or any(p["in"] != "path" for p in operation.get("parameters", [])):
        raise SpecError(
            f"{route.method.upper()} {route.path} can answer 422 (request validation) but does not document it in "
            "the error shape: add responses={422: error_doc(...)}."
        )
    del operation["responses"]["422"]


def _merged_components(documents: dict[str, dict]) -> dict[str, dict]:
    merged: dict[str, dict] = {}
    owners: dict[tuple[str, str], str] = {}
    for function, document in documents.items():
        for kind, entries in document.get("components", {}).items():
            for name, value in entries.items():
                known = merged.setdefault(kind, {})
                if name in known and known[name] != value:
                    raise SpecError(
                        f"components.{kind}.{name} differs between {owners[kind, name]} and {function}: "
                        "one name, one shape (a model used as request and response gets two names)."
                    )
                known[name], owners[kind, name] = value, owners.get((kind, name), function)
    return {kind: dict(sorted(entries.items())) for kind, entries in sorted(merged.items())}


def _without_unused_components(document: dict) -> dict:
    """Drops component schemas no operation refers to (e.g. Powertools' HTTPValidationError)."""
    schemas = document["components"].get("schemas", {})
    used: set[str] = set()
    pending = _refs(document["paths"])
    while pending:
        name = pending.pop()
        if name not in used:
            used.add(name)
            pending |= _refs(schemas.get(name, {}))
    document["components"]["schemas"] = {name: schema for name, schema in schemas.items() if name in used}
    return document


def _refs(value: Any) -> set[str]:
    return set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(value)))


def function_document(resolver) -> dict:
    """One function's own document, as Powertools generates it from its routes and models."""
    return json.loads(
        resolver.get_openapi_json_schema(
            title=INFO["title"],
            version=INFO["version"],
            description=INFO["description"],
            openapi_version=OPENAPI_VERSION,
            security_schemes=security_schemes(),
        )
    )
