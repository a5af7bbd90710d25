"""What the property tests share: Hypothesis settings that give the same examples on every run
and keep no database, and a fixture that gives back Hypothesis' printer of failing examples."""

from __future__ import annotations

import hypothesis.core
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.vendor import pretty

DETERMINISTIC = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=100,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)


@pytest.fixture
def failing_examples_are_printed(monkeypatch):
    """Schemathesis' pytest plugin (tests/e2e/test_fuzz.py) swaps Hypothesis' printer of failing
    examples, session-wide, for one that prints nothing (`x=,`); the tests that use this get it back."""
    monkeypatch.setattr(hypothesis.core, "RepresentationPrinter", pretty.RepresentationPrinter)
