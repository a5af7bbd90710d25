"""ONNX Runtime inference for a published version, shaped by its manifest."""

from __future__ import annotations

import time
from typing import Annotated, NotRequired

import numpy as np
from pydantic import Field
from typing_extensions import TypedDict  # pydantic reads typing.TypedDict only from Python 3.12

from .calibration import calibrate
from .decision import decide
from .errors import IntegrityError
from .explanations import FeatureContributions, OcclusionMap
from .manifest import Manifest, OnnxOutputs


# A plain dict, not a dataclass: a batch of 100 is built and written as JSON (orjson) in a third
# of the time.
class Prediction(TypedDict):
    """One row's or image's prediction: the most probable class, every class's probability, and
    whether the input is like what the model saw in training."""

    label: str
    class_index: int
    confidence: float
    probabilities: dict[str, float]
    # Set by domain.serving (domain.ood).
    in_distribution: Annotated[
        bool | None,
        Field(
            description="false: the input is unlike the model's training data (ood_reasons say how): do not "
            "trust this prediction. null: not checked (a version published without an out-of-distribution reference)"
        ),
    ]
    ood_reasons: Annotated[
        list[str],
        Field(description="Why the input is out of distribution, naming features and values; empty when it is not"),
    ]
    # Only when the request asked for it (domain/explanations.py).
    explanation: NotRequired[FeatureContributions | OcclusionMap]


def class_probabilities(raw: np.ndarray, outputs: OnnxOutputs) -> np.ndarray:
    """A model's raw output -> (n, n_classes) float64 class probabilities, as the
    manifest's output format says (a sigmoid column is expanded to both classes)."""
    raw = np.asarray(raw, dtype=np.float64)
    if outputs.probability_format == "sigmoid_positive":
        positive = raw.reshape(-1)
        proba = np.empty((positive.shape[0], 2))
        proba[:, outputs.positive_index] = positive
        proba[:, 1 - outputs.positive_index] = 1.0 - positive
        return proba
    return raw


def session_options():
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Lambda gives fractional vCPUs: one intra-op thread avoids oversubscription.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class OnnxClassifier:
    """An InferenceSession plus the manifest that says how to read its output."""

    def __init__(self, manifest: Manifest, onnx: bytes):
        import onnxruntime as ort

        self.manifest = manifest
        try:
            self.session = ort.InferenceSession(
                onnx, sess_options=session_options(), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise IntegrityError(f"{manifest.model_id}/{manifest.version}: ONNX model does not load: {exc}") from exc
        inputs = {i.name for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        if manifest.input.input_name not in inputs:
            raise IntegrityError(f"ONNX graph has no input {manifest.input.input_name!r} (has {sorted(inputs)})")
        if manifest.outputs.probabilities not in outputs:
            raise IntegrityError(f"ONNX graph has no output {manifest.outputs.probabilities!r} (has {sorted(outputs)})")
        # Run once on a neutral input so a graph that loads but cannot execute is refused
        # before it replaces a working version.
        try:
            probe = self.predict_proba(np.zeros((1, *self._item_shape()), dtype=np.float32))
        except Exception as exc:
            raise IntegrityError(f"{manifest.model_id}/{manifest.version}: probe run failed: {exc}") from exc
        if probe.shape != (1, len(manifest.classes)) or not np.all(np.isfinite(probe)):
            raise IntegrityError(f"probe run returned shape {probe.shape}, expected (1, {len(manifest.classes)})")

    def _item_shape(self) -> tuple[int, ...]:
        spec = self.manifest.input
        if spec.kind == "tabular":
            return (spec.n_features,)
        if spec.layout == "NCHW":
            return (spec.channels, spec.height, spec.width)
        return (spec.height, spec.width, spec.channels)

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """The served class probabilities: the ONNX output, calibrated as the manifest says."""
        manifest = self.manifest
        (raw,) = self.session.run([manifest.outputs.probabilities], {manifest.input.input_name: batch})
        return calibrate(
            class_probabilities(raw, manifest.outputs), manifest.calibration, manifest.outputs.positive_index
        )

    def predict(self, batch: np.ndarray) -> tuple[list[Prediction], float]:
        """Predictions for every row, and the inference time in milliseconds."""
        started = time.perf_counter()
        proba = self.predict_proba(batch)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        classes = self.manifest.classes
        indices = decide(proba, classes, self.manifest.operating_point)
        confidences = proba[np.arange(len(proba)), indices]
        # Python floats in bulk (tolist), not one numpy scalar at a time.
        predictions: list[Prediction] = [
            {
                "label": classes[index],
                "class_index": index,
                "confidence": confidence,
                "probabilities": dict(zip(classes, row)),
            }
            for index, confidence, row in zip(indices.tolist(), confidences.tolist(), proba.tolist())
        ]
        return predictions, elapsed_ms
