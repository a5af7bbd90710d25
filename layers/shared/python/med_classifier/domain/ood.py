"""Out-of-distribution flags: is an input like what the model saw in training?

Each input's summary (tabular: its feature values; images: domain.image_statistics) is compared
with the manifest's OodReference, feature by feature (inside [low, high], both inclusive, is in
distribution), and, for image models, the served probabilities' confidence score with the
reference's threshold (a score at the threshold is in distribution). Every reason names the
feature or statistic and its value. A version published before the references existed has none:
its predictions say in_distribution null (not checked) with no reasons.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from .manifest import FeatureReference, OodReference

# Image statistics (0..1 scales) below these are "none at all".
NO_COLOUR = 0.02  # colourfulness: a grayscale image scores 0
FLAT = 0.01  # contrast: one flat colour scores 0
MOSTLY = 0.5  # transparent_fraction from which an image is "mostly" transparent

Verdict = tuple[bool | None, list[str]]


# (n, n_classes) served probabilities: an array, or each row's class -> probability mapping.
Probabilities = np.ndarray | Sequence[Mapping[str, float]]


def max_softmax(probabilities: Probabilities) -> np.ndarray:
    """The confidence score of each input: the largest of its served probabilities."""
    if len(probabilities) and isinstance(probabilities[0], Mapping):
        return np.asarray([max(row.values()) for row in probabilities], dtype=np.float64)
    return np.max(np.asarray(probabilities, dtype=np.float64), axis=1)


def assess(
    reference: OodReference | None, names: Sequence[str], values: np.ndarray, probabilities: Probabilities
) -> list[Verdict]:
    """(in_distribution, reasons) for each input. `values` is an (n, len(names)) matrix of the
    inputs' summaries in `names` order; `probabilities` the (n, n_classes) served probabilities.
    Without a reference: (None, []) each (not checked)."""
    count = len(values)
    if reference is None:
        return [(None, []) for _ in range(count)]
    values = np.asarray(values, dtype=np.float64).reshape(count, len(names))
    reasons: list[list[str]] = [[] for _ in range(count)]
    columns = {name: i for i, name in enumerate(names)}
    checked = [feature for feature in reference.features if feature.name in columns]
    if checked:
        # One comparison over the whole matrix (a request of 100 rows costs microseconds).
        block = values[:, [columns[feature.name] for feature in checked]]
        low = np.asarray([feature.low for feature in checked])
        high = np.asarray([feature.high for feature in checked])
        # NaN compares false either way: ~(inside) flags it with the non-finite values.
        rows, cols = np.nonzero(~((block >= low) & (block <= high)))  # row by row, in reference order
        for row, col in zip(rows.tolist(), cols.tolist()):
            reasons[row].append(feature_reason(checked[col], float(block[row, col])))
    if reference.score_threshold is not None and count:
        scores = max_softmax(probabilities)
        for row in np.flatnonzero(~(scores >= reference.score_threshold)).tolist():
            reasons[row].append(score_reason(float(scores[row]), reference))
    return [(not found, found) for found in reasons]


def assess_summaries(
    reference: OodReference | None, summaries: Sequence[Mapping[str, float]], probabilities: Probabilities
) -> list[Verdict]:
    """assess() for inputs given as name -> value summaries (PredictionResult.inputs)."""
    if reference is None or not summaries:
        return assess(reference, [], np.zeros((len(summaries), 0)), probabilities)
    names = [f.name for f in reference.features if all(f.name in s for s in summaries)]
    values = np.asarray([[s[name] for name in names] for s in summaries], dtype=np.float64)
    return assess(reference, names, values.reshape(len(summaries), len(names)), probabilities)


def _number(value: float) -> str:
    return f"{value:.4g}"


def _percent(share: float) -> str:
    return f"{share * 100:.0f} %"


def feature_reason(feature: FeatureReference, value: float) -> str:
    """Why `value` of `feature`, outside [low, high], is out of distribution, in plain words."""
    name = feature.name
    if not math.isfinite(value):
        return f"{name} = {value} is not a finite number"
    if name == "transparent_fraction":
        if value >= MOSTLY:
            return f"the image is mostly transparent ({_percent(value)} of pixels)"
        share, most = _percent(value), _percent(feature.high)
        return f"the image is partly transparent ({share} of pixels; training images: at most {most})"
    if name == "colourfulness" and value < feature.low and value < NO_COLOUR:
        return "the image has no colour; this model was trained on colour images"
    if name == "colourfulness" and value > feature.high and feature.low < NO_COLOUR:
        return "the image is in colour; this model was trained on grayscale images"
    if name == "contrast" and value < feature.low and value < FLAT:
        return "the image is blank (a single flat colour)"
    return (
        f"{name} = {_number(value)} is outside the range seen in training "
        f"({_number(feature.low)} to {_number(feature.high)})"
    )


def score_reason(score: float, reference: OodReference) -> str:
    """Why a confidence score below the reference's threshold is out of distribution."""
    text = f"confidence score {score:.3f} is below {reference.score_threshold:.3f}"
    if reference.score_flag_rate is None:
        return text
    return f"{text}, which {_percent(reference.score_flag_rate)} of in-distribution test images fall below"
