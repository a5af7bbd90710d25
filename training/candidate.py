"""What a model trainer hands to the shared pipeline (gate, MLflow, publish)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
    # Raw material for plots and reports: y_true, proba, anything trainer-specific.
    evaluation: dict[str, Any] = field(default_factory=dict)

    def parity_failures(self) -> list[str]:
        return [f"{name} = {self.parity[name]} exceeds {limit}"
                for name, limit in self.parity_limits.items() if self.parity[name] > limit]
