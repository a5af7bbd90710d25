"""Challenger vs champion: a retrained candidate must not be worse than production.

Both are measured on the candidate's own held-out test tensors (built by the shared
preprocessing, exactly as serving builds them), production through the same
ModelStore + OnnxClassifier path serving uses. NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from med_classifier.adapters.model_store import ModelStore
from med_classifier.domain.inference import OnnxClassifier
from training.candidate import Candidate
from training.gate import PromotionGate
from training.metrics import classification_metrics

log = logging.getLogger("training")


@dataclass(frozen=True)
class ChampionResult:
    production_version: str | None  # None: nothing in production yet
    production_metrics: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)  # why the candidate must not replace production
    # Candidate minus production for each metric both were measured on (the job record shows them).
    deltas: dict[str, float] = field(default_factory=dict)


def compare_with_production(
    candidate: Candidate, gate: PromotionGate, store: ModelStore, max_regression: float = 0.0
) -> ChampionResult:
    """Reasons when the candidate falls more than `max_regression` below production on
    any metric the gate sets a minimum for (the metrics that matter for this model)."""
    pointer = store.read_pointer_or_none(candidate.model_id)
    if pointer is None:
        return ChampionResult(None)
    production = store.read_version(candidate.model_id, pointer.version, expected_sha256=pointer.sha256)
    manifest = production.manifest
    if manifest.classes != candidate.classes or manifest.input.model_dump() != candidate.input_spec:
        # Different classes or preprocessing: the candidate's tensors mean nothing to it.
        return ChampionResult(
            pointer.version,
            reasons=[f"production {pointer.version} takes other classes or input; cannot compare on the same test set"],
        )
    proba = OnnxClassifier(manifest, production.onnx).predict_proba(candidate.evaluation["x_eval"])
    metrics = classification_metrics(candidate.evaluation["y_true"], proba, manifest.classes, manifest.operating_point)
    reasons = [
        f"{name} {candidate.metrics[name]:.4f} < production {pointer.version} {metrics[name]:.4f}"
        + (f" - {max_regression}" if max_regression else "")
        for name in gate.minimums
        if name in metrics
        and name in candidate.metrics
        and not candidate.metrics[name] >= metrics[name] - max_regression
    ]
    log.info(
        "production %s on the candidate's test set: %s",
        pointer.version,
        ", ".join(f"{name} {metrics[name]:.4f}" for name in gate.minimums if name in metrics),
    )
    return ChampionResult(pointer.version, metrics, reasons, metric_deltas(candidate.metrics, metrics))


def metric_deltas(candidate: dict[str, float], production: dict[str, float]) -> dict[str, float]:
    """Candidate minus production for each metric production was measured on that the candidate
    also has (positive: the candidate is higher)."""
    return {name: candidate[name] - value for name, value in production.items() if name in candidate}
