"""Drift monitoring's pure parts: PSI on known bins, class-mix shift, the report's status thresholds
(domain/drift.py), the capture buffer's sampling, batching and flushing (domain/capture.py) and one
monitor run over in-memory stores."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from med_classifier.domain.capture import CaptureBuffer, CapturePolicy, capture_records
from med_classifier.domain.drift import (
    EMPTY_BIN_SHARE,
    DriftThresholds,
    bin_proportions,
    class_mix_shift,
    drift_report,
    monitor_models,
    psi,
    reference_bins,
)
from med_classifier.domain.manifest import (
    FeatureReference,
    Manifest,
    OnnxOutputs,
    OodReference,
    ProductionPointer,
    TabularInput,
    TrainingData,
)
from med_classifier.domain.serving import PredictionResult
from tests.helpers.fakes import MemoryMonitoring, MemoryStore

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
VERSION = "20261201T000000Z-0123abcd"
# Quartile bins: the training data split 25 % in each.
QUARTILES = FeatureReference(name="radius", low=0, high=100, edges=[10, 20, 30], proportions=[0.25] * 4)


def manifest(ood: OodReference | None) -> Manifest:
    return Manifest(
        model_id="tumour",
        version=VERSION,
        created_at=NOW,
        task="binary",
        classes=["benign", "malignant"],
        input=TabularInput(feature_names=["radius", "texture"], input_name="x"),
        outputs=OnnxOutputs(probabilities="p"),
        onnx_sha256="0" * 64,
        onnx_bytes=1,
        opset=17,
        framework={},
        converter={},
        metrics={},
        gate={},
        parity={},
        training_data=TrainingData(name="t", source="s", sha256="0" * 64, n_train=1, n_test=1),
        ood=ood,
    )


REFERENCE = OodReference(
    features=[
        QUARTILES,
        FeatureReference(name="texture", low=0, high=10, edges=[5], proportions=[0.5, 0.5]),
        FeatureReference(name="no_bins", low=0, high=1),  # no drift reference: skipped
    ],
    class_mix={"benign": 0.6, "malignant": 0.4},
)


def record(radius: float, label: str = "benign", in_distribution: bool | None = True, texture: float = 2.0) -> dict:
    return {
        "captured_at": NOW.isoformat(),
        "version": VERSION,
        "inputs": {"radius": radius, "texture": texture},
        "label": label,
        "in_distribution": in_distribution,
    }


# --- bins and PSI ------------------------------------------------------------------------------


def test_bins_hold_values_from_their_lower_edge_up_to_the_next():
    # bin 0: < 10; bin 1: [10, 20); bin 2: [20, 30); bin 3: >= 30
    assert bin_proportions([5, 10, 19.9, 20, 30, 1e9], [10, 20, 30]) == [1 / 6, 2 / 6, 1 / 6, 2 / 6]
    assert bin_proportions([], [10]) == [0.0, 0.0]


def test_psi_of_known_shares_is_the_textbook_sum():
    expected, observed = [0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]
    by_hand = sum((o - e) * math.log(o / e) for e, o in zip(expected, observed))
    assert psi(expected, observed) == pytest.approx(by_hand, abs=1e-12)
    assert psi(expected, observed) == pytest.approx(0.228_217_4, abs=1e-7)
    assert psi(expected, expected) == 0.0


def test_an_empty_bin_counts_as_a_tiny_share_not_an_infinite_psi():
    value = psi([0.5, 0.5], [1.0, 0.0])
    assert value == pytest.approx(0.5 * math.log(1 / 0.5) + (EMPTY_BIN_SHARE - 0.5) * math.log(EMPTY_BIN_SHARE / 0.5))


def test_psi_refuses_shares_of_different_lengths_naming_them():
    with pytest.raises(ValueError) as info:
        psi([0.5, 0.5], [1.0])
    assert str(info.value) == "PSI needs as many expected as observed shares (2 != 1)"


# --- class mix -----------------------------------------------------------------------------------


def test_class_mix_shift_compares_predicted_with_training_classes():
    shift = class_mix_shift({"benign": 0.6, "malignant": 0.4}, ["malignant"] * 8 + ["benign"] * 2)
    assert shift.observed == {"benign": 0.2, "malignant": 0.8}
    assert shift.total_variation == pytest.approx(0.4)
    assert shift.psi == pytest.approx((0.2 - 0.6) * math.log(0.2 / 0.6) + (0.8 - 0.4) * math.log(0.8 / 0.4))


def test_a_predicted_class_the_training_mix_lacks_counts_against_a_zero_share():
    shift = class_mix_shift({"a": 1.0}, ["a", "b"])
    assert shift.expected == {"a": 1.0, "b": 0.0}
    assert shift.total_variation == pytest.approx(0.5)


# --- the report ---------------------------------------------------------------------------------


def report_of(records, ood=REFERENCE, **thresholds):
    return drift_report(
        manifest(ood), "tumour", records, NOW - timedelta(hours=1), NOW, NOW, DriftThresholds(**thresholds)
    )


def in_training_proportions(n: int = 40) -> list[dict]:
    """Records whose radius fills the quartile bins evenly, texture both halves, and classes 60/40."""
    radii = [5, 15, 25, 35] * (n // 4)
    return [
        record(r, "benign" if i % 5 < 3 else "malignant", texture=2.0 if i % 2 else 7.0) for i, r in enumerate(radii)
    ]


def test_a_window_like_the_training_data_is_ok():
    report = report_of(in_training_proportions())
    assert (report.status, report.reasons, report.drifted_features) == ("ok", [], [])
    assert report.max_feature_psi == pytest.approx(0.0, abs=1e-12)
    assert report.class_mix.psi == pytest.approx(0.0, abs=1e-12)
    assert (report.ood_rate, report.n_records, report.versions) == (0.0, 40, [VERSION])
    assert [f.name for f in report.features] == ["radius", "texture"]  # no_bins has no drift reference


def test_a_shifted_feature_is_drift_and_named_features_sorted_by_psi():
    records = [record(35, "benign" if i % 5 < 3 else "malignant", texture=2.0 if i % 2 else 7.0) for i in range(40)]
    report = report_of(records)
    assert report.status == "drift"
    assert report.drifted_features == ["radius"]
    assert [f.name for f in report.features] == ["radius", "texture"]
    assert report.features[0].observed == [0.0, 0.0, 0.0, 1.0]
    assert report.reasons == [f"radius: PSI {report.features[0].psi:.3f}"]


@pytest.mark.parametrize(
    "psi_warn, psi_drift, status",
    [(10.0, 20.0, "ok"), (0.1, 20.0, "warn"), (0.1, 0.2, "drift")],
)
def test_the_status_follows_the_psi_thresholds(psi_warn, psi_drift, status):
    records = in_training_proportions()
    for r in records[:12]:
        r["inputs"]["radius"] = 35  # radius shares 0.175/0.175/0.175/0.475: PSI 0.2247
    report = report_of(records, psi_warn=psi_warn, psi_drift=psi_drift)
    assert report.features[0].psi == pytest.approx(0.2247, abs=1e-4)
    assert report.status == status


@pytest.mark.parametrize("flagged, status", [(3, "ok"), (4, "warn"), (10, "drift")])
def test_the_status_follows_the_ood_rate_thresholds(flagged, status):
    records = in_training_proportions()
    for r in records[:flagged]:
        r["in_distribution"] = False
    report = report_of(records)
    assert report.ood_rate == pytest.approx(flagged / 40)
    assert report.n_ood_flagged == flagged
    assert report.status == status


def test_a_skewed_class_mix_alone_is_drift():
    records = in_training_proportions()
    for r in records:
        r["label"] = "malignant"
    report = report_of(records)
    assert report.status == "drift"
    assert report.reasons == [f"class mix: PSI {report.class_mix.psi:.3f}"]
    assert report.class_mix.total_variation == pytest.approx(0.6)


def test_predictions_without_ood_flags_give_no_ood_rate():
    records = in_training_proportions()
    for r in records:
        r["in_distribution"] = None
    assert (report_of(records).ood_rate, report_of(records).status) == (None, "ok")


def test_a_window_with_nothing_to_compare_is_no_reference_not_ok():
    records = [record(35, in_distribution=None) for _ in range(40)]
    report = report_of(records, ood=None)
    assert report.status == "no_reference"
    assert report.reasons == [
        "nothing to compare: the production manifest has no drift reference and no OOD flags were captured"
    ]


def test_fewer_records_than_the_minimum_give_no_verdict():
    report = report_of([record(35)] * 5, min_records=30)
    assert report.status == "insufficient_data"
    assert report.reasons == ["5 captured predictions in the window, fewer than 30"]


def test_a_manifest_without_a_reference_reports_only_the_ood_rate():
    records = [record(35, in_distribution=False) for _ in range(40)]
    report = report_of(records, ood=None)
    assert (report.has_reference, report.features, report.class_mix) == (False, [], None)
    assert (report.ood_rate, report.status) == (1.0, "drift")


# --- capture ------------------------------------------------------------------------------------


def result(n: int, version: str = VERSION) -> PredictionResult:
    predictions = [
        {"label": "benign", "class_index": 0, "confidence": 0.9, "probabilities": {}, "in_distribution": i % 2 == 0}
        for i in range(n)
    ]
    return PredictionResult("tumour", version, predictions, 1.0, inputs=[{"radius": float(i)} for i in range(n)])


def test_capture_records_keep_summary_label_flag_and_version_never_more():
    unflagged = PredictionResult("m", VERSION, [{"label": "a"}], 1.0, inputs=[{"brightness": 0.5}])
    assert capture_records(unflagged, NOW, lambda: True) == [
        {
            "captured_at": "2026-12-01T12:00:00+00:00",
            "version": VERSION,
            "inputs": {"brightness": 0.5},
            "label": "a",
            "in_distribution": None,  # no flag on the prediction: null
        }
    ]
    assert [r["in_distribution"] for r in capture_records(result(2), NOW, lambda: True)] == [True, False]
    assert capture_records(result(3), NOW, lambda: False) == []


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def buffer(writer, sample_rate=1.0, batch_size=5, flush_seconds=60.0, clock=None, rng=None):
    return CaptureBuffer(
        writer, CapturePolicy(sample_rate, batch_size, flush_seconds), clock=clock or Clock(), now=lambda: NOW, rng=rng
    )


def test_records_are_written_once_a_batch_is_full_one_object_a_model():
    writer = MemoryMonitoring()
    captures = buffer(writer, batch_size=5)
    assert captures.add("tumour", result(3)) == 0 and writer.batches == []
    assert captures.add("tumour", result(3)) == 6  # 6 >= 5: the whole buffer in one object
    assert [(model, len(records)) for model, records, _ in writer.batches] == [("tumour", 6)]
    assert captures.add("other", result(2)) == 0  # its own buffer
    assert captures.written == 6


def test_records_older_than_flush_seconds_are_written_at_the_next_capture():
    writer, clock = MemoryMonitoring(), Clock()
    captures = buffer(writer, batch_size=100, flush_seconds=60, clock=clock)
    captures.add("tumour", result(1))
    clock.t = 59.9
    assert captures.add("tumour", result(1)) == 0
    clock.t = 60.0  # the oldest record is 60 s old
    assert captures.add("tumour", result(1)) == 3
    assert len(writer.batches) == 1


def test_flush_writes_whatever_is_buffered():
    writer = MemoryMonitoring()
    captures = buffer(writer, batch_size=100)
    captures.add("a", result(2))
    captures.add("b", result(1))
    assert captures.flush() == 3
    assert sorted((m, len(r)) for m, r, _ in writer.batches) == [("a", 2), ("b", 1)]


def test_sampling_keeps_about_the_sample_rate():
    writer = MemoryMonitoring()
    captures = buffer(writer, sample_rate=0.25, batch_size=10_000, rng=random.Random(7))
    for _ in range(40):
        captures.add("tumour", result(100))
    captures.flush()
    kept = sum(len(records) for _, records, _ in writer.batches)
    assert 0.22 < kept / 4000 < 0.28
    nothing = buffer(MemoryMonitoring(), sample_rate=0.0, batch_size=1)
    assert nothing.add("tumour", result(50)) == 0


def test_a_failed_write_is_logged_and_dropped_never_raised(caplog):
    writer = MemoryMonitoring()
    writer.fail_writes = True
    captures = buffer(writer, batch_size=2)
    assert captures.add("tumour", result(3)) == 0
    assert captures.dropped == 3
    assert "drift capture not written" in caplog.text
    writer.fail_writes = False
    assert captures.add("tumour", result(2)) == 2  # the buffer was emptied, not kept growing


def test_a_prediction_that_cannot_be_captured_is_skipped_never_raised(caplog):
    broken = PredictionResult("m", VERSION, [{"no": "label"}], 1.0, inputs=[{}])
    assert buffer(MemoryMonitoring(), batch_size=1).add("m", broken) == 0
    assert "drift capture skipped" in caplog.text


# --- a monitor run -------------------------------------------------------------------------------


def test_a_monitor_run_reports_each_production_model_from_its_window():
    served = manifest(REFERENCE)
    models = MemoryStore(
        {VERSION: (served, b"")},
        pointer=ProductionPointer(version=VERSION, sha256="0" * 64, promoted_at=NOW),
    )
    monitoring = MemoryMonitoring()
    old = [dict(r, captured_at=(NOW - timedelta(hours=2)).isoformat()) for r in in_training_proportions()]
    drifted = [record(35, "malignant", in_distribution=False) for _ in range(40)]
    monitoring.write_captures("tumour", old + drifted, NOW)
    run = monitor_models(models, monitoring, timedelta(hours=1), NOW)
    assert run.failed == {}
    (report,) = run.reports
    assert (report.model, report.n_records, report.status) == ("tumour", 40, "drift")  # the old ones are outside
    assert monitoring.latest_report("tumour") == report.model_dump(mode="json")


def test_a_model_whose_report_fails_is_named_and_the_run_goes_on(caplog):
    models = MemoryStore({}, pointer=ProductionPointer(version=VERSION, sha256="0" * 64, promoted_at=NOW))
    models.list_model_ids = lambda: ["tumour"]  # a pointer to a version whose manifest is missing
    run = monitor_models(models, MemoryMonitoring(), timedelta(hours=1), NOW)
    assert (run.reports, run.failed) == ([], {"tumour": "IntegrityError"})
    assert "drift report not written" in caplog.text


def test_reference_bins_split_training_values_at_their_quantiles():
    edges, shares = reference_bins(list(range(100)), n_bins=4)
    assert edges == [24.75, 49.5, 74.25]
    assert shares == [0.25, 0.25, 0.25, 0.25]
    assert reference_bins([1.0] * 10 + [2.0] * 10, n_bins=10)[0] == [1.0, 1.5, 2.0]  # repeated edges merged
    assert reference_bins([3.0]) == ([], [1.0])


# --- settings -----------------------------------------------------------------------------------


def test_capture_settings_come_from_their_variables_and_capture_is_off_without_a_bucket():
    from med_classifier import services
    from med_classifier.settings import DriftMonitorSettings, ImagePredictSettings

    environ = {
        "MODELS_BUCKET": "m",
        "CAPTURE_SAMPLE_RATE": "0.5",
        "CAPTURE_BATCH_SIZE": "7",
        "CAPTURE_FLUSH_SECONDS": "3",
    }
    settings = ImagePredictSettings.from_environ(environ)
    assert settings.capture_policy == CapturePolicy(sample_rate=0.5, batch_size=7, flush_seconds=3.0)
    assert services.capture_buffer(settings) is None  # no MONITORING_BUCKET
    assert services.capture_buffer(settings.model_copy(update={"monitoring_bucket": "b"})) is not None
    off = settings.model_copy(update={"monitoring_bucket": "b", "capture_sample_rate": 0.0})
    assert services.capture_buffer(off) is None
    defaults = ImagePredictSettings.from_environ({"MODELS_BUCKET": "m"})
    assert defaults.capture_policy == CapturePolicy(sample_rate=0.1, batch_size=100, flush_seconds=300.0)
    drift = DriftMonitorSettings.from_environ({"MODELS_BUCKET": "m", "MONITORING_BUCKET": "b"})
    assert drift.drift_window_minutes == 1440


@pytest.mark.parametrize("variable, value", [("CAPTURE_SAMPLE_RATE", "1.5"), ("CAPTURE_BATCH_SIZE", "0")])
def test_capture_settings_out_of_range_are_refused_naming_the_variable(variable, value):
    from pydantic import ValidationError

    from med_classifier.settings import PredictSettings

    with pytest.raises(ValidationError) as info:
        PredictSettings.from_environ({"MODELS_BUCKET": "m", variable: value})
    assert variable in str(info.value)
