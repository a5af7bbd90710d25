"""The model contract: everything serving needs to know about a published version."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MANIFEST_SCHEMA_VERSION = 1
MODEL_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
VERSION_PATTERN = r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$"


class TabularInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["tabular"] = "tabular"
    feature_names: list[str]
    dtype: Literal["float32"] = "float32"
    input_name: str
    # One real row a person can start from (forms, docs, smoke checks).
    example: list[float] | None = None
    # Each feature's training mean: what explanations replace a feature with (domain/explanations.py).
    baseline: list[float] | None = None

    @property
    def n_features(self) -> int:
        return len(self.feature_names)


class ImageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["image"] = "image"
    input_name: str
    height: int
    width: int
    channels: Literal[1, 3] = 3
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    mean: list[float]
    std: list[float]


class OnnxOutputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    probabilities: str
    # "probabilities": the output already holds class probabilities (one column per
    # class); "sigmoid_positive": a single column holding P(classes[positive_index]).
    probability_format: Literal["probabilities", "sigmoid_positive"] = "probabilities"
    positive_index: int = 1


class TrainingData(BaseModel):
    name: str
    source: str
    sha256: str
    n_train: int
    n_test: int
    synthetic: bool = False
    n_uploads: int = 0  # labelled uploads added to the training split (included in n_train)


class GoldenExample(BaseModel):
    """A fixed input and what this version answered for it when it was published (domain/golden.py):
    a new function version must answer the same (the PreTraffic hook, domain/release_check.py)."""

    model_config = ConfigDict(extra="forbid")

    instance: list[float] | None = None  # tabular models: one row
    image_png: str | None = None  # image models: a base64 PNG
    label: str
    probabilities: dict[str, float]


class OperatingPoint(BaseModel):
    """Binary models: the decision threshold on the positive class's (calibrated) probability,
    chosen on cross-validation to reach a target recall of that class (training/operating_point.py).
    Serving labels a prediction positive when its probability is >= threshold (domain/decision.py)."""

    model_config = ConfigDict(extra="forbid")

    positive_class: str
    threshold: float = Field(ge=0.0, le=1.0)
    target_recall: float = Field(gt=0.0, le=1.0)
    chosen_on: str  # how the threshold was chosen, e.g. "5 x 10-fold stratified CV, out-of-fold"
    # recall, precision, specificity of the positive class at the threshold: on the chosen-on data
    # (cross-validation) and on the held-out test set.
    cv: dict[str, float] = Field(default_factory=dict)
    test: dict[str, float] = Field(default_factory=dict)
    # (recall, precision) pairs of the test set's precision-recall curve, a few dozen points, for charts.
    pr_curve: list[tuple[float, float]] = Field(default_factory=list)


class Calibration(BaseModel):
    """How serving maps the ONNX output's class probabilities to calibrated ones (domain/calibration.py),
    fitted within the training split. "none": kept as they are (calibration did not help)."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["none", "platt", "temperature"] = "none"
    # platt (binary): p_positive = sigmoid(a * logit(p_positive) + b), positive = OnnxOutputs.positive_index
    # semantics of the class columns; temperature (any): p = softmax(log(p) / temperature).
    a: float = 1.0
    b: float = 0.0
    temperature: float = Field(default=1.0, gt=0.0)
    fitted_on: str = ""
    # Brier score (multiclass: mean over classes of the one-vs-rest score) on the test set.
    brier_before: float | None = None
    brier_after: float | None = None
    # Reliability diagram of the served (calibrated) probabilities on the test set:
    # (mean predicted probability, observed frequency, count) per bin.
    reliability: list[tuple[float, float, int]] = Field(default_factory=list)
    # The same bins of the uncalibrated probabilities (the model's output as it is).
    reliability_before: list[tuple[float, float, int]] = Field(default_factory=list)


class FeatureReference(BaseModel):
    """One input feature (tabular) or image statistic (images) as the model saw it in training."""

    model_config = ConfigDict(extra="forbid")

    name: str
    low: float  # values below low or above high are out of distribution
    high: float
    # Drift reference: inner bin edges (training quantiles) and the training share in each bin
    # (len(proportions) == len(edges) + 1); bin i holds edges[i-1] <= value < edges[i]
    # (numpy.searchsorted(edges, value, side="right")).
    edges: list[float] = Field(default_factory=list)
    proportions: list[float] = Field(default_factory=list)


class OodReference(BaseModel):
    """What the model saw in training, for out-of-distribution flags (domain/ood.py) and drift
    (domain/drift.py); thresholds chosen on held-out data to flag at most 5 % of in-distribution inputs."""

    model_config = ConfigDict(extra="forbid")

    features: list[FeatureReference]
    # Images: a confidence score and the value below which a prediction is flagged.
    score: Literal["max_softmax", "energy"] | None = None
    score_threshold: float | None = None
    # Share of the held-out (in-distribution) test inputs whose score is below score_threshold.
    score_flag_rate: float | None = None
    # Share of the held-out (in-distribution) test inputs this reference flags.
    false_flag_rate: float | None = None
    # Training class proportions (drift: class-mix shift).
    class_mix: dict[str, float] = Field(default_factory=dict)
    # How low/high and score_threshold were chosen (data, quantiles, margin), for people.
    chosen_on: str = ""


NATIVE_WEIGHTS_FILES = {"torch_state_dict": "model.pt", "keras_weights_h5": "model.weights.h5"}


class NativeWeights(BaseModel):
    """The trained network's weights in its framework's own format, published next to model.onnx
    (the file name is fixed per format: the training role may write only these keys) so a
    retraining job can fine-tune from production (training/retrain.py)."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["torch_state_dict", "keras_weights_h5"]
    file: Literal["model.pt", "model.weights.h5"]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    size_bytes: int = Field(gt=0)

    @model_validator(mode="after")
    def _file_matches_format(self) -> NativeWeights:
        if NATIVE_WEIGHTS_FILES[self.format] != self.file:
            raise ValueError(f"{self.format} weights are published as {NATIVE_WEIGHTS_FILES[self.format]}")
        return self


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    schema_version: int = MANIFEST_SCHEMA_VERSION
    model_id: Annotated[str, Field(pattern=MODEL_ID_PATTERN)]
    version: Annotated[str, Field(pattern=VERSION_PATTERN)]
    created_at: datetime
    description: str = ""
    task: Literal["binary", "multiclass"]
    classes: list[str] = Field(min_length=2)
    input: Annotated[TabularInput | ImageInput, Field(discriminator="kind")]
    outputs: OnnxOutputs
    onnx_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    onnx_bytes: int
    opset: int
    framework: dict[str, str]
    converter: dict[str, str]
    metrics: dict[str, float]
    gate: dict[str, float | bool | str]
    parity: dict[str, float | int]
    training_data: TrainingData
    estimator: str = ""
    mlflow: dict[str, str | None] = Field(default_factory=dict)
    # Static INT8 variant: tried or not, fp32 vs int8 size, latency, accuracy, and which is served.
    quantization: dict[str, Any] | None = None
    golden_examples: list[GoldenExample] = Field(default_factory=list)
    # None in versions published before these existed: argmax decision, uncalibrated, no OOD flags.
    operating_point: OperatingPoint | None = None
    calibration: Calibration | None = None
    ood: OodReference | None = None
    # None in versions published before native weights were kept: a retrain trains from scratch.
    native_weights: NativeWeights | None = None


class ProductionPointer(BaseModel):
    """models/{model}/production.json: which version serves, and which served before."""

    model_config = ConfigDict(extra="forbid")

    version: Annotated[str, Field(pattern=VERSION_PATTERN)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    promoted_at: datetime
    previous: str | None = None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def new_version(now: datetime | None = None) -> str:
    """Sortable, unique version id: UTC timestamp plus 32 random bits (two versions made in
    the same second by different jobs never collide)."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def is_valid_model_id(model_id: str) -> bool:
    return re.fullmatch(MODEL_ID_PATTERN, model_id) is not None
