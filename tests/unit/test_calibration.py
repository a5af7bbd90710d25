"""Calibration fitted in training (training/calibration.py) and applied by the served function
(med_classifier.domain.calibration.calibrate)."""

from __future__ import annotations

import numpy as np
import pytest

from med_classifier.domain.calibration import calibrate
from med_classifier.domain.manifest import Calibration, OperatingPoint
from training.calibration import (
    MIN_BRIER_GAIN,
    ServedOutput,
    brier,
    fit_calibration,
    fit_platt,
    fit_temperature,
    on_test_set,
    reliability,
)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_platt_applies_sigmoid_of_a_logit_plus_b_to_the_positive_column():
    proba = np.array([[0.8, 0.2], [0.5, 0.5], [0.1, 0.9]])
    out = calibrate(proba, Calibration(method="platt", a=2.0, b=-0.5), positive_index=1)
    expected = _sigmoid(2.0 * np.log(proba[:, 1] / proba[:, 0]) - 0.5)
    np.testing.assert_allclose(out[:, 1], expected, rtol=1e-12)
    np.testing.assert_allclose(out[:, 0], 1.0 - expected, rtol=1e-12)


def test_temperature_divides_log_probabilities_before_the_softmax():
    proba = np.array([[0.7, 0.2, 0.1], [0.2, 0.3, 0.5]])
    out = calibrate(proba, Calibration(method="temperature", temperature=2.0))
    expected = np.sqrt(proba) / np.sqrt(proba).sum(axis=1, keepdims=True)  # p^(1/2), renormalised
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_none_serves_the_probabilities_as_they_are():
    proba = np.array([[0.3, 0.7]])
    assert calibrate(proba, Calibration(method="none")) is proba


def _platt_data(a: float, b: float, n: int, seed: int):
    """Raw positive-class probabilities and labels drawn from sigmoid(a * logit(p) + b)."""
    rng = np.random.default_rng(seed)
    p = _sigmoid(rng.normal(0.0, 2.0, n))
    y = (rng.random(n) < _sigmoid(a * np.log(p / (1 - p)) + b)).astype(int)
    return np.column_stack([1 - p, p]), y


def test_platt_fit_recovers_known_parameters():
    proba, y = _platt_data(a=0.5, b=0.8, n=40_000, seed=1)
    a, b = fit_platt(proba, y, positive_index=1)
    assert a == pytest.approx(0.5, abs=0.03) and b == pytest.approx(0.8, abs=0.05)


def test_platt_fit_reads_the_positive_index_column():
    proba, y = _platt_data(a=0.5, b=0.8, n=40_000, seed=1)
    # the same data with the columns swapped and the positive class at index 0
    a, b = fit_platt(proba[:, ::-1], 1 - y, positive_index=0)
    assert a == pytest.approx(0.5, abs=0.03) and b == pytest.approx(0.8, abs=0.05)


def test_temperature_fit_recovers_a_known_temperature():
    rng = np.random.default_rng(2)
    n, k, temperature = 30_000, 4, 2.5
    logits = rng.normal(0.0, 1.5, (n, k))
    truth = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in truth])
    # an overconfident model: its log-probabilities are the true ones times the temperature
    sharp = np.exp(logits * temperature)
    proba = sharp / sharp.sum(axis=1, keepdims=True)
    assert fit_temperature(proba, y) == pytest.approx(temperature, rel=0.03)


def test_a_calibration_that_helps_is_kept_with_where_it_was_fitted():
    proba, y = _platt_data(a=0.4, b=1.0, n=5000, seed=3)
    calibration = fit_calibration(proba, y, positive_index=1, fitted_on="out-of-fold")
    assert calibration.method == "platt" and calibration.fitted_on == "out-of-fold"
    assert brier(y, calibrate(proba, calibration)) < brier(y, proba) * (1 - MIN_BRIER_GAIN)


def test_none_when_calibration_does_not_help():
    # already calibrated: the fitted a, b are close to 1, 0 and the Brier score barely moves
    proba, y = _platt_data(a=1.0, b=0.0, n=5000, seed=4)
    calibration = fit_calibration(proba, y, positive_index=1, fitted_on="validation split")
    assert calibration == Calibration(method="none", fitted_on="validation split")


def test_none_when_temperature_does_not_help():
    rng = np.random.default_rng(5)
    logits = rng.normal(0.0, 1.5, (5000, 3))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in proba])
    assert fit_calibration(proba, y, positive_index=1, fitted_on="v").method == "none"


def test_multiclass_brier_is_the_mean_of_one_vs_rest_scores():
    proba = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    y = np.array([0, 1])
    one_vs_rest = [np.mean((proba[:, c] - (y == c)) ** 2) for c in range(3)]
    assert brier(y, proba) == pytest.approx(np.mean(one_vs_rest))


def test_binary_brier_is_the_usual_score():
    proba = np.array([[0.9, 0.1], [0.3, 0.7], [0.4, 0.6]])
    y = np.array([0, 1, 0])
    assert brier(y, proba) == pytest.approx(np.mean((proba[:, 1] - y) ** 2))


def test_reliability_bins_hold_mean_prediction_observed_frequency_and_count():
    proba = np.column_stack([1 - np.array([0.05, 0.15, 0.12, 0.95, 1.0]), [0.05, 0.15, 0.12, 0.95, 1.0]])
    y = np.array([0, 1, 0, 1, 1])
    assert reliability(y, proba, column=1) == [
        (pytest.approx(0.05), 0.0, 1),
        (pytest.approx(0.135), 0.5, 2),
        (pytest.approx(0.975), 1.0, 2),  # 1.0 falls in the last bin
    ]


def test_multiclass_reliability_bins_the_top_class_confidence_against_accuracy():
    proba = np.array([[0.5, 0.3, 0.2], [0.55, 0.4, 0.05], [0.1, 0.85, 0.05]])
    y = np.array([0, 1, 1])
    assert reliability(y, proba, column=None) == [(pytest.approx(0.525), 0.5, 2), (pytest.approx(0.85), 1.0, 1)]


def test_test_set_figures_are_of_the_raw_and_the_served_probabilities():
    proba, y = _platt_data(a=0.4, b=1.0, n=400, seed=6)
    fitted = Calibration(method="platt", a=0.4, b=1.0)
    point = OperatingPoint(positive_class="b", threshold=0.5, target_recall=0.9, chosen_on="cv")
    out = on_test_set(fitted, proba, y, ServedOutput(["a", "b"], 1, fitted, point))
    assert out.brier_before == brier(y, proba)
    assert out.brier_after == brier(y, calibrate(proba, fitted))
    assert out.reliability == reliability(y, calibrate(proba, fitted), column=1)
    assert out.reliability_before == reliability(y, proba, column=1)


def test_platt_stays_finite_on_perfectly_separated_data():
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    y = (p > 0.5).astype(int)
    a, b = fit_platt(np.column_stack([1 - p, p]), y, positive_index=1)
    calibrated = calibrate(np.column_stack([1 - p, p]), Calibration(method="platt", a=a, b=b))[:, 1]
    # Platt's targets for 4 positives and 4 negatives: 5/6 and 1/6, nowhere near 0 and 1
    assert 0.05 < calibrated.min() and calibrated.max() < 0.95


def test_temperature_stays_away_from_its_bound_on_a_split_the_model_gets_all_right():
    proba = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.7, 0.2, 0.1]])
    temperature = fit_temperature(proba, np.array([0, 1, 2, 0]))
    assert np.exp(-3.5) < temperature < np.exp(3.5)
