"""The one error shape of every function behind the API: {"error": {code, message, details}}.

Standard library only: the request guard and the fast paths answer in it before Powertools is imported."""

from __future__ import annotations


def error_body(code: str, message: str, details: list | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or []}}
