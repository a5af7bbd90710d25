"""Classification metrics and the ONNX parity check, shared by every trainer."""

from __future__ import annotations

import logging

import numpy as np

from med_classifier.domain.decision import decide
from med_classifier.domain.manifest import OperatingPoint
from training.calibration import ServedOutput

log = logging.getLogger("training")


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, classes: list[str], operating_point: OperatingPoint | None = None
) -> dict[str, float]:
    """Test-split accuracy, macro F1, per-class precision and recall, ROC AUC (binary: of
    class 1 vs 0; multiclass: macro one-vs-rest over the classes present). Labels as serving
    decides them: at the operating point when there is one, else the most probable class."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, roc_auc_score

    y_true = np.asarray(y_true)
    y_pred = decide(np.asarray(proba), classes, operating_point)
    labels = list(range(len(classes)))
    precision, recall, _, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    metrics = {
        "test_accuracy": float(accuracy_score(y_true, y_pred)),
        "test_macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
    }
    for index, name in enumerate(classes):
        metric_name = name.replace("-", "_").replace(" ", "_")
        metrics[f"test_precision_{metric_name}"] = float(precision[index])
        metrics[f"test_recall_{metric_name}"] = float(recall[index])
    present = np.unique(y_true)
    if len(present) >= 2:
        if len(classes) == 2:
            metrics["test_roc_auc"] = float(roc_auc_score(y_true, proba[:, 1]))
        else:
            # Classes absent from a small test split cannot enter a one-vs-rest AUC.
            aucs = [roc_auc_score(y_true == c, proba[:, c]) for c in present]
            metrics["test_roc_auc"] = float(np.mean(aucs))
    return metrics


def parity_figures(
    native_proba: np.ndarray, exported_proba: np.ndarray, served: ServedOutput | None = None
) -> dict[str, float | int]:
    """Native model vs its ONNX export on the same rows: rows, label mismatches and the
    largest absolute class-probability difference (what Candidate.parity_limits bound).
    With `served`, of what serving answers: both calibrated, labels decided at the operating point."""
    native = np.asarray(native_proba, dtype=np.float64)
    exported = np.asarray(exported_proba, dtype=np.float64)
    if native.shape != exported.shape:
        raise RuntimeError(f"native model gives shape {native.shape}, ONNX {exported.shape}")
    if served is not None:
        native, exported = served.proba(native), served.proba(exported)
        native_labels, exported_labels = served.labels(native), served.labels(exported)
    else:
        native_labels, exported_labels = np.argmax(native, 1), np.argmax(exported, 1)
    return {
        "rows": int(native.shape[0]),
        "label_mismatches": int(np.sum(native_labels != exported_labels)),
        "max_abs_prob_diff": float(np.max(np.abs(native - exported))) if len(native) else 0.0,
    }


def log_parity(check: dict[str, float | int]) -> None:
    log.info(
        "ONNX parity over %d rows: %d label mismatches, max |Δp| %.2e",
        check["rows"],
        check["label_mismatches"],
        check["max_abs_prob_diff"],
    )
