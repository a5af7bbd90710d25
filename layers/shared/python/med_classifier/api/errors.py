"""One error shape for every function behind the API: {"error": {code, message, details}}.

Registered on each function's Powertools resolver, so a client sees the same JSON
whichever function served it, and never a stack trace.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestUnsupportedContentType, RequestValidationError

from ..domain.errors import ClassifierError
from .error_shape import error_body
from .schemas import ErrorResponse, GatewayError


def error_response(status: int, code: str, message: str, details: list | None = None) -> Response:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=error_body(code, message, details)
    )


def error_doc(description: str) -> dict:
    """An OpenAPI response entry for an error status a function answers."""
    return {"description": description, "content": {"application/json": {"model": ErrorResponse}}}


def gateway_error_doc(description: str) -> dict:
    """An OpenAPI response entry for an error API Gateway answers before the function runs."""
    return {"description": description, "content": {"application/json": {"model": GatewayError}}}


# What a route behind the Cognito authorizer documents (med_classifier.api.caller).
NOT_SIGNED_IN = gateway_error_doc("No valid Cognito ID token in Authorization (API Gateway's Cognito authorizer)")


def forbidden_doc(groups: str) -> dict:
    return error_doc(f"Signed in, but not in {groups}")


# The statuses a JSON route answers for a body it cannot read: request_guard's checks on the raw
# event, then Powertools' request validation (through the handlers below).
INVALID_JSON = error_doc(
    "The body is not JSON, not UTF-8, nested deeper than 32 levels, or has an integer too long to read"
)
UNSUPPORTED_BODY = error_doc("Content-Type is not application/json (a body without one is read as JSON)")
SCHEMA_MISMATCH = "a body that does not match the schema (the message names the field)"


def register_error_handlers(app, logger) -> None:
    @app.exception_handler(ClassifierError)
    def handle_domain_error(exc: ClassifierError) -> Response:
        logger.info("request refused", extra={"code": exc.code, "reason": exc.message})
        return error_response(exc.status_code, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    def handle_validation_error(exc: RequestValidationError) -> Response:
        problems = exc.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return error_response(
                400,
                "invalid_json",
                "The request body is not valid JSON. Send "
                '{"instances": [[...numbers...]]} with Content-Type: application/json.',
            )
        details = [f"{'.'.join(str(part) for part in p.get('loc', ()))}: {p.get('msg')}" for p in problems]
        return error_response(422, "invalid_request", "The request does not match the schema: " + details[0], details)

    @app.exception_handler(RequestUnsupportedContentType)
    def handle_unsupported_content_type(exc: RequestUnsupportedContentType) -> Response:
        media_type = (app.current_event.headers.get("content-type") or "").split(";", 1)[0].strip()
        return error_response(
            415, "unsupported_media_type", f"Content-Type {media_type!r} is not accepted here: send application/json."
        )

    @app.not_found
    def handle_not_found(exc: NotFoundError) -> Response:
        return error_response(
            404,
            "not_found",
            f"No route {app.current_event.http_method} {app.current_event.path}. See /docs for the API.",
        )

    @app.exception_handler(Exception)
    def handle_unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error")
        request_id = app.lambda_context.aws_request_id if app.lambda_context else "n/a"
        return error_response(500, "internal_error", f"Internal error; it has been logged. Request id: {request_id}")
