"""The release check a canary deployment runs before any traffic moves (the PreTraffic hook): every
production model's golden examples, sent to the new function version that serves that model's
kind, must come back with the labels and probabilities recorded when the model was published
(domain/golden.py). One mismatch, refusal or error fails the check, and CodeDeploy then rolls
the deployment back with no request served by the new version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .golden import differences

if TYPE_CHECKING:
    from .ports import GoldenPredictor, ModelReader

logger = logging.getLogger(__name__)

SUCCEEDED, FAILED = "Succeeded", "Failed"


class ReleaseCallFailed(Exception):
    """A function version did not answer a golden request with predictions (its words, for the report)."""


@dataclass
class ReleaseReport:
    checked: list[str] = field(default_factory=list)  # "<model> on <target>: N golden examples answered the same"
    failures: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # production models without golden examples

    @property
    def status(self) -> str:
        return FAILED if self.failures else SUCCEEDED

    def as_dict(self) -> dict:
        return {"status": self.status, "checked": self.checked, "failures": self.failures, "unchecked": self.unchecked}


def check_release(store: ModelReader, predictors: dict[str, GoldenPredictor]) -> ReleaseReport:
    """Sends every production model's golden examples to the predictor of its input kind
    ("tabular", "image"); models of a kind without a predictor are not this release's."""
    report = ReleaseReport()
    for model_id in store.list_model_ids():
        pointer = store.read_pointer(model_id)
        if pointer is None:
            continue  # not in production: nothing serves it
        manifest = store.read_manifest(model_id, pointer.version)
        predictor = predictors.get(manifest.input.kind)
        if predictor is None:
            continue
        examples = manifest.golden_examples
        if not examples:
            report.unchecked.append(f"{model_id} {pointer.version}: its manifest has no golden examples")
            continue
        try:
            served = predictor.predict(model_id, examples)
        except ReleaseCallFailed as exc:
            report.failures.append(f"{model_id} on {predictor.target}: {exc}")
            continue
        if len(served) != len(examples):
            report.failures.append(
                f"{model_id} on {predictor.target}: {len(served)} predictions for {len(examples)} golden examples"
            )
            continue
        found = [diff for index, pair in enumerate(zip(examples, served)) for diff in differences(index, *pair)]
        if found:
            report.failures.extend(f"{model_id} {pointer.version} on {predictor.target}: {diff}" for diff in found)
        else:
            report.checked.append(
                f"{model_id} {pointer.version} on {predictor.target}: {len(examples)} golden examples answered the same"
            )
    return report
