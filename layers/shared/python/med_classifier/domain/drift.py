"""Drift: how the inputs and predictions serving captured in a window differ from what the model saw
in training (the manifest's OodReference). Pure: records in, a report out.

- Per feature (tabular: each input feature; images: each image statistic) the population stability
  index (PSI) of the window's values over the reference's bins (training quantiles).
- Class mix: PSI and total variation distance of the predicted classes against the training classes.
- OOD rate: the share of captured predictions flagged out of distribution.

The usual PSI reading: below 0.1 stable, 0.1-0.25 worth a look, 0.25 and above shifted.
NOT FOR CLINICAL USE."""

from __future__ import annotations

import bisect
import logging
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from .manifest import FeatureReference, Manifest

if TYPE_CHECKING:
    from .ports import ModelReader, MonitoringStore

logger = logging.getLogger(__name__)

# A bin with no values would make PSI infinite (log of 0); its share counts as this instead.
EMPTY_BIN_SHARE = 1e-4
Status = Literal["ok", "warn", "drift", "insufficient_data", "no_reference"]


class DriftThresholds(BaseModel):
    psi_warn: float = 0.1
    psi_drift: float = 0.25
    ood_rate_warn: float = 0.1
    ood_rate_drift: float = 0.25
    # Fewer captured predictions than this in the window: no verdict (PSI on a handful is noise).
    min_records: int = Field(default=30, ge=1)


class FeatureDrift(BaseModel):
    name: str
    psi: float
    n: int  # values in the window (a record without this feature is skipped)
    expected: list[float]  # the reference's share per bin
    observed: list[float]  # the window's share per bin


class ClassMixShift(BaseModel):
    psi: float
    total_variation: float  # half the L1 distance between the two mixes, 0..1
    expected: dict[str, float]
    observed: dict[str, float]


class DriftReport(BaseModel):
    model: str
    versions: list[str]  # the model versions that made the window's predictions
    window_start: datetime
    window_end: datetime
    generated_at: datetime
    n_records: int
    status: Status
    reasons: list[str]  # why the status is not ok, in words
    features: list[FeatureDrift]  # highest PSI first
    drifted_features: list[str]  # PSI >= psi_drift
    max_feature_psi: float | None
    class_mix: ClassMixShift | None
    ood_rate: float | None  # None when no captured prediction carried an in_distribution flag
    n_ood_flagged: int
    thresholds: DriftThresholds
    has_reference: bool  # False: the production manifest has no drift reference (only the OOD rate counts)


def bin_proportions(values: Sequence[float], edges: Sequence[float]) -> list[float]:
    """Each bin's share of `values`. `edges` are the inner bin edges (ascending): bin 0 holds values
    below edges[0], bin i values in [edges[i-1], edges[i]), the last bin values >= edges[-1]."""
    counts = [0] * (len(edges) + 1)
    for value in values:
        counts[bisect.bisect_right(edges, value)] += 1
    total = sum(counts)
    return [c / total for c in counts] if total else [0.0] * len(counts)


def reference_bins(values: Sequence[float], n_bins: int = 10) -> tuple[list[float], list[float]]:
    """A FeatureReference's drift bins from the training values: inner edges at their n_bins-quantiles
    (repeated edges merged: a feature with few distinct values gets fewer bins) and each bin's share."""
    edges = sorted(set(statistics.quantiles(values, n=n_bins, method="inclusive"))) if len(values) > 1 else []
    return edges, bin_proportions(values, edges)


def psi(expected: Sequence[float], observed: Sequence[float]) -> float:
    """Population stability index: sum over bins of (observed - expected) * ln(observed / expected),
    each share floored at EMPTY_BIN_SHARE."""
    if len(expected) != len(observed):
        raise ValueError(f"PSI needs as many expected as observed shares ({len(expected)} != {len(observed)})")
    total = 0.0
    for e, o in zip(expected, observed):
        e, o = max(e, EMPTY_BIN_SHARE), max(o, EMPTY_BIN_SHARE)
        total += (o - e) * math.log(o / e)
    return total


def feature_drift(reference: FeatureReference, values: Sequence[float]) -> FeatureDrift:
    observed = bin_proportions(values, reference.edges)
    return FeatureDrift(
        name=reference.name,
        psi=psi(reference.proportions, observed),
        n=len(values),
        expected=list(reference.proportions),
        observed=observed,
    )


def class_mix_shift(expected: Mapping[str, float], labels: Iterable[str]) -> ClassMixShift:
    """The predicted classes' mix against the training mix (classes the reference lacks count as 0 there)."""
    counts = Counter(labels)
    total = sum(counts.values())
    classes = list(expected) + sorted(set(counts) - set(expected))
    observed = {c: counts.get(c, 0) / total if total else 0.0 for c in classes}
    reference = {c: float(expected.get(c, 0.0)) for c in classes}
    return ClassMixShift(
        psi=psi(list(reference.values()), list(observed.values())),
        total_variation=0.5 * sum(abs(observed[c] - reference[c]) for c in classes),
        expected=reference,
        observed=observed,
    )


def verdict(
    features: Sequence[FeatureDrift],
    class_mix: ClassMixShift | None,
    ood_rate: float | None,
    thresholds: DriftThresholds,
) -> tuple[Status, list[str]]:
    """ok, warn (a PSI >= psi_warn or an OOD rate >= ood_rate_warn) or drift (>= the drift levels),
    and each figure that raised it, in words."""
    psi_levels = (thresholds.psi_warn, thresholds.psi_drift)
    figures = [(f"{f.name}: PSI {f.psi:.3f}", f.psi, *psi_levels) for f in features]
    if class_mix is not None:
        figures.append((f"class mix: PSI {class_mix.psi:.3f}", class_mix.psi, *psi_levels))
    if ood_rate is not None:
        figures.append((f"OOD rate {ood_rate:.1%}", ood_rate, thresholds.ood_rate_warn, thresholds.ood_rate_drift))
    levels = [(reason, 2 if value >= drift else 1) for reason, value, warn, drift in figures if value >= warn]
    level = max((lvl for _, lvl in levels), default=0)
    return ("ok", "warn", "drift")[level], [reason for reason, _ in levels]


def drift_report(
    manifest: Manifest | None,
    model: str,
    records: Sequence[Mapping],
    window_start: datetime,
    window_end: datetime,
    generated_at: datetime,
    thresholds: DriftThresholds | None = None,
) -> DriftReport:
    """The report of one model's window. `records` are capture records (capture.capture_records):
    "inputs" (name -> value), "label", "in_distribution" (True, False or None), "version"."""
    thresholds = thresholds or DriftThresholds()
    reference = manifest.ood if manifest is not None else None
    features: list[FeatureDrift] = []
    class_mix = None
    if reference is not None:
        for feature in reference.features:
            if not feature.edges or len(feature.proportions) != len(feature.edges) + 1:
                continue  # no drift bins for this feature
            values = [r["inputs"][feature.name] for r in records if feature.name in (r.get("inputs") or {})]
            if values:
                features.append(feature_drift(feature, values))
        if reference.class_mix and records:
            class_mix = class_mix_shift(reference.class_mix, (r["label"] for r in records))
    features.sort(key=lambda f: f.psi, reverse=True)
    flags = [r.get("in_distribution") for r in records if r.get("in_distribution") is not None]
    n_flagged = sum(flag is False for flag in flags)
    ood_rate = n_flagged / len(flags) if flags else None

    status, reasons = verdict(features, class_mix, ood_rate, thresholds)
    if not features and class_mix is None and ood_rate is None:
        status = "no_reference"  # nothing was compared: "ok" would claim what nobody checked
        reasons = ["nothing to compare: the production manifest has no drift reference and no OOD flags were captured"]
    if len(records) < thresholds.min_records:
        status = "insufficient_data"
        reasons = [f"{len(records)} captured predictions in the window, fewer than {thresholds.min_records}"]
    return DriftReport(
        model=model,
        versions=sorted({str(r.get("version")) for r in records if r.get("version")}),
        window_start=window_start,
        window_end=window_end,
        generated_at=generated_at,
        n_records=len(records),
        status=status,
        reasons=reasons,
        features=features,
        drifted_features=[f.name for f in features if f.psi >= thresholds.psi_drift],
        max_feature_psi=features[0].psi if features else None,
        class_mix=class_mix,
        ood_rate=ood_rate,
        n_ood_flagged=n_flagged,
        thresholds=thresholds,
        has_reference=reference is not None,
    )


class MonitorRun(BaseModel):
    reports: list[DriftReport]
    failed: dict[str, str]  # model -> why its report was not written (the details are in the logs)


def monitor_models(
    models: ModelReader,
    monitoring: MonitoringStore,
    window: timedelta,
    now: datetime,
    thresholds: DriftThresholds | None = None,
) -> MonitorRun:
    """Every production model's report of the window ending `now`, written to the monitoring store.
    A model that fails (unreadable manifest or captures) is logged and the others still run."""
    reports, failed = [], {}
    for model_id in models.list_model_ids():
        try:
            pointer = models.read_pointer_or_none(model_id)
            if pointer is None:
                continue  # versions but none in production: nothing serves, nothing to compare
            manifest = models.read_manifest(model_id, pointer.version)
            records = monitoring.read_captures(model_id, now - window, now)
            report = drift_report(manifest, model_id, records, now - window, now, now, thresholds)
            monitoring.write_report(model_id, report.model_dump(mode="json"), now)
            reports.append(report)
        except Exception as exc:
            logger.exception("drift report not written", extra={"model": model_id})
            failed[model_id] = type(exc).__name__
    return MonitorRun(reports=reports, failed=failed)
