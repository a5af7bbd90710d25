"""What a model trainer hands to the shared pipeline (gate, MLflow, publish)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TrainOptions:
    """Options every trainer accepts; each ignores what does not apply to it."""

    smoke: bool = False  # tiny, fast run for tests and CI
    seed: int = 42
    k_folds: int = 10  # cross-validation folds (tabular models)
    data_dir: Path | None = None  # the public data set in its published layout; None = synthetic
    epochs: int | None = None  # None: the trainer's default (fewer in smoke mode)
    batch_size: int | None = None
    pretrained: Path | None = None  # local weights file to start from; nothing is ever downloaded
    quantize: bool = True  # try a static INT8 variant (image models)
    # Labelled uploads (image path, class name) that image trainers add to the training
    # split only; labels are checked by the caller (training.retrain).
    extra_train: tuple[tuple[Path, str], ...] = ()
    # Binary models: recall of the positive class the operating point must reach on
    # cross-validation (training/operating_point.py); None: the trainer's default.
    target_recall: float | None = None
    # Start from `pretrained` (a production version's native weights: training.retrain) with the
    # trainer's fine-tuning schedule: fewer epochs, a lower learning rate.
    fine_tune: bool = False


@dataclass(frozen=True)
class NativeWeightsFile:
    """The trained network's weights in its framework's format (NativeWeights.format), published
    next to model.onnx for later fine-tuning."""

    format: str
    data: bytes

    def describe(self):
        from med_classifier.domain.manifest import NATIVE_WEIGHTS_FILES, NativeWeights, sha256_hex

        return NativeWeights(
            format=self.format,
            file=NATIVE_WEIGHTS_FILES[self.format],
            sha256=sha256_hex(self.data),
            size_bytes=len(self.data),
        )


@dataclass
class Candidate:
    model_id: str
    description: str
    task: str
    classes: list[str]
    input_spec: dict[str, Any]
    outputs: dict[str, Any]
    onnx: bytes
    metrics: dict[str, float]
    parity: dict[str, float | int]
    # Largest tolerated value of each parity figure; exceeding one fails the run.
    parity_limits: dict[str, float]
    estimator: str
    params: dict[str, Any]
    framework: dict[str, str]
    converter: dict[str, str]
    training_data: dict[str, Any]
    # Raw material for plots, reports and quantisation: y_true and proba (test set,
    # class-probability columns) always; image trainers add x_eval (the test tensors
    # exactly as serving builds them), x_calibration, history (per-epoch metrics) and
    # native_model (the trained Keras/PyTorch model, for benchmarks; never serialised).
    evaluation: dict[str, Any] = field(default_factory=dict)
    # Set by the pipeline when a quantised variant replaced the fp32 export.
    quantization: dict[str, Any] | None = None
    # Manifest OperatingPoint (binary models) and Calibration, as dicts (training/operating_point.py).
    operating_point: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    # The out-of-distribution reference's material (training.ood_reference): the pipeline
    # finishes it with the served model into the manifest's OodReference.
    ood: dict[str, Any] | None = None
    # Image models: the native weights, published with the version (ModelStore.publish).
    native_weights: NativeWeightsFile | None = None

    def parity_failures(self) -> list[str]:
        return [
            f"{name} = {self.parity[name]} exceeds {limit}"
            for name, limit in self.parity_limits.items()
            if self.parity[name] > limit
        ]
