"""Tabular request rows -> float32 matrix, with errors a person can act on."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import InvalidInput, PayloadTooLarge
from .manifest import TabularInput

MAX_ERRORS_REPORTED = 10
# The models take float32: a number from halfway between its largest value and 2**128 up
# becomes infinity there.
FLOAT32_MAX = float(np.finfo(np.float32).max)
_ROUNDS_TO_INFINITY = 2.0**128 - 2.0**103


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(value: Any, where: str, errors: list[str]) -> float:
    # bool is an int subclass in Python: a checkbox value is not a measurement.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        errors.append(f"{where}: expected a number, got {type(value).__name__} {_describe(value)}")
        return math.nan
    if isinstance(value, float) and not math.isfinite(value):
        errors.append(f"{where}: expected a finite number, got {value}")
        return math.nan
    try:
        number = float(value)
    except OverflowError:  # an int of hundreds of digits
        number = math.inf
    if abs(number) >= _ROUNDS_TO_INFINITY:
        errors.append(f"{where}: {_describe(value)} is outside the float32 range (±{FLOAT32_MAX:.8g})")
        return math.nan
    return number


def rows_to_matrix(rows: Any, spec: TabularInput, max_rows: int) -> np.ndarray:
    """Each row is a list of ``n_features`` numbers in manifest order, or an object
    keyed by feature name. All problems are reported at once (up to a limit)."""
    if not isinstance(rows, list) or not rows:
        raise InvalidInput('Send at least one row: {"instances": [[...features...]]}.')
    if len(rows) > max_rows:
        raise PayloadTooLarge(f"{len(rows)} rows sent; at most {max_rows} rows per request. Split the batch.")
    names = spec.feature_names
    matrix = np.empty((len(rows), len(names)), dtype=np.float32)
    errors: list[str] = []
    for r, row in enumerate(rows):
        if isinstance(row, dict):
            missing = [n for n in names if n not in row]
            unknown = [k for k in row if k not in set(names)]
            if missing or unknown:
                parts = []
                if missing:
                    parts.append(
                        f"missing {len(missing)} feature(s): {', '.join(missing[:5])}"
                        + (" ..." if len(missing) > 5 else "")
                    )
                if unknown:
                    parts.append(f"unknown key(s): {', '.join(map(str, unknown[:5]))}")
                errors.append(f"row {r}: " + "; ".join(parts))
                continue
            values = [row[n] for n in names]
            labels = [f"row {r}, feature {n!r}" for n in names]
        elif isinstance(row, list):
            if len(row) != len(names):
                errors.append(f"row {r}: expected {len(names)} features, got {len(row)}")
                continue
            values = row
            labels = [f"row {r}, feature {i} ({n})" for i, n in enumerate(names)]
        else:
            errors.append(
                f"row {r}: expected a list of {len(names)} numbers or an object keyed by "
                f"feature name, got {type(row).__name__}"
            )
            continue
        for c, (value, where) in enumerate(zip(values, labels)):
            matrix[r, c] = _number(value, where, errors)
        if len(errors) >= MAX_ERRORS_REPORTED:
            break
    if errors:
        shown = errors[:MAX_ERRORS_REPORTED]
        raise InvalidInput(
            f"Invalid input: {shown[0]}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""), details=shown
        )
    return matrix
