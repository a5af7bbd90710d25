"""Shared end of every training run: parity, gate, MLflow logging and registry, publish."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from med_classifier.adapters.model_store import ModelStore
from med_classifier.domain.golden import golden_examples
from med_classifier.domain.inference import OnnxClassifier
from med_classifier.domain.manifest import (
    Calibration,
    Manifest,
    OperatingPoint,
    ProductionPointer,
    new_version,
    sha256_hex,
)
from training import ood_reference, tracking
from training.calibration import ServedOutput
from training.candidate import Candidate
from training.champion import ChampionResult
from training.gate import GateResult, PromotionGate

log = logging.getLogger("training")

PRODUCTION_ALIAS = "production"


class ParityError(RuntimeError):
    """The exported ONNX model does not reproduce the native model: never publish it."""


@dataclass(frozen=True)
class Outcome:
    model_id: str
    version: str
    gate: GateResult
    published: bool
    pointer: ProductionPointer | None
    mlflow_run_id: str
    registry_version: str | None
    manifest: Manifest
    champion: ChampionResult | None = None  # the comparison with production, when finish was asked for one


def build_manifest(
    candidate: Candidate, version: str, gate: GateResult, run_id: str, tracking_uri: str, registry_version: str | None
) -> Manifest:
    import onnx

    opset = max(o.version for o in onnx.load_from_string(candidate.onnx).opset_import if o.domain in ("", "ai.onnx"))
    manifest = Manifest(
        model_id=candidate.model_id,
        version=version,
        created_at=datetime.now(UTC),
        description=candidate.description,
        task=candidate.task,
        classes=candidate.classes,
        input=candidate.input_spec,
        outputs=candidate.outputs,
        onnx_sha256=sha256_hex(candidate.onnx),
        onnx_bytes=len(candidate.onnx),
        opset=opset,
        framework=candidate.framework,
        converter={**candidate.converter, "onnx": onnx.__version__},
        metrics=candidate.metrics,
        gate=gate.as_manifest_dict(),
        parity=candidate.parity,
        training_data=candidate.training_data,
        estimator=candidate.estimator,
        mlflow={
            "run_id": run_id,
            "tracking_uri": _redact(tracking_uri),
            "registered_model": candidate.model_id,
            "registry_version": registry_version,
        },
        quantization=candidate.quantization,
        operating_point=candidate.operating_point,
        calibration=candidate.calibration,
        native_weights=candidate.native_weights.describe() if candidate.native_weights else None,
    )
    # What serving answers for the golden inputs with this very file: a new function version must
    # answer the same before it takes traffic (the PreTraffic hook; med_classifier.domain.golden).
    classifier = OnnxClassifier(manifest, candidate.onnx)
    examples = golden_examples(classifier)
    return manifest.model_copy(
        update={"golden_examples": examples, "ood": ood_reference.finish(candidate.ood, classifier)}
    )


def _redact(uri: str) -> str:
    # Never write credentials of a tracking server into a public-ish manifest.
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return uri


def _confusion_matrix_png(candidate: Candidate, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    y_true = candidate.evaluation["y_true"]
    y_pred = _served(candidate).labels(candidate.evaluation["proba"])
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ConfusionMatrixDisplay.from_predictions(
        y_true,
        y_pred,
        display_labels=candidate.classes,
        ax=ax,
        colorbar=False,
        labels=list(range(len(candidate.classes))),
    )
    ax.set_title(f"{candidate.model_id}: test set")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _served(candidate: Candidate) -> ServedOutput:
    return ServedOutput.of(candidate.classes, candidate.outputs, candidate.calibration, candidate.operating_point)


def _precision_recall_png(candidate: Candidate, path: Path) -> None:
    """Test precision-recall curve of the positive class (binary models with an operating point),
    the operating point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import PrecisionRecallDisplay

    point = OperatingPoint(**candidate.operating_point)
    positive = candidate.classes.index(point.positive_class)
    y_true = np.asarray(candidate.evaluation["y_true"]) == positive
    fig, ax = plt.subplots(figsize=(5, 4.5))
    PrecisionRecallDisplay.from_predictions(
        y_true, np.asarray(candidate.evaluation["proba"])[:, positive], name=point.positive_class, ax=ax
    )
    ax.plot(
        point.test["recall"],
        point.test["precision"],
        "o",
        color="crimson",
        label=f"operating point: p >= {point.threshold:.3f} (target recall {point.target_recall})",
    )
    ax.set_xlabel(f"recall of {point.positive_class}")
    ax.set_ylabel(f"precision of {point.positive_class}")
    ax.legend(loc="lower left")
    ax.set_title(f"{candidate.model_id}: precision-recall, test set")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _reliability_png(candidate: Candidate, path: Path) -> None:
    """Reliability diagram on the test set, before (raw model output) and after calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    calibration = Calibration(**candidate.calibration)
    point = candidate.operating_point
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
    for name, bins, brier in (
        ("before", calibration.reliability_before, calibration.brier_before),
        (f"after ({calibration.method})", calibration.reliability, calibration.brier_after),
    ):
        predicted, observed, _ = zip(*bins, strict=True) if bins else ((), (), ())
        ax.plot(predicted, observed, marker="o", label=f"{name}: Brier {brier:.4f}")
    what = f"P({point['positive_class']})" if point else "top-class confidence"
    ax.set_xlabel(f"mean predicted {what}")
    ax.set_ylabel("observed frequency" if point else "observed accuracy")
    ax.legend(loc="upper left")
    ax.set_title(f"{candidate.model_id}: reliability, test set")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _roc_png(candidate: Candidate, path: Path) -> None:
    """ROC curve(s) on the test set: the positive class for binary models, one-vs-rest
    per class for multiclass ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import RocCurveDisplay

    y_true = np.asarray(candidate.evaluation["y_true"])
    proba = np.asarray(candidate.evaluation["proba"])
    fig, ax = plt.subplots(figsize=(5, 4.5))
    positives = [1] if len(candidate.classes) == 2 else range(len(candidate.classes))
    for index in positives:
        if 0 < np.sum(y_true == index) < len(y_true):
            RocCurveDisplay.from_predictions(y_true == index, proba[:, index], name=candidate.classes[index], ax=ax)
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set_title(f"{candidate.model_id}: ROC, test set")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def apply_quantization(candidate: Candidate, gate: PromotionGate) -> tuple[Candidate, bytes | None, bytes | None]:
    """Try the static INT8 variant of an image model; returns the candidate to serve
    (INT8 only if it pays) and the fp32 and int8 files for the run's artefacts."""
    from dataclasses import replace

    from training.quantize import evaluate_int8

    if candidate.input_spec.get("kind") != "image" or "x_calibration" not in candidate.evaluation:
        return candidate, None, None
    report = evaluate_int8(
        candidate.onnx,
        candidate.classes,
        candidate.input_spec,
        candidate.outputs["probabilities"],
        candidate.evaluation,
        gate,
        _served(candidate),
    )
    quantization = report.as_manifest_dict(sha256_hex(candidate.onnx))
    if not report.chosen:
        return replace(candidate, quantization=quantization), candidate.onnx, report.onnx_int8
    return (
        replace(
            candidate,
            onnx=report.onnx_int8,
            quantization=quantization,
            metrics={**candidate.metrics, **report.int8_metrics},
            evaluation={**candidate.evaluation, "proba": report.int8_proba},
        ),
        candidate.onnx,
        report.onnx_int8,
    )


def _classification_report(candidate: Candidate) -> str:
    from sklearn.metrics import classification_report

    y_pred = _served(candidate).labels(candidate.evaluation["proba"])
    return classification_report(
        candidate.evaluation["y_true"],
        y_pred,
        target_names=candidate.classes,
        labels=list(range(len(candidate.classes))),
        digits=4,
        zero_division=0,
    )


def finish(
    candidate: Candidate,
    gate: PromotionGate,
    store: ModelStore | None,
    quantize: bool = True,
    champion: Callable[[Candidate], ChampionResult] | None = None,
) -> Outcome:
    """Gate, log and (if it passes and a store is given) publish. Raises ParityError
    before anything is logged as a model when the export is broken. `champion` compares
    the candidate as it would be served (after quantisation) with production: its
    reasons reject a candidate that passes the gate (training.champion)."""
    import mlflow

    failures = candidate.parity_failures()
    onnx_variants = {}
    if quantize and not failures:
        candidate, fp32_onnx, int8_onnx = apply_quantization(candidate, gate)
        onnx_variants = {"model-fp32.onnx": fp32_onnx, "model-int8.onnx": int8_onnx}
    tracking_uri = tracking.configure(experiment=candidate.model_id)
    version = new_version()
    decision = _decide(candidate, gate, champion)
    with mlflow.start_run(run_name=f"{candidate.model_id}-{version}") as run:
        _log_run(candidate, version, gate, decision, failures)
        _log_artifacts(candidate, version, decision.verdict, failures, onnx_variants)
        if failures:
            mlflow.set_tag("outcome", "parity_failed")
            raise ParityError(f"{candidate.model_id}: ONNX export fails parity: {'; '.join(failures)}")
        registry_version = _log_model(candidate, decision.verdict)
        manifest = build_manifest(candidate, version, decision.verdict, run.info.run_id, tracking_uri, registry_version)
        mlflow.log_dict(json.loads(manifest.model_dump_json()), "manifest.json")
        pointer = _publish(candidate, manifest, decision, store, registry_version)
        return Outcome(
            model_id=candidate.model_id,
            version=version,
            gate=decision.verdict,
            published=pointer is not None,
            pointer=pointer,
            mlflow_run_id=run.info.run_id,
            registry_version=registry_version,
            manifest=manifest,
            champion=decision.comparison,
        )


@dataclass(frozen=True)
class _Decision:
    verdict: GateResult  # the gate's, with the comparison's reasons added: what decides publishing
    gate_passed: bool  # the gate's own verdict
    comparison: ChampionResult | None


def _decide(
    candidate: Candidate, gate: PromotionGate, champion: Callable[[Candidate], ChampionResult] | None
) -> _Decision:
    verdict = gate.evaluate(candidate.metrics)
    comparison = champion(candidate) if champion is not None else None
    if comparison is not None and comparison.reasons:
        return _Decision(
            GateResult(passed=False, reasons=verdict.reasons + comparison.reasons, thresholds=verdict.thresholds),
            verdict.passed,
            comparison,
        )
    return _Decision(verdict, verdict.passed, comparison)


def _log_run(candidate: Candidate, version: str, gate: PromotionGate, decision: _Decision, failures: list[str]) -> None:
    """Tags, parameters and metrics of the MLflow run: the candidate's, the gate's, the
    production version's it was compared with, per-epoch history and quantisation."""
    import mlflow

    data = candidate.training_data
    mlflow.set_tags(
        {
            "model_id": candidate.model_id,
            "version": version,
            "estimator": candidate.estimator,
            "data_sha256": data["sha256"],
            "not_for_clinical_use": "true",
        }
    )
    mlflow.log_params(
        {
            **candidate.params,
            "data_version": data["sha256"],
            "n_samples_train": data["n_train"],
            "n_samples_test": data["n_test"],
            "n_uploads": data.get("n_uploads", 0),
            **{f"gate_{k}": v for k, v in gate.thresholds().items()},
        }
    )
    mlflow.log_metrics(
        {
            **candidate.metrics,
            **{f"parity_{k}": float(v) for k, v in candidate.parity.items()},
            "gate_passed": float(decision.gate_passed and not failures),
        }
    )
    comparison = decision.comparison
    if comparison is not None and comparison.production_version is not None:
        mlflow.set_tag("production_version", comparison.production_version)
        mlflow.log_metrics({f"production_{k}": v for k, v in comparison.production_metrics.items()})
    for epoch in candidate.evaluation.get("history", []):
        mlflow.log_metrics({f"epoch_{k}": float(v) for k, v in epoch.items() if k != "epoch"}, step=int(epoch["epoch"]))
    mlflow.log_metrics(_served_metrics(candidate))
    if candidate.quantization:
        q = candidate.quantization
        mlflow.log_metrics(
            {
                **{f"fp32_{k}": v for k, v in q["fp32"].items()},
                **{f"int8_{k}": v for k, v in q["int8"].items()},
                "int8_served": float(q["chosen"]),
            }
        )


def _served_metrics(candidate: Candidate) -> dict[str, float]:
    """Calibration's test Brier scores and the operating point's threshold and figures."""
    metrics: dict[str, float] = {}
    calibration, point = candidate.calibration, candidate.operating_point
    if calibration and calibration.get("brier_before") is not None:
        metrics.update(brier_before=calibration["brier_before"], brier_after=calibration["brier_after"])
    if point:
        metrics["threshold"] = point["threshold"]
        metrics.update({f"operating_point_cv_{k}": v for k, v in point["cv"].items()})
        metrics.update({f"operating_point_test_{k}": v for k, v in point["test"].items()})
    return metrics


def _log_artifacts(
    candidate: Candidate, version: str, verdict: GateResult, failures: list[str], onnx_variants: dict[str, bytes | None]
) -> None:
    """Plots, classification report and run summary; both ONNX variants stay with the
    run, whichever is served."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        _confusion_matrix_png(candidate, tmp_path / "confusion_matrix.png")
        _roc_png(candidate, tmp_path / "roc.png")
        (tmp_path / "classification_report.txt").write_text(_classification_report(candidate))
        summary = {
            "model_id": candidate.model_id,
            "version": version,
            "estimator": candidate.estimator,
            "metrics": candidate.metrics,
            "parity": candidate.parity,
            "parity_failures": failures,
            "gate": {"passed": verdict.passed, "reasons": verdict.reasons, **verdict.thresholds},
            "training_data": candidate.training_data,
            "quantization": candidate.quantization,
            "operating_point": candidate.operating_point,
            "calibration": candidate.calibration,
        }
        (tmp_path / "run_summary.json").write_text(json.dumps(summary, indent=2))
        for name in ("confusion_matrix.png", "roc.png", "classification_report.txt", "run_summary.json"):
            mlflow.log_artifact(str(tmp_path / name))
        if candidate.operating_point:
            _precision_recall_png(candidate, tmp_path / "precision_recall.png")
            mlflow.log_artifact(str(tmp_path / "precision_recall.png"))
        if candidate.calibration:
            _reliability_png(candidate, tmp_path / "reliability.png")
            mlflow.log_artifact(str(tmp_path / "reliability.png"))
        for name, data in onnx_variants.items():
            if data is not None:
                (tmp_path / name).write_bytes(data)
                mlflow.log_artifact(str(tmp_path / name), artifact_path="onnx-variants")


def _log_model(candidate: Candidate, verdict: GateResult) -> str | None:
    """Every exported model stays with its run; only a gate-passing one enters the
    registry. Returns its registry version (None when not registered)."""
    import mlflow
    import onnx

    info = mlflow.onnx.log_model(
        onnx.load_from_string(candidate.onnx),
        name="model",
        registered_model_name=candidate.model_id if verdict.passed else None,
    )
    return str(info.registered_model_version) if verdict.passed else None


def _publish(
    candidate: Candidate,
    manifest: Manifest,
    decision: _Decision,
    store: ModelStore | None,
    registry_version: str | None,
) -> ProductionPointer | None:
    """Publish and promote a passing candidate when there is a store, and tag the run
    with the outcome; returns the new production pointer (None when not published)."""
    import mlflow
    from mlflow import MlflowClient

    if not decision.verdict.passed:
        mlflow.set_tag("outcome", "rejected_by_gate" if not decision.gate_passed else "rejected_worse_than_production")
        return None
    if store is None:
        mlflow.set_tag("outcome", "gate_passed_not_published")
        return None
    weights = candidate.native_weights.data if candidate.native_weights else None
    pointer = store.publish(manifest, candidate.onnx, promote=True, native_weights=weights)
    MlflowClient().set_registered_model_alias(candidate.model_id, PRODUCTION_ALIAS, registry_version)
    mlflow.set_tag("outcome", "published")
    log.info(
        "published s3://%s/%s (production → %s)",
        store.bucket,
        store.version_prefix(candidate.model_id, manifest.version),
        manifest.version,
    )
    return pointer
