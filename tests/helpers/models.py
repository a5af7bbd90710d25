"""Train once per session and publish without MLflow (MLflow is tested on its own)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from med_classifier.adapters.model_store import ModelStore
from med_classifier.api.schemas import EXAMPLE_MALIGNANT_ROW
from med_classifier.domain.manifest import Manifest, new_version
from tests.helpers.shared_training import shared_across_workers
from training import breast_cancer
from training.candidate import Candidate, TrainOptions
from training.gate import PromotionGate
from training.pipeline import build_manifest

REPO_ROOT = Path(__file__).resolve().parents[2]
MALIGNANT_EXAMPLE = EXAMPLE_MALIGNANT_ROW  # Wisconsin row 0, the public malignant example


@shared_across_workers
def breast_cancer_candidate(seed: int = 42) -> Candidate:
    return breast_cancer.train(TrainOptions(k_folds=5, seed=seed))


def manifest_for(candidate: Candidate, version: str | None = None) -> Manifest:
    gate = PromotionGate(minimums={"test_accuracy": 0.0}).evaluate(candidate.metrics)
    return build_manifest(
        candidate,
        version or new_version(),
        gate,
        run_id="test-run",
        tracking_uri="sqlite:///test",
        registry_version=None,
    )


def publish(store: ModelStore, candidate: Candidate, promote: bool = True) -> Manifest:
    manifest = manifest_for(candidate)
    weights = candidate.native_weights.data if candidate.native_weights else None
    store.publish(manifest, candidate.onnx, promote=promote, native_weights=weights)
    return manifest


def load_function_module(function_dir: str, module: str = "app"):
    """Import a function's handler module the way Lambda does (its folder on sys.path),
    under a unique name so two functions' app.py never collide. Each call executes the module
    afresh: a new container, with its settings and services not yet built."""
    folder = REPO_ROOT / "functions" / function_dir
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    name = f"function_{function_dir}_{module}"
    spec = importlib.util.spec_from_file_location(name, folder / f"{module}.py")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    spec.loader.exec_module(loaded)
    return loaded


class LambdaContext:
    """The parts of a Lambda context that Powertools reads."""

    def __init__(self, function_name: str = "PredictFunction", memory_mb: int = 1024):
        self.function_name = function_name
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.aws_request_id = "test-request"
