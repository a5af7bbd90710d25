"""Responses as plain values: the predict body the fast paths write (orjson), which api.schemas'
PredictResponse, derived from PredictionResult with the same names, describes and validates.

Standard library only: the fast paths import it without pydantic's response models."""

from __future__ import annotations

import dataclasses
from typing import Any

# The API's names for domain fields where they differ, in every response.
API_NAMES = {"model_id": "model"}


def values_of(record: Any, renamed: dict[str, str]) -> dict[str, Any]:
    """A domain dataclass instance's field values, under the API's names (fields marked
    in_response=False are left out)."""
    return {renamed.get(f.name, f.name): getattr(record, f.name) for f in response_fields(record)}


def response_fields(source: Any) -> list[dataclasses.Field]:
    """The fields of a domain dataclass (or instance) that a response carries."""
    return [f for f in dataclasses.fields(source) if f.metadata.get("in_response", True)]


def predict_fields(result: Any, notice: str) -> dict[str, Any]:
    """PredictResponse's fields for a PredictionResult."""
    return {**values_of(result, API_NAMES), "inference_ms": round(result.inference_ms, 3), "notice": notice}
