"""Promotion gate: only a model that clears every threshold is published.

Each model has its own thresholds (`DEFAULT_GATE` in its trainer module); the
command line can tighten or loosen them (`--min METRIC=VALUE`, `--max METRIC=VALUE`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PromotionGate:
    # metric -> lowest acceptable value / highest acceptable value
    minimums: Mapping[str, float] = field(default_factory=dict)
    maximums: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self):
        if not self.minimums and not self.maximums:
            raise ValueError("a promotion gate needs at least one threshold")

    def with_overrides(
        self, minimums: Mapping[str, float] | None = None, maximums: Mapping[str, float] | None = None
    ) -> PromotionGate:
        return PromotionGate(
            minimums={**self.minimums, **(minimums or {})}, maximums={**self.maximums, **(maximums or {})}
        )

    def evaluate(self, metrics: Mapping[str, float]) -> GateResult:
        reasons = []
        for name, low in self.minimums.items():
            if name not in metrics:
                reasons.append(f"{name} missing from the evaluation")
            elif not metrics[name] >= low:  # also rejects NaN
                reasons.append(f"{name} {metrics[name]:.4f} < {low}")
        for name, high in self.maximums.items():
            if name not in metrics:
                reasons.append(f"{name} missing from the evaluation")
            elif not metrics[name] <= high:
                reasons.append(f"{name} {metrics[name]:.4f} > {high}")
        return GateResult(passed=not reasons, reasons=reasons, thresholds=self.thresholds())

    def thresholds(self) -> dict[str, float]:
        return {
            **{f"min_{k}": float(v) for k, v in self.minimums.items()},
            **{f"max_{k}": float(v) for k, v in self.maximums.items()},
        }


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)

    def as_manifest_dict(self) -> dict[str, float | bool | str]:
        return {"passed": self.passed, **self.thresholds}
