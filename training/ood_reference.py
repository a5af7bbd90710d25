"""The out-of-distribution reference a version's manifest carries (manifest.OodReference), built
from its training data and checked on held-out data. NOT FOR CLINICAL USE.

Per feature (tabular) or image statistic (images, med_classifier.domain.image_statistics of the
training files, decoded as serving decodes them): the training range widened by a margin of that
range, [low, high]; the margin is the smallest of MARGINS that flags at most a budget of held-out
inputs (tabular: out-of-fold rows of the training split; images: the validation split). Image
models also get a confidence score (the served probabilities' largest, "max_softmax") and the
threshold below which it is flagged, chosen on the validation split with the version's served
model so that statistics and score together flag at most VALIDATION_BUDGET of it. The share of
the held-out test inputs the finished reference flags (domain.ood, as serving does) is recorded
as false_flag_rate; the target is at most TARGET_FALSE_FLAG_RATE.

Also the drift reference (drift monitoring reads it): each feature's inner decile edges and the
training share in each bin (domain.drift.reference_bins, the monitor's own binning), and the
training class mix.

A trainer puts `tabular_reference(...)` or `image_reference(...)` into Candidate.ood; the pipeline
calls `finish(candidate.ood, classifier)` with the served classifier (after any quantisation).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from med_classifier.domain.drift import reference_bins
from med_classifier.domain.image_statistics import STATISTICS
from med_classifier.domain.manifest import ImageInput, OodReference
from med_classifier.domain.ood import FLAT, NO_COLOUR, assess, max_softmax

if TYPE_CHECKING:
    from med_classifier.domain.inference import OnnxClassifier

log = logging.getLogger("training")

TARGET_FALSE_FLAG_RATE = 0.05
# Share of held-out in-distribution inputs a reference may flag where its margins and threshold are
# chosen: half the target, so that the test set (never seen while choosing) stays under it.
VALIDATION_BUDGET = 0.025
# The largest chance a score threshold may leave of flagging more than TARGET_FALSE_FLAG_RATE.
RISK = 0.01
# Image statistics alone may flag this much of the validation split; the score takes the rest.
STATISTICS_BUDGET = 0.01
# Margins tried, as a fraction of each feature's training range (max - min).
MARGINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
# Image statistics are on 0..1 scales: at least this much room each side (a constant statistic,
# e.g. transparent_fraction 0 for every JPEG, would otherwise flag any change).
IMAGE_MARGIN_FLOOR = 0.02
# A margin never takes an image statistic's low below "none at all" (flat, colourless) unless
# training images were so: a blank or grayscale image is then always flagged with its plain reason.
NOTHING_BELOW = {"contrast": FLAT, "colourfulness": NO_COLOUR}
TABULAR_FOLDS = 5
SCORE = "max_softmax"
BATCH = 256


def bounds(values: np.ndarray, margin: float, floor: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per column of `values`: (min - room, max + room), room = max(margin * (max - min), floor)."""
    low, high = values.min(axis=0), values.max(axis=0)
    room = np.maximum(margin * (high - low), floor)
    return low - room, high + room


def flagged_share(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    """Share of rows with any value outside [low, high]."""
    if not len(values):
        return 0.0
    return float(np.mean(np.any((values < low) | (values > high), axis=1)))


def features(
    names: Sequence[str], train: np.ndarray, margin: float, floor: float = 0.0, lowest: Mapping[str, float] = {}
) -> list[dict[str, Any]]:
    """FeatureReference fields of each column of the training values. `lowest`: a value a feature's
    low never goes below unless training values did (a margin must not admit "no contrast at all")."""
    low, high = bounds(train, margin, floor)
    for i, name in enumerate(names):
        if name in lowest:
            low[i] = max(low[i], min(train[:, i].min(), lowest[name]))
    references = []
    for i, name in enumerate(names):
        edges, proportions = reference_bins(train[:, i].tolist())
        references.append(
            {"name": name, "low": float(low[i]), "high": float(high[i]), "edges": edges, "proportions": proportions}
        )
    return references


def class_mix(y_train: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    counts = np.bincount(np.asarray(y_train, dtype=np.int64), minlength=len(classes))
    return {name: float(counts[i] / max(counts.sum(), 1)) for i, name in enumerate(classes)}


def out_of_fold_share(train: np.ndarray, margin: float, seed: int, floor: float = 0.0) -> float:
    """Share of training rows outside the bounds the other folds give (TABULAR_FOLDS folds)."""
    from sklearn.model_selection import KFold

    folds = KFold(n_splits=min(TABULAR_FOLDS, len(train)), shuffle=True, random_state=seed)
    flagged = 0
    for fit_rows, held_rows in folds.split(train):
        low, high = bounds(train[fit_rows], margin, floor)
        flagged += flagged_share(train[held_rows], low, high) * len(held_rows)
    return flagged / len(train)


def smallest_margin(share_at: Any, budget: float) -> float:
    """The smallest of MARGINS whose flagged share (share_at(margin)) is within budget; the largest
    margin when none is."""
    return next((m for m in MARGINS if share_at(m) <= budget), MARGINS[-1])


def tabular_reference(
    feature_names: Sequence[str],
    classes: Sequence[str],
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    seed: int,
) -> dict[str, Any]:
    """Candidate.ood of a tabular model: margins chosen out-of-fold on the training split; the
    test rows, for finish() to measure the false-flag rate on."""
    train = np.asarray(X_train, dtype=np.float64)
    margin = smallest_margin(lambda m: out_of_fold_share(train, m, seed), VALIDATION_BUDGET)
    return {
        "reference": {
            "features": features(feature_names, train, margin),
            "class_mix": class_mix(y_train, classes),
            "chosen_on": f"training range widened by {margin:g} x range per feature, the smallest margin "
            f"flagging at most {VALIDATION_BUDGET:.1%} of out-of-fold training rows ({TABULAR_FOLDS} folds)",
        },
        "test": {"values": np.asarray(X_test, dtype=np.float64), "inputs": np.asarray(X_test, dtype=np.float32)},
    }


def statistics_matrix(summaries: Sequence[dict[str, float]]) -> np.ndarray:
    return np.asarray([[s[name] for name in STATISTICS] for s in summaries], dtype=np.float64).reshape(
        len(summaries), len(STATISTICS)
    )


def file_statistics(paths: Sequence[Path], spec: ImageInput) -> np.ndarray:
    """Image statistics of image files, decoded as serving decodes a request's images: (n, STATISTICS)."""
    from med_classifier.domain.preprocessing import decode_batch

    return statistics_matrix([decode_batch([Path(p).read_bytes()], spec)[1][0] for p in paths])


def image_reference(
    classes: Sequence[str],
    spec: ImageInput,
    train_paths: Sequence[Path],
    y_train: np.ndarray,
    valid: tuple[Sequence[Path], np.ndarray],
    test: tuple[Sequence[Path], np.ndarray],
) -> dict[str, Any]:
    """Candidate.ood of an image model: statistics of the training files (uploads included), margins
    chosen on the validation files; the validation and test tensors (`valid`, `test`: files and
    their tensors) for finish() to choose the score threshold on and measure it."""
    train = file_statistics(train_paths, spec)
    valid_values = file_statistics(valid[0], spec)

    def share_at(margin: float) -> float:
        return flagged_share(valid_values, *bounds(train, margin, IMAGE_MARGIN_FLOOR))

    margin = smallest_margin(share_at, STATISTICS_BUDGET)
    return {
        "reference": {
            "features": features(list(STATISTICS), train, margin, IMAGE_MARGIN_FLOOR, NOTHING_BELOW),
            "class_mix": class_mix(y_train, classes),
            "score": SCORE,
            "chosen_on": f"training range widened by max({margin:g} x range, {IMAGE_MARGIN_FLOOR:g}) per image "
            f"statistic, the smallest margin flagging at most {STATISTICS_BUDGET:.1%} of the validation split; "
            f"{SCORE} threshold: statistics and score together flag an expected {VALIDATION_BUDGET:.1%} of new "
            "in-distribution images at most (conformal, on the validation split)",
        },
        "valid": {"values": valid_values, "inputs": valid[1]},
        "test": {"values": file_statistics(test[0], spec), "inputs": test[1]},
    }


def served_probabilities(classifier: OnnxClassifier, inputs: np.ndarray) -> np.ndarray:
    if not len(inputs):
        return np.zeros((0, len(classifier.manifest.classes)))
    return np.concatenate([classifier.predict_proba(inputs[i : i + BATCH]) for i in range(0, len(inputs), BATCH)])


def score_threshold(flagged_by_statistics: np.ndarray, scores: np.ndarray) -> float | None:
    """The threshold (scores below it are flagged) that flags the k lowest-scoring validation inputs
    the statistics did not flag, halfway between the k-th and the next score. With m = the
    statistics' flags + k of n validation inputs, the share of new in-distribution inputs flagged
    is Beta(m, n + 1 - m) distributed (conformal ranks): k is the largest with an expected share
    m / (n + 1) within VALIDATION_BUDGET and a chance of at most RISK that the share exceeds
    TARGET_FALSE_FLAG_RATE. None when no k >= 1 qualifies (too few validation inputs)."""
    from scipy.stats import beta

    n, statistics = len(scores), int(np.sum(flagged_by_statistics))
    remaining = np.sort(scores[~flagged_by_statistics])
    chosen = None
    for k in range(1, len(remaining)):
        flagged = statistics + k
        if flagged / (n + 1) > VALIDATION_BUDGET or beta.sf(TARGET_FALSE_FLAG_RATE, flagged, n + 1 - flagged) > RISK:
            break
        chosen = k
    return None if chosen is None else float((remaining[chosen - 1] + remaining[chosen]) / 2)


def finish(ood: dict[str, Any] | None, classifier: OnnxClassifier) -> OodReference | None:
    """The manifest's OodReference: the score threshold chosen with the served model on the
    validation inputs (image models), and the false-flag rate measured on the test inputs."""
    if ood is None:
        return None
    reference = OodReference(**ood["reference"])
    names = [f.name for f in reference.features]
    if reference.score is not None:
        valid = ood["valid"]
        probabilities = served_probabilities(classifier, valid["inputs"])
        unscored = reference.model_copy(update={"score_threshold": None})
        by_statistics = np.asarray([not ok for ok, _ in assess(unscored, names, valid["values"], probabilities)])
        threshold = score_threshold(by_statistics, max_softmax(probabilities))
        if threshold is None:
            chosen_on = f"{reference.chosen_on} (none: {len(by_statistics)} validation images are too few)"
            reference = reference.model_copy(update={"score": None, "chosen_on": chosen_on})
        reference = reference.model_copy(update={"score_threshold": threshold})
    test = ood["test"]
    probabilities = served_probabilities(classifier, test["inputs"])
    verdicts = assess(reference, names, test["values"], probabilities)
    rate = float(np.mean([not ok for ok, _ in verdicts])) if verdicts else 0.0
    update: dict[str, Any] = {"false_flag_rate": rate}
    if reference.score_threshold is not None:
        update["score_flag_rate"] = float(np.mean(max_softmax(probabilities) < reference.score_threshold))
    log.info("out-of-distribution reference: flags %.1f%% of the %d test inputs", 100 * rate, len(verdicts))
    return reference.model_copy(update=update)
