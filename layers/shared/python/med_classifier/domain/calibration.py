"""Calibrated class probabilities: the manifest's Calibration applied to a model's output.

Training fits the parameters (training/calibration.py) and checks ONNX parity on this function's
output; serving applies the same function, so the served probabilities are the evaluated ones."""

from __future__ import annotations

import numpy as np

from .manifest import Calibration

# log(0) and logit(0 or 1) are infinite: probabilities are clipped to [EPS, 1 - EPS] first.
EPS = 1e-12


def calibrate(proba: np.ndarray, calibration: Calibration | None, positive_index: int = 1) -> np.ndarray:
    """(n, n_classes) probabilities -> calibrated (n, n_classes) float64 probabilities."""
    if calibration is None or calibration.method == "none":
        return proba
    clipped = np.clip(np.asarray(proba, dtype=np.float64), EPS, 1.0 - EPS)
    if calibration.method == "platt":
        if clipped.shape[1] != 2:
            raise ValueError(f"platt calibration needs 2 class columns, got {clipped.shape[1]}")
        positive = clipped[:, positive_index]
        z = calibration.a * (np.log(positive) - np.log1p(-positive)) + calibration.b
        calibrated = np.empty_like(clipped)
        calibrated[:, positive_index] = 1.0 / (1.0 + np.exp(-z))
        calibrated[:, 1 - positive_index] = 1.0 - calibrated[:, positive_index]
        return calibrated
    logits = np.log(clipped) / calibration.temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)
