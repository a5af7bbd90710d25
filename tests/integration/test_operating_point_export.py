"""Thresholds and calibration survive export: what OnnxClassifier serves from a manifest (ONNX +
the manifest's calibration + its operating point) equals the native model's output calibrated and
thresholded the same way, on every Wisconsin row; a row just above / below the threshold is
labelled accordingly. breast-cancer (scikit-learn) and breast-cancer-lite (Keras)."""

from __future__ import annotations

import numpy as np
import pytest

from med_classifier.domain.calibration import calibrate
from med_classifier.domain.decision import decide
from med_classifier.domain.inference import OnnxClassifier, class_probabilities
from med_classifier.domain.manifest import Calibration, OnnxOutputs, OperatingPoint
from tests.helpers.keras_models import breast_cancer_lite_candidate
from tests.helpers.models import breast_cancer_candidate, manifest_for
from training import breast_cancer_lite
from training.breast_cancer import load_wisconsin
from training.keras_export import keras_outputs

pytestmark = pytest.mark.slow


def _breast_cancer():
    candidate = breast_cancer_candidate()
    rows = load_wisconsin().X.astype(np.float32)
    return candidate, rows, lambda x: candidate.evaluation["native_model"].predict_proba(x)


def _lite():
    candidate = breast_cancer_lite_candidate()
    data = load_wisconsin()
    rows = data.X[:, [data.feature_names.index(n) for n in breast_cancer_lite.FEATURES]].astype(np.float32)
    outputs, keras_model = OnnxOutputs(**candidate.outputs), candidate.evaluation["native_model"]
    return candidate, rows, lambda x: class_probabilities(keras_outputs(keras_model, x), outputs)


MODELS = {"breast-cancer": _breast_cancer, "breast-cancer-lite": _lite}


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request):
    candidate, rows, native = MODELS[request.param]()
    manifest = manifest_for(candidate)
    return candidate, rows, native, manifest, OnnxClassifier(manifest, candidate.onnx)


def _native_served(native, manifest, x):
    """The native model's probabilities calibrated and labelled as the manifest says."""
    proba = calibrate(np.asarray(native(x), dtype=np.float64), manifest.calibration, manifest.outputs.positive_index)
    return proba, [manifest.classes[i] for i in decide(proba, manifest.classes, manifest.operating_point)]


def test_the_manifest_carries_the_trainers_calibration_and_operating_point(model):
    candidate, _, _, manifest, _ = model
    assert manifest.calibration == Calibration(**candidate.calibration)
    assert manifest.operating_point == OperatingPoint(**candidate.operating_point)
    point = manifest.operating_point
    assert point.positive_class == "malignant" and point.cv["recall"] >= point.target_recall
    assert manifest.calibration.brier_before is not None and manifest.calibration.reliability
    # the gate's test recall is the one measured at the operating point
    assert candidate.metrics["test_recall"] == point.test["recall"]


def test_served_labels_and_probabilities_equal_the_native_calibrated_and_thresholded_ones(model):
    candidate, rows, native, manifest, classifier = model
    predictions, _ = classifier.predict(rows)
    served_proba = classifier.predict_proba(rows)
    native_proba, native_labels = _native_served(native, manifest, rows)
    assert [p["label"] for p in predictions] == native_labels
    assert float(np.max(np.abs(served_proba - native_proba))) <= candidate.parity_limits["max_abs_prob_diff"]
    # the threshold is in force: some rows are malignant only because of it
    malignant = manifest.classes.index("malignant")
    by_argmax = np.argmax(served_proba, axis=1) == malignant
    served_malignant = np.array([label == "malignant" for label in native_labels])
    assert np.sum(served_malignant & ~by_argmax) > 0


def test_rows_just_above_and_below_the_threshold_are_labelled_accordingly(model):
    _, rows, _, manifest, classifier = model
    malignant = manifest.classes.index("malignant")
    threshold = manifest.operating_point.threshold
    p = classifier.predict_proba(rows)[:, malignant]
    low, high = rows[np.argmin(p)].astype(np.float64), rows[np.argmax(p)].astype(np.float64)

    def mixed(t: float) -> np.ndarray:
        return ((1 - t) * low + t * high).astype(np.float32)[None]

    def served_p(t: float) -> float:
        return float(classifier.predict_proba(mixed(t))[0, malignant])

    below, above = 0.0, 1.0  # bisect the segment between the least and the most malignant rows
    for _ in range(60):
        middle = (below + above) / 2
        below, above = (middle, above) if served_p(middle) < threshold else (below, middle)
    assert served_p(below) < threshold <= served_p(above) and served_p(above) - served_p(below) < 1e-3
    for t, expected in ((below, "benign"), (above, "malignant")):
        predictions, _ = classifier.predict(mixed(t))
        assert predictions[0]["label"] == expected


def test_the_target_recall_option_sets_the_operating_point():
    from training import breast_cancer
    from training.candidate import TrainOptions

    candidate = breast_cancer.train(TrainOptions(smoke=True, target_recall=0.9))
    point = OperatingPoint(**candidate.operating_point)
    assert point.target_recall == 0.9 and candidate.params["target_recall"] == 0.9
    assert point.cv["recall"] >= 0.9 and point.chosen_on.startswith("2 x 3-fold stratified CV")
    assert candidate.metrics["test_recall"] == point.test["recall"]
