"""Versions of a published model for the page's charts (tests/browser/test_charts.py) and the registry's
tests: copies of a published version (its ONNX and manifest) with their own metrics, gate, operating
point and calibration, filled directly here (training fills them in real versions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from med_classifier.adapters.model_store import ModelStore
from med_classifier.domain.manifest import Calibration, Manifest, OperatingPoint, new_version

# A breast-cancer-like test precision-recall curve: (recall, precision), recall ascending.
PR_CURVE = [
    (0.0, 1.0),
    (0.2, 1.0),
    (0.4, 1.0),
    (0.6, 0.99),
    (0.8, 0.975),
    (0.9, 0.962),
    (0.95, 0.945),
    (0.986, 0.912),
    (1.0, 0.79),
]
RELIABILITY = [(0.03, 0.0, 52), (0.15, 0.1, 10), (0.45, 0.5, 6), (0.72, 0.8, 5), (0.96, 0.98, 41)]


def operating_point(positive_class: str, threshold: float = 0.23) -> OperatingPoint:
    return OperatingPoint(
        positive_class=positive_class,
        threshold=threshold,
        target_recall=0.99,
        chosen_on="5 x 10-fold stratified CV, out-of-fold",
        cv={"recall": 0.99, "precision": 0.902, "specificity": 0.938},
        test={"recall": 0.986, "precision": 0.912, "specificity": 0.946},
        pr_curve=PR_CURVE,
    )


def calibration() -> Calibration:
    # Platt with a = 1, b = 0 leaves the served probabilities as they are: the other tests' predictions hold.
    return Calibration(
        method="platt",
        a=1.0,
        b=0.0,
        fitted_on="3-fold CV within the training split",
        brier_before=0.031,
        brier_after=0.027,
        reliability=RELIABILITY,
    )


def publish_copies(store: ModelStore, model_id: str, changes: list[dict], promote: int | None = None) -> list[Manifest]:
    """Publishes one copy of the model's production version per entry of `changes` (manifest fields to
    replace), oldest first, each a second after the one before (versions sort by their time), and
    promotes the copy at index `promote` when one is named. Returns the new manifests."""
    production = store.read_version(model_id, store.read_pointer(model_id).version)
    start = datetime.now(UTC).replace(microsecond=0)
    published = []
    for i, change in enumerate(changes):
        created = start + timedelta(seconds=i + 1)
        manifest = Manifest.model_validate(
            {**production.manifest.model_dump(), "version": new_version(created), "created_at": created, **change}
        )
        store.publish(manifest, production.onnx, promote=False)
        published.append(manifest)
    if promote is not None:
        store.promote(model_id, published[promote].version)
    return published
