"""Golden examples: fixed inputs, and what a model version answered for them when it was published.

Training records them in the manifest (training/pipeline.py, through the serving code below, so
they are what serving computes). Before a new function version takes traffic, the PreTraffic hook
sends them to it (domain/release_check.py): the same model must give the same answer whatever code
serves it, so a changed preprocessing, decoder or runtime fails the deployment, not a patient's
request. The inputs are generated, not taken from a data set: they prove the code path, not the
model's accuracy (the gate does that).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .manifest import GoldenExample, ImageInput, TabularInput

if TYPE_CHECKING:
    from .inference import OnnxClassifier, Prediction

# Largest class-probability difference accepted between the published answer and a new version's:
# onnxruntime's kernels may differ in the last bits across CPUs (e.g. INT8 with or without VNNI).
PROBABILITY_TOLERANCE = 1e-3
GOLDEN_IMAGE_SIDE = 32  # small in the manifest; serving resizes to the model's side, as for any image
TABULAR_SCALES = (1.0, 0.9, 1.1)  # the manifest's example row, and that row 10 % lower and higher


def golden_inputs(spec: TabularInput | ImageInput) -> list[list[float]] | list[bytes]:
    """The fixed inputs of a model's golden examples: rows for a tabular model, PNG files for an image model."""
    if spec.kind == "tabular":
        row = spec.example or [1.0] * spec.n_features
        return [[value * scale for value in row] for scale in TABULAR_SCALES]
    return [_png(image, spec.channels) for image in _golden_images(spec.channels)]


def _golden_images(channels: int) -> list:
    import numpy as np

    ramp = np.linspace(0, 255, GOLDEN_IMAGE_SIDE)
    gradient = (ramp[None, :] + ramp[:, None]) / 2
    noise = np.random.default_rng(20261201).integers(0, 256, size=gradient.shape)
    if channels == 1:
        images = [gradient[..., None], noise[..., None]]
    else:
        images = [np.stack([gradient, noise, 255 - gradient], axis=-1), np.stack([noise, gradient, noise], axis=-1)]
    return [image.astype(np.uint8) for image in images]


def _png(pixels, channels: int) -> bytes:
    from PIL import Image

    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode="L" if channels == 1 else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def golden_examples(classifier: OnnxClassifier) -> list[GoldenExample]:
    """The golden examples of the version `classifier` runs, computed as serving computes them."""
    spec = classifier.manifest.input
    inputs = golden_inputs(spec)
    predictions = served_predictions(classifier, inputs)
    return [
        GoldenExample(
            instance=item if spec.kind == "tabular" else None,
            image_png=base64.b64encode(item).decode("ascii") if spec.kind == "image" else None,
            label=prediction["label"],
            probabilities=prediction["probabilities"],
        )
        for item, prediction in zip(inputs, predictions, strict=True)
    ]


def served_predictions(classifier: OnnxClassifier, inputs: Sequence) -> list[Prediction]:
    """What the predict functions answer for `inputs`: the same parsing and preprocessing calls."""
    spec = classifier.manifest.input
    if spec.kind == "tabular":
        from .tabular import rows_to_matrix

        batch = rows_to_matrix(list(inputs), spec, max_rows=len(inputs))
    else:
        from .preprocessing import batch_from_bytes

        batch = batch_from_bytes(list(inputs), spec)
    return classifier.predict(batch)[0]


def request_body(examples: Sequence[GoldenExample]) -> dict:
    """The predict request that sends `examples`: {"instances": [...]} or {"images": [...]}."""
    if all(example.instance is not None for example in examples):
        return {"instances": [example.instance for example in examples]}
    return {"images": [example.image_png for example in examples]}


def differences(index: int, expected: GoldenExample, served: dict) -> list[str]:
    """How a served prediction differs from golden example `index` (nothing when it answers the same).
    A label differs only when the published answer was clear: if its two most probable classes were
    within the tolerance, either label is the same answer."""
    found = []
    probabilities = served.get("probabilities") or {}
    if set(probabilities) != set(expected.probabilities):
        return [f"golden example {index}: classes {sorted(probabilities)} instead of {sorted(expected.probabilities)}"]
    drift = max(abs(probabilities[name] - p) for name, p in expected.probabilities.items())
    top_two = sorted(expected.probabilities.values(), reverse=True)[:2]
    clear = len(top_two) < 2 or top_two[0] - top_two[1] > PROBABILITY_TOLERANCE
    if served.get("label") != expected.label and clear:
        found.append(f"golden example {index}: label {served.get('label')!r} instead of {expected.label!r}")
    if drift > PROBABILITY_TOLERANCE:
        found.append(
            f"golden example {index}: probabilities differ by up to {drift:.2e} (tolerance {PROBABILITY_TOLERANCE:.0e})"
        )
    return found
