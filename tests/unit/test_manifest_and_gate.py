import re
import time
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from med_classifier.domain.manifest import ProductionPointer, TabularInput, is_valid_model_id, new_version, sha256_hex
from training.gate import PromotionGate


def test_versions_sort_by_time_and_never_collide():
    early = new_version(datetime(2026, 1, 1, tzinfo=UTC))
    late = new_version(datetime(2026, 1, 2, tzinfo=UTC))
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", early)
    assert early < late
    same_instant = datetime(2026, 1, 1, tzinfo=UTC)
    assert len({new_version(same_instant) for _ in range(50)}) == 50


@pytest.mark.parametrize(
    "model_id, ok",
    [("breast-cancer", True), ("chest-ct", True), ("../etc", False), ("Breast", False), ("", False), ("a" * 64, False)],
)
def test_model_ids_are_restricted_to_safe_names(model_id, ok):
    assert is_valid_model_id(model_id) is ok


def test_pointer_rejects_a_malformed_hash():
    with pytest.raises(ValidationError):
        ProductionPointer(version="20260101T000000Z-0123abcd", sha256="nothex", promoted_at=datetime.now())


def test_gate_passes_only_when_every_threshold_holds():
    gate = PromotionGate(minimums={"test_recall": 0.95}, maximums={"cv_recall_std": 0.05})
    assert gate.evaluate({"test_recall": 0.97, "cv_recall_std": 0.02}).passed
    low = gate.evaluate({"test_recall": 0.90, "cv_recall_std": 0.02})
    assert not low.passed and "test_recall 0.9000 < 0.95" in low.reasons[0]
    unstable = gate.evaluate({"test_recall": 0.99, "cv_recall_std": 0.08})
    assert not unstable.passed and "cv_recall_std" in unstable.reasons[0]


def test_model_ids_up_to_63_characters_and_never_with_a_trailing_newline():
    assert is_valid_model_id("a" * 63) and is_valid_model_id("0-a")
    assert not is_valid_model_id("chest-ct\n") and not is_valid_model_id("-chest") and not is_valid_model_id("a_b")


def test_sha256_hex_is_the_hex_digest():
    assert sha256_hex(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_a_version_is_the_utc_timestamp_and_eight_hex_digits():
    version = new_version(datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC))
    assert re.fullmatch(r"20260304T050607Z-[0-9a-f]{8}", version)


@pytest.fixture
def far_from_utc(monkeypatch):
    """The local time zone 14 hours ahead of UTC, so local and UTC timestamps differ."""
    monkeypatch.setenv("TZ", "Etc/GMT-14")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_version_defaults_to_now_in_utc_whatever_the_local_zone(far_from_utc):
    before = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    stamp = new_version().split("-")[0]
    after = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    assert before <= stamp <= after
    assert datetime.now().strftime("%Y%m%dT%H") != stamp[:11]  # the fixture did move local time


def test_a_tabular_input_counts_its_features():
    assert TabularInput(feature_names=["a", "b", "c"], input_name="x").n_features == 3
