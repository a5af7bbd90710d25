"""Explanations on request: which inputs moved a prediction, computed through the served ONNX session
(so with the served calibration), in batched runs.

Tabular: the baseline row is every feature's training mean (the manifest's TabularInput.baseline); a
feature's contribution is how much the explained class's log-odds change when that feature alone goes
from its mean to the row's value. For a linear model on standardised features (breast-cancer's
scaler + logistic regression) this is exact: contribution_i = coef_i * (x_i - mean_i) / scale_i, the
same as taking the feature out of the row, and they sum to logit(x) - logit(baseline); a Platt
calibration, affine in the logit, scales them all by its slope. Probabilities come from the session in
float32 (onnxruntime's logistic also saturates near |log-odds| 17): log-odds are resolved to about
6e-8 * e^|log-odds|, so a row's own log-odds may be clipped where its contributions are not.

Images: occlusion sensitivity. The model input is cut into a GRID x GRID grid of patches; each
patch in turn is set to 0, the normalised training mean; the drop in the explained class's
probability per patch is the map, returned with a small colour PNG the page draws over the image.
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

import numpy as np
from typing_extensions import TypedDict  # pydantic reads typing.TypedDict only from Python 3.12

from .errors import InvalidInput, PayloadTooLarge
from .manifest import ImageInput, TabularInput

if TYPE_CHECKING:  # inference imports this module's result types
    from .inference import OnnxClassifier

FEATURE_METHOD = "baseline_replacement"
OCCLUSION_METHOD = "occlusion"
# 6 x 6 patches of 16 x 16 (skin-lesion, 96 x 96) or about 21 x 21 pixels (chest-ct, 128 x 128): each
# patch costs one inference, and 8 x 8 took chest-ct over the 50 ms per image this aims for (README
# "Explanations", scripts/bench_explanations.py).
GRID = 6
HEATMAP_SIZE = 64  # pixels per side of the heatmap PNG (the page scales it to the image)
# The most items one request may ask to be explained (README "Explanations": measured cost).
# A row costs n_features rows of inference (tens of µs); an image GRID * GRID + 1 images
# (tens of ms): four images stay far below the image function's timeout and a person's patience.
MAX_EXPLAINED_ROWS = 100
MAX_EXPLAINED_IMAGES = 4
# Heatmap colour map, from no drop to the largest drop in the map: matplotlib's "plasma" at five points,
# interpolated linearly (dark blue -> purple -> orange -> yellow, rising in lightness throughout).
_COLOURS = np.asarray([(13, 8, 135), (126, 3, 168), (204, 71, 120), (248, 149, 64), (240, 249, 33)], np.float64)
_TINY = float(np.finfo(np.float32).tiny)  # log-odds up to about 87


class FeatureContributions(TypedDict):
    """A tabular prediction's explanation."""

    method: str
    explained_class: str
    baseline_log_odds: float  # the explained class's, at the baseline row
    # feature name -> change in the explained class's log-odds when that feature alone goes from its
    # training mean to the row's value; largest magnitude first. With baseline_log_odds they add up
    # to the row's log-odds: exactly for a linear model, approximately otherwise.
    contributions: dict[str, float]


class OcclusionMap(TypedDict):
    """An image prediction's explanation."""

    method: str
    explained_class: str
    # grid[row][column]: the explained class's probability minus its probability with that patch
    # occluded (positive: the patch supported the class), top row first.
    grid: list[list[float]]
    max_drop: float
    heatmap_png: str  # base64 PNG, heatmap_size pixels square, colours scaled to max_drop
    heatmap_size: int


def check_budget(kind: str, count: int) -> None:
    """Refuses a request asking more explanations than one request may compute."""
    limit, what = (MAX_EXPLAINED_ROWS, "rows") if kind == "tabular" else (MAX_EXPLAINED_IMAGES, "images")
    if count > limit:
        raise PayloadTooLarge(
            f"Explanations are computed for at most {limit} {what} per request; this one has {count}. "
            "Send fewer, or leave out explain.",
            details=[{"max_explained": limit}],
        )


def _log_odds(proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) of each row's class, with 1 - p read from the other columns: a graph that
    computes the small probability itself (a sigmoid or softmax) keeps it to float32's smallest
    normal number, where 1 - p would round to 0 from log-odds of about 17."""
    rows = np.arange(len(proba))
    chosen = proba[rows, classes]
    others = proba[rows, 1 - classes] if proba.shape[1] == 2 else proba.sum(axis=1) - chosen
    return np.log(np.clip(chosen, _TINY, 1.0)) - np.log(np.clip(others, _TINY, 1.0))


def feature_contributions(
    classifier: OnnxClassifier, matrix: np.ndarray, class_indices: list[int]
) -> list[FeatureContributions]:
    """Each row's explanation of its class (class_indices: usually the predicted ones)."""
    manifest = classifier.manifest
    spec = manifest.input
    if not isinstance(spec, TabularInput):
        raise TypeError("feature_contributions explains tabular models")
    if spec.baseline is None:
        raise InvalidInput(
            f"Model {manifest.model_id!r} version {manifest.version} records no feature baseline: "
            "explanations need a version trained since they exist."
        )
    n_rows, n_features = matrix.shape
    baseline = np.asarray(spec.baseline, dtype=np.float32)
    # Per row: n_features copies of the baseline row with one feature each set to the row's value;
    # the baseline row last. One ONNX run for all. (Each feature's change is measured
    # from the baseline rather than by taking it out of the row: the same for a linear model, and its
    # log-odds stay within what float32 probabilities resolve when the row's own do not, as for the
    # public malignant example, whose served probability is 1.0.)
    variants = np.repeat(baseline[None, None, :], n_rows, axis=0).repeat(n_features, axis=1)
    features = np.arange(n_features)
    variants[:, features, features] = matrix
    batch = np.concatenate([variants.reshape(-1, n_features), baseline[None, :]])
    proba = classifier.predict_proba(batch)
    classes = np.asarray(class_indices)
    log_odds = _log_odds(proba[:-1], np.repeat(classes, n_features)).reshape(n_rows, n_features)
    baseline_log_odds = _log_odds(np.repeat(proba[-1:], n_rows, axis=0), classes)
    contributions = log_odds - baseline_log_odds[:, None]
    explanations: list[FeatureContributions] = []
    for row, class_index in enumerate(class_indices):
        order = np.argsort(-np.abs(contributions[row]), kind="stable")
        explanations.append(
            {
                "method": FEATURE_METHOD,
                "explained_class": manifest.classes[class_index],
                "baseline_log_odds": float(baseline_log_odds[row]),
                "contributions": {spec.feature_names[i]: float(contributions[row, i]) for i in order.tolist()},
            }
        )
    return explanations


def occlusion_grids(
    classifier: OnnxClassifier, batch: np.ndarray, class_indices: list[int], grid: int = GRID
) -> np.ndarray:
    """(n, grid, grid) drops of each image's class probability when each patch is occluded."""
    spec = classifier.manifest.input
    if not isinstance(spec, ImageInput):
        raise TypeError("occlusion_grids explains image models")
    rows = np.linspace(0, spec.height, grid + 1).astype(int)
    cols = np.linspace(0, spec.width, grid + 1).astype(int)
    grids = np.empty((len(batch), grid, grid))
    for item, class_index in enumerate(class_indices):
        image = batch[item]
        # Channels-last view of each variant, so a patch is [rows, cols] whatever the layout.
        variants = np.repeat(image[None], grid * grid + 1, axis=0)
        pixels = variants if spec.layout == "NHWC" else variants.transpose(0, 2, 3, 1)
        for r in range(grid):
            for c in range(grid):
                pixels[1 + r * grid + c, rows[r] : rows[r + 1], cols[c] : cols[c + 1]] = 0.0
        proba = classifier.predict_proba(variants)[:, class_index]
        grids[item] = (proba[0] - proba[1:]).reshape(grid, grid)
    return grids


def heatmap_png(grid: np.ndarray, size: int = HEATMAP_SIZE) -> str:
    """A grid of drops -> base64 PNG, size x size, coloured from 0 (no drop, or a rise) to its largest drop."""
    from PIL import Image

    top = float(grid.max())
    scaled = np.clip(grid / top, 0.0, 1.0) if top > 0 else np.zeros_like(grid)
    anchors = np.linspace(0.0, 1.0, len(_COLOURS))
    rgb = np.stack([np.interp(scaled, anchors, _COLOURS[:, channel]) for channel in range(3)], axis=-1)
    image = Image.fromarray(rgb.round().astype(np.uint8), "RGB").resize((size, size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def occlusion_maps(classifier: OnnxClassifier, batch: np.ndarray, class_indices: list[int]) -> list[OcclusionMap]:
    """Each image's explanation of its class (class_indices: usually the predicted ones)."""
    classes = classifier.manifest.classes
    return [
        {
            "method": OCCLUSION_METHOD,
            "explained_class": classes[class_index],
            "grid": np.round(grid, 4).tolist(),
            "max_drop": round(float(grid.max()), 4),
            "heatmap_png": heatmap_png(grid),
            "heatmap_size": HEATMAP_SIZE,
        }
        for grid, class_index in zip(occlusion_grids(classifier, batch, class_indices), class_indices)
    ]
