"""Which class a prediction names: the most probable one, or for a binary model with an operating
point, the positive class whenever its probability reaches the threshold chosen for its recall."""

from __future__ import annotations

import numpy as np

from .manifest import OperatingPoint


def decide(proba: np.ndarray, classes: list[str], operating_point: OperatingPoint | None) -> np.ndarray:
    """(n, n_classes) probabilities -> (n,) class indices."""
    if operating_point is None:
        return np.argmax(proba, axis=1)
    positive = classes.index(operating_point.positive_class)
    return np.where(proba[:, positive] >= operating_point.threshold, positive, 1 - positive)
