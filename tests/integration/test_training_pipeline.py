"""Training → MLflow → gate → publish to moto's S3, through the real CLI."""

import dataclasses
import json

import pytest

from tests.helpers.models import breast_cancer_candidate
from tests.integration.conftest import BUCKET
from training import breast_cancer, cli
from training.gate import PromotionGate
from training.pipeline import PRODUCTION_ALIAS, ParityError, finish

pytestmark = pytest.mark.slow


def model_keys(s3):
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="models/").get("Contents", [])]


def test_cli_smoke_run_logs_to_mlflow_and_publishes(s3, store, state_dir, capsys):
    import mlflow
    from mlflow import MlflowClient

    # A fifth of the data makes CV recall noisier: smoke runs relax that threshold on purpose.
    assert cli.main(["breast-cancer", "--smoke", "--max-recall-std", "0.1", "--bucket", BUCKET]) == 0
    pointer = store.read_pointer("breast-cancer")
    manifest = store.read_manifest("breast-cancer", pointer.version)
    assert manifest.parity["rows"] == 569 and manifest.parity["label_mismatches"] == 0
    assert manifest.parity["max_abs_prob_diff"] <= 1e-5
    assert manifest.training_data.sha256 and manifest.converter["skl2onnx"]
    assert manifest.gate["passed"] is True and manifest.gate["max_cv_recall_std"] == 0.1
    assert manifest.metrics["test_recall"] >= 0.95

    assert (state_dir / "mlflow" / "mlflow.db").exists()  # default store inside the state dir
    client = MlflowClient()
    run = client.get_run(manifest.mlflow["run_id"])
    assert run.data.params["k_folds"] == "3" and run.data.params["smoke"] == "True"
    assert run.data.params["data_version"] == manifest.training_data.sha256
    for metric in (
        "cv_recall_mean",
        "cv_recall_std",
        "test_accuracy",
        "test_precision",
        "test_recall",
        "test_f1",
        "test_roc_auc",
        "parity_max_abs_prob_diff",
    ):
        assert metric in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"confusion_matrix.png", "classification_report.txt", "run_summary.json", "manifest.json"} <= artifacts
    # operating point and calibration: the PR curve with the point marked, reliability before/after
    assert {"precision_recall.png", "reliability.png"} <= artifacts
    point, calibration = manifest.operating_point, manifest.calibration
    assert run.data.metrics["threshold"] == point.threshold and point.target_recall == 0.99
    assert run.data.metrics["brier_before"] == calibration.brier_before
    assert run.data.metrics["brier_after"] == calibration.brier_after
    assert manifest.metrics["test_recall"] == point.test["recall"]  # the gate's recall is at the threshold
    registered = client.get_model_version_by_alias("breast-cancer", PRODUCTION_ALIAS)
    assert registered.run_id == run.info.run_id and str(registered.version) == manifest.mlflow["registry_version"]
    from med_classifier.domain.manifest import sha256_hex

    served = mlflow.onnx.load_model(f"models:/breast-cancer@{PRODUCTION_ALIAS}")
    assert sha256_hex(served.SerializeToString()) == manifest.onnx_sha256  # registry holds the served bytes
    assert mlflow.get_tracking_uri().startswith("sqlite:///")


def test_gate_rejection_publishes_nothing(s3, store, state_dir):
    strict = PromotionGate(minimums={"test_recall": 1.01})
    outcome = finish(breast_cancer_candidate(), strict, store)
    assert not outcome.gate.passed and not outcome.published
    assert model_keys(s3) == []
    from mlflow import MlflowClient

    run = MlflowClient().get_run(outcome.mlflow_run_id)
    assert run.data.tags["outcome"] == "rejected_by_gate" and run.data.metrics["gate_passed"] == 0.0
    local = MlflowClient().download_artifacts(outcome.mlflow_run_id, "run_summary.json", str(state_dir))
    summary = json.loads(open(local).read())
    assert summary["gate"]["passed"] is False and "test_recall" in summary["gate"]["reasons"][0]


def test_parity_failure_fails_the_run_and_publishes_nothing(s3, store, state_dir):
    broken = dataclasses.replace(
        breast_cancer_candidate(), parity={"rows": 569, "label_mismatches": 3, "max_abs_prob_diff": 0.2}
    )
    with pytest.raises(ParityError, match="label_mismatches = 3"):
        finish(broken, breast_cancer.DEFAULT_GATE, store)
    assert model_keys(s3) == []


def test_cli_help_and_argument_errors(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0 and "NOT FOR CLINICAL USE" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        cli.main(["breast-cancer", "--k-folds", "1", "--no-publish"])
    assert info.value.code == 2
    for bad in (
        ["--min", "test_recall"],
        ["--max", "=0.1"],
        ["--min", "test_recall=high"],
        ["--epochs", "0"],
        ["--data-dir", "/no/such/folder"],
        ["--pretrained", "/no/such/weights.pt"],
    ):
        with pytest.raises(SystemExit) as info:
            cli.main(["breast-cancer", "--no-publish", *bad])
        assert info.value.code == 2, bad


def test_cli_gate_overrides_reach_the_gate(s3, store, state_dir):
    # An unreachable threshold set on the command line rejects the model: exit 2, nothing published.
    assert cli.main(["breast-cancer", "--smoke", "--min", "test_accuracy=1.01", "--bucket", BUCKET]) == 2
    assert store.read_pointer_or_none("breast-cancer") is None
