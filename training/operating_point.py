"""Operating points of the binary models: the decision threshold on the positive class's calibrated
probability, chosen on cross-validation (or a validation split) as (about) the highest one whose
recall of that class reaches a target; serving applies it (med_classifier.domain.decision.decide), and the
test metrics the gate checks are measured at it. NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from med_classifier.domain.manifest import OperatingPoint
from training import calibration as calibration_fit
from training.calibration import ServedOutput, fit_calibration

log = logging.getLogger("training")

PR_CURVE_POINTS = 40  # the manifest keeps a downsampled test precision-recall curve
# A missed positive costs at least as much as a false alarm, so the threshold on a calibrated
# probability never rises above the equal-cost one: a target the data reaches higher up is met at
# 0.5 too (recall only grows as the threshold falls). Without this cap a network whose validation
# outputs saturate at 1.0 would get a threshold of 0.99999…, missing every slightly less sure case.
MAX_THRESHOLD = 0.5


def choose_threshold(scores: np.ndarray, is_positive: np.ndarray, target_recall: float) -> float:
    """A threshold t such that labelling `scores >= t` positive finds at least target_recall of the
    positives, as high as it can be: every t in (s_next, s_m] labels the data alike, s_m the score
    of the ceil(target_recall * n_positive)-th highest positive and s_next the next lower score of
    any example; the midpoint leaves unseen cases the most room on either side (on a small
    validation split s_m itself would sit right on its lowest positive). Never above MAX_THRESHOLD."""
    if not 0.0 < target_recall <= 1.0:
        raise ValueError(f"target recall must be in (0, 1], got {target_recall}")
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.sort(scores[np.asarray(is_positive, dtype=bool)])[::-1]
    if not len(positives):
        raise ValueError("cannot choose a threshold: no positive examples to measure recall on")
    # the 1e-9 keeps 0.99 * 100 (= 99.00000000000001 in floating point) at 99 positives
    needed = max(1, math.ceil(target_recall * len(positives) - 1e-9))
    highest = positives[needed - 1]
    below = scores[scores < highest]
    threshold = (highest + below.max()) / 2 if len(below) else highest
    return float(min(threshold, MAX_THRESHOLD))


def rates(scores: np.ndarray, is_positive: np.ndarray, threshold: float) -> dict[str, float]:
    """Recall, precision and specificity of the positive class when `scores >= threshold` is positive."""
    predicted = np.asarray(scores) >= threshold
    actual = np.asarray(is_positive, dtype=bool)
    tp = int(np.sum(predicted & actual))
    fp = int(np.sum(predicted & ~actual))
    tn = int(np.sum(~predicted & ~actual))
    fn = int(np.sum(~predicted & actual))
    return {
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "specificity": tn / (tn + fp) if tn + fp else 0.0,
    }


def pr_curve(scores: np.ndarray, is_positive: np.ndarray, points: int = PR_CURVE_POINTS) -> list[tuple[float, float]]:
    """(recall, precision) pairs of the precision-recall curve, at most `points` of them (evenly
    spaced along the curve, both ends kept)."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, _ = precision_recall_curve(np.asarray(is_positive, dtype=bool), scores)
    keep = np.unique(np.linspace(0, len(recall) - 1, min(points, len(recall))).round().astype(int))
    return [(float(recall[i]), float(precision[i])) for i in keep]


def choose(
    proba: np.ndarray, y_true: np.ndarray, classes: list[str], positive_class: str, target_recall: float, chosen_on: str
) -> OperatingPoint:
    """The operating point chosen on (calibrated) probabilities and labels, with its figures there."""
    positive = classes.index(positive_class)
    scores, is_positive = np.asarray(proba)[:, positive], np.asarray(y_true) == positive
    threshold = choose_threshold(scores, is_positive, target_recall)
    return OperatingPoint(
        positive_class=positive_class,
        threshold=threshold,
        target_recall=target_recall,
        chosen_on=chosen_on,
        cv=rates(scores, is_positive, threshold),
    )


def on_test_set(point: OperatingPoint, proba: np.ndarray, y_test: np.ndarray, classes: list[str]) -> OperatingPoint:
    """The operating point with its test-set figures and the test precision-recall curve."""
    positive = classes.index(point.positive_class)
    scores, is_positive = np.asarray(proba)[:, positive], np.asarray(y_test) == positive
    return point.model_copy(
        update={"test": rates(scores, is_positive, point.threshold), "pr_curve": pr_curve(scores, is_positive)}
    )


@dataclass(frozen=True)
class Serving:
    """A trainer's calibration and operating point, with their test figures, and the served
    (calibrated) test probabilities the metrics and plots are computed from."""

    served: ServedOutput
    test_proba: np.ndarray

    def candidate_fields(self) -> dict:
        """Candidate.calibration and Candidate.operating_point."""
        served = self.served
        return {
            "calibration": served.calibration.model_dump(mode="json") if served.calibration else None,
            "operating_point": served.operating_point.model_dump(mode="json") if served.operating_point else None,
        }


def fit_serving(
    *,
    classes: list[str],
    outputs: dict,
    fit_proba: np.ndarray,
    fit_y: np.ndarray,
    fitted_on: str,
    test_proba: np.ndarray,
    y_test: np.ndarray,
    target: tuple[str, float] | None = None,
) -> Serving:
    """Calibration fitted on (fit_proba, fit_y), the model's uncalibrated class probabilities on data
    of the training split; for binary models, target = (positive class, target recall): the
    operating point chosen on the same data, calibrated; both measured on the test set (test_proba: uncalibrated)."""
    positive_index = int(outputs.get("positive_index", 1))
    calibration = fit_calibration(fit_proba, fit_y, positive_index, fitted_on)
    served = ServedOutput(list(classes), positive_index, calibration)
    point = None
    if target is not None:
        point = choose(served.proba(fit_proba), fit_y, classes, *target, fitted_on)
    served = ServedOutput(list(classes), positive_index, calibration, point)
    calibrated_test = served.proba(test_proba)
    if point is not None:
        point = on_test_set(point, calibrated_test, y_test, classes)
        log.info(
            "operating point: %s >= %.4f (target recall %.2f, chosen on %s): recall %.4f precision %.4f "
            "specificity %.4f there; test recall %.4f precision %.4f specificity %.4f",
            point.positive_class,
            point.threshold,
            point.target_recall,
            point.chosen_on,
            point.cv["recall"],
            point.cv["precision"],
            point.cv["specificity"],
            point.test["recall"],
            point.test["precision"],
            point.test["specificity"],
        )
    calibration = calibration_fit.on_test_set(calibration, test_proba, y_test, served)
    log.info(
        "calibration %s: test Brier %.5f -> %.5f", calibration.method, calibration.brier_before, calibration.brier_after
    )
    return Serving(ServedOutput(list(classes), positive_index, calibration, point), calibrated_test)
