"""Promotion gate: only a model that clears every threshold is published."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class PromotionGate:
    # Missing a malignancy costs far more than a false alarm: gate on its recall.
    min_recall: float = 0.95
    max_recall_std: float = 0.05
    recall_metric: str = "test_recall"
    recall_std_metric: str = "cv_recall_std"

    def evaluate(self, metrics: dict[str, float]) -> "GateResult":
        reasons = []
        recall = metrics[self.recall_metric]
        if recall < self.min_recall:
            reasons.append(f"{self.recall_metric} {recall:.4f} < {self.min_recall}")
        std = metrics[self.recall_std_metric]
        if std > self.max_recall_std:
            reasons.append(f"{self.recall_std_metric} {std:.4f} > {self.max_recall_std}")
        return GateResult(passed=not reasons, reasons=reasons, thresholds=asdict(self))


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    thresholds: dict = field(default_factory=dict)

    def as_manifest_dict(self) -> dict[str, float | bool | str]:
        return {"passed": self.passed, "min_recall": self.thresholds["min_recall"],
                "max_recall_std": self.thresholds["max_recall_std"],
                "recall_metric": self.thresholds["recall_metric"]}
