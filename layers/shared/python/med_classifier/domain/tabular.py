"""Tabular request rows -> float32 matrix, with errors a person can act on."""

from __future__ import annotations

import functools
import itertools
import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import InvalidInput, PayloadTooLarge
from .manifest import TabularInput

MAX_ERRORS_REPORTED = 10
# The models take float32: a number from halfway between its largest value and 2**128 up
# becomes infinity there.
FLOAT32_MAX = float(np.finfo(np.float32).max)
_ROUNDS_TO_INFINITY = 2.0**128 - 2.0**103
_NUMBER_TYPES = frozenset({int, float})


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(value: Any, where: Callable[[], str], errors: list[str]) -> float:
    # bool is an int subclass in Python: a checkbox value is not a measurement.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        errors.append(f"{where()}: expected a number, got {type(value).__name__} {_describe(value)}")
        return math.nan
    if isinstance(value, float) and not math.isfinite(value):
        errors.append(f"{where()}: expected a finite number, got {value}")
        return math.nan
    try:
        number = float(value)
    except OverflowError:  # an int of hundreds of digits
        number = math.inf
    if abs(number) >= _ROUNDS_TO_INFINITY:
        errors.append(f"{where()}: {_describe(value)} is outside the float32 range (±{FLOAT32_MAX:.8g})")
        return math.nan
    return number


def rows_to_matrix(rows: Any, spec: TabularInput, max_rows: int, *, numbers_only: bool = False) -> np.ndarray:
    """Each row is a list of ``n_features`` numbers in manifest order, or an object
    keyed by feature name. All problems are reported at once (up to a limit).
    ``numbers_only``: the caller knows that no value is a bool, a string or None (a JSON body
    without those literals), which spares a look at every value's type."""
    if not isinstance(rows, list) or not rows:
        raise InvalidInput('Send at least one row: {"instances": [[...features...]]}.')
    if len(rows) > max_rows:
        raise PayloadTooLarge(f"{len(rows)} rows sent; at most {max_rows} rows per request. Split the batch.")
    matrix = clean_matrix(rows, spec.feature_names, numbers_only=numbers_only)
    return matrix if matrix is not None else checked_matrix(rows, spec.feature_names)


def clean_matrix(rows: list, names: list[str], *, numbers_only: bool = False) -> np.ndarray | None:
    """The matrix when every row and value is well-formed, found with checks over whole rows and
    arrays; None when any is not, and checked_matrix finds and names what is wrong."""
    width = len(names)
    if all(type(row) is list and len(row) == width for row in rows):
        values = rows
    elif all(type(row) is dict and len(row) == width for row in rows):
        expected = set(names)
        if not all(row.keys() == expected for row in rows):
            return None
        pick = operator.itemgetter(*names)
        values = [pick(row) for row in rows] if width > 1 else [[pick(row)] for row in rows]
    else:
        return None
    # numpy would read a bool as a number, a numeric string as its number and None as NaN: only
    # looking at every value's type tells, unless the caller knows there are none.
    if not numbers_only and not set(map(type, itertools.chain.from_iterable(values))) <= _NUMBER_TYPES:
        return None
    try:  # one flat pass (fromiter) costs less than np.array's walk of nested lists
        flat = itertools.chain.from_iterable(values)
        matrix = np.fromiter(flat, dtype=np.float64, count=len(rows) * width).reshape(len(rows), width)
    except (OverflowError, TypeError, ValueError):  # an int beyond float64; a list among the values
        return None
    if not bool(np.all(np.abs(matrix) < _ROUNDS_TO_INFINITY)):
        return None  # NaN and infinity fail the comparison too
    return matrix.astype(np.float32)


def checked_matrix(rows: list, names: list[str]) -> np.ndarray:
    """Value by value, naming every problem (row, feature) up to MAX_ERRORS_REPORTED; labels are
    built only for the values that have one."""
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
            label = _named_label
        elif isinstance(row, list):
            if len(row) != len(names):
                errors.append(f"row {r}: expected {len(names)} features, got {len(row)}")
                continue
            values = row
            label = _positional_label
        else:
            errors.append(
                f"row {r}: expected a list of {len(names)} numbers or an object keyed by "
                f"feature name, got {type(row).__name__}"
            )
            continue
        for c, value in enumerate(values):
            matrix[r, c] = _number(value, functools.partial(label, r, c, names[c]), errors)
        if len(errors) >= MAX_ERRORS_REPORTED:
            break
    if errors:
        shown = errors[:MAX_ERRORS_REPORTED]
        raise InvalidInput(
            f"Invalid input: {shown[0]}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""), details=shown
        )
    return matrix


def _named_label(r: int, c: int, name: str) -> str:
    return f"row {r}, feature {name!r}"


def _positional_label(r: int, c: int, name: str) -> str:
    return f"row {r}, feature {c} ({name})"
