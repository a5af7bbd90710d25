"""Calibrated probabilities, fitted within the training split and kept only where they help.

Binary models: Platt scaling of the logit of the manifest's positive_index column; multiclass:
temperature scaling of log-probabilities. The fitted parameters are applied by the served
function (med_classifier.domain.calibration.calibrate), never by a second implementation here, so
the evaluated probabilities are the served ones. NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from med_classifier.domain.calibration import EPS, calibrate
from med_classifier.domain.decision import decide
from med_classifier.domain.manifest import Calibration, OperatingPoint

log = logging.getLogger("training")

# A calibration is kept only when it cuts the Brier score of the data it was fitted on by at
# least this share: a fit that barely moves the probabilities is not worth serving.
MIN_BRIER_GAIN = 0.02
RELIABILITY_BINS = 10
# Temperatures searched (log scale): far beyond what a trained network needs.
LOG_TEMPERATURE_BOUNDS = (-4.0, 4.0)


@dataclass(frozen=True)
class ServedOutput:
    """How serving turns a model's class-probability columns into what it answers: calibrated
    probabilities (domain.calibration) and labels (domain.decision)."""

    classes: list[str]
    positive_index: int = 1  # OnnxOutputs.positive_index: the column Platt scaling reads
    calibration: Calibration | None = None
    operating_point: OperatingPoint | None = None

    @classmethod
    def of(cls, classes: list[str], outputs: dict, calibration: dict | None, operating_point: dict | None):
        """From a Candidate's (or manifest's) fields."""
        return cls(
            list(classes),
            int(outputs.get("positive_index", 1)),
            Calibration(**calibration) if calibration else None,
            OperatingPoint(**operating_point) if operating_point else None,
        )

    def proba(self, raw: np.ndarray) -> np.ndarray:
        return calibrate(np.asarray(raw, dtype=np.float64), self.calibration, self.positive_index)

    def labels(self, proba: np.ndarray) -> np.ndarray:
        return decide(np.asarray(proba), self.classes, self.operating_point)


def brier(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Brier score; multiclass: the mean over classes of the one-vs-rest score (binary: the usual one)."""
    proba = np.asarray(proba, dtype=np.float64)
    one_hot = np.eye(proba.shape[1])[np.asarray(y_true, dtype=np.int64)]
    return float(np.mean((proba - one_hot) ** 2))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p)


def fit_platt(proba: np.ndarray, y_true: np.ndarray, positive_index: int) -> tuple[float, float]:
    """(a, b) minimising the cross-entropy of sigmoid(a * logit(p) + b), p the positive_index
    column, against Platt's targets (n+ + 1) / (n+ + 2) and 1 / (n- + 2) rather than 1 and 0: on
    perfectly separated data the fit stays finite instead of pushing every probability to 0 or 1."""
    from scipy.optimize import minimize
    from scipy.special import expit

    z = _logit(np.asarray(proba, dtype=np.float64)[:, positive_index])
    positive = np.asarray(y_true) == positive_index
    n_positive, n_negative = int(positive.sum()), int((~positive).sum())
    t = np.where(positive, (n_positive + 1) / (n_positive + 2), 1 / (n_negative + 2))

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        s = params[0] * z + params[1]
        # log(1 + e^s) - t*s, stable for large |s|
        value = np.mean(np.logaddexp(0.0, s) - t * s)
        residual = expit(s) - t
        return float(value), np.array([np.mean(residual * z), np.mean(residual)])

    result = minimize(loss, np.array([1.0, 0.0]), jac=True, method="BFGS")
    return float(result.x[0]), float(result.x[1])


def fit_temperature(proba: np.ndarray, y_true: np.ndarray) -> float:
    """T minimising the cross-entropy of softmax(log(p) / T) against targets smoothed as Platt's
    are: 1 / (n + 2) of the weight spread over the other classes, so that a validation split the
    model gets all right does not drive T to its bound."""
    from scipy.optimize import minimize_scalar

    log_p = np.log(np.clip(np.asarray(proba, dtype=np.float64), EPS, 1.0))
    n, k = log_p.shape
    smoothing = 1.0 / (n + 2)
    targets = np.full((n, k), smoothing / (k - 1))
    targets[np.arange(n), np.asarray(y_true, dtype=np.int64)] = 1.0 - smoothing

    def loss(log_t: float) -> float:
        logits = log_p / np.exp(log_t)
        logits -= logits.max(axis=1, keepdims=True)
        log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return float(-np.mean(np.sum(targets * log_softmax, axis=1)))

    result = minimize_scalar(loss, bounds=LOG_TEMPERATURE_BOUNDS, method="bounded")
    return float(np.exp(result.x))


def fit_calibration(proba: np.ndarray, y_true: np.ndarray, positive_index: int, fitted_on: str) -> Calibration:
    """Platt (2 classes) or temperature (more) scaling fitted on (proba, y_true), kept only when it
    cuts their Brier score by MIN_BRIER_GAIN; else method "none" (served as they are)."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape[1] == 2:
        a, b = fit_platt(proba, y_true, positive_index)
        fitted = Calibration(method="platt", a=a, b=b, fitted_on=fitted_on)
    else:
        fitted = Calibration(method="temperature", temperature=fit_temperature(proba, y_true), fitted_on=fitted_on)
    before = brier(y_true, proba)
    after = brier(y_true, calibrate(proba, fitted, positive_index))
    kept = after <= before * (1.0 - MIN_BRIER_GAIN)
    log.info(
        "calibration (%s, fitted on %s): Brier %.5f -> %.5f on the fitting data: %s",
        fitted.method,
        fitted_on,
        before,
        after,
        "kept" if kept else f"not kept (needs a {MIN_BRIER_GAIN:.0%} gain)",
    )
    return fitted if kept else Calibration(method="none", fitted_on=fitted_on)


def reliability(y_true: np.ndarray, proba: np.ndarray, column: int | None, bins: int = RELIABILITY_BINS):
    """Reliability diagram bins (mean predicted probability, observed frequency, count), empty bins
    left out. column: the class whose probability is binned (binary models: the positive class);
    None: the top class's confidence against whether it was right (multiclass)."""
    proba = np.asarray(proba, dtype=np.float64)
    y_true = np.asarray(y_true)
    if column is None:
        predicted = proba.max(axis=1)
        observed = (np.argmax(proba, axis=1) == y_true).astype(np.float64)
    else:
        predicted = proba[:, column]
        observed = (y_true == column).astype(np.float64)
    which = np.minimum((predicted * bins).astype(np.int64), bins - 1)
    return [
        (float(predicted[which == i].mean()), float(observed[which == i].mean()), int(np.sum(which == i)))
        for i in range(bins)
        if np.any(which == i)
    ]


def on_test_set(
    calibration: Calibration, raw_test: np.ndarray, y_test: np.ndarray, served: ServedOutput
) -> Calibration:
    """The calibration with its test-set figures: Brier before/after and the reliability bins of
    the probabilities before and after calibration (binary: of the operating point's positive
    class, else column 1; multiclass: top-class confidence)."""
    calibrated = calibrate(np.asarray(raw_test, dtype=np.float64), calibration, served.positive_index)
    if len(served.classes) == 2:
        op = served.operating_point
        column = served.classes.index(op.positive_class) if op is not None else 1
    else:
        column = None
    return calibration.model_copy(
        update={
            "brier_before": brier(y_test, raw_test),
            "brier_after": brier(y_test, calibrated),
            "reliability": reliability(y_test, calibrated, column),
            "reliability_before": reliability(y_test, raw_test, column),
        }
    )
