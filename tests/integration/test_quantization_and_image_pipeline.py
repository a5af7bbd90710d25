"""Static INT8 quantisation and the shared pipeline's image-model path (ROC, per-epoch
history, both ONNX variants in MLflow), on the tiny hand-built colour model."""

import dataclasses

import numpy as np
import onnx
import pytest

from med_classifier.domain.manifest import ImageInput
from med_classifier.domain.preprocessing import tensor_from_bytes
from tests.helpers.image_models import COLOURS, colour_candidate, image_bytes
from training.gate import PromotionGate
from training.pipeline import finish
from training.quantize import MAX_ACCURACY_DROP, MIN_SPEEDUP, evaluate_int8

pytestmark = pytest.mark.slow


def evaluated_colour_candidate():
    candidate = colour_candidate("colour-quant")
    spec = ImageInput(**candidate.input_spec)
    rng = np.random.default_rng(0)
    names = list(COLOURS)
    labels = rng.integers(0, 3, 60)
    x = np.stack(
        [tensor_from_bytes(image_bytes(names[i], size=(40 + int(rng.integers(0, 20)), 40)), spec) for i in labels]
    )
    proba = np.eye(3)[labels] * 0.9 + 0.1 / 3
    history = [{"epoch": e, "loss": 1.0 / e, "val_accuracy": 0.5 + e / 10} for e in (1, 2, 3)]
    return dataclasses.replace(
        candidate,
        metrics={"test_accuracy": 1.0, "test_macro_f1": 1.0},
        evaluation={"y_true": labels, "proba": proba, "x_eval": x, "x_calibration": x[:32], "history": history},
    )


def test_int8_variant_is_real_qdq_and_the_decision_follows_the_figures():
    candidate = evaluated_colour_candidate()
    gate = PromotionGate(minimums={"test_accuracy": 0.9})
    report = evaluate_int8(
        candidate.onnx, candidate.classes, candidate.input_spec, "probabilities", candidate.evaluation, gate
    )
    ops = {node.op_type for node in onnx.load_from_string(report.onnx_int8).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert report.int8["label_agreement_with_fp32"] == 1.0 and report.int8["test_accuracy"] == 1.0
    fast_enough = report.fp32["latency_ms_p50"] / report.int8["latency_ms_p50"] >= MIN_SPEEDUP
    accurate = report.fp32["test_accuracy"] - report.int8["test_accuracy"] <= MAX_ACCURACY_DROP
    assert report.chosen == (fast_enough and accurate)
    assert any("not faster" in r for r in report.reasons) == (not fast_enough)


def test_strict_gate_keeps_fp32(s3, store, state_dir):
    candidate = evaluated_colour_candidate()
    impossible = PromotionGate(minimums={"test_accuracy": 0.9, "test_macro_f1": 1.01})
    report = evaluate_int8(
        candidate.onnx, candidate.classes, candidate.input_spec, "probabilities", candidate.evaluation, impossible
    )
    assert not report.chosen and any("fails the gate" in r for r in report.reasons)


def test_pipeline_logs_image_artifacts_and_records_quantization(s3, store, state_dir):
    from mlflow import MlflowClient

    candidate = evaluated_colour_candidate()
    outcome = finish(candidate, PromotionGate(minimums={"test_accuracy": 0.9}), store)
    assert outcome.published
    manifest = store.read_manifest("colour-quant", outcome.version)
    q = manifest.quantization
    assert q["scheme"] == "static-qdq-int8" and q["fp32_sha256"] and set(q["int8"]) >= {"bytes", "latency_ms_p50"}
    served = store.read_version("colour-quant", outcome.version).onnx
    ops = {node.op_type for node in onnx.load_from_string(served).graph.node}
    assert ("QuantizeLinear" in ops) == q["chosen"]  # the manifest says which variant is served
    client = MlflowClient()
    artifacts = {a.path for a in client.list_artifacts(outcome.mlflow_run_id)}
    assert {"roc.png", "confusion_matrix.png", "onnx-variants"} <= artifacts
    variants = {a.path for a in client.list_artifacts(outcome.mlflow_run_id, "onnx-variants")}
    assert variants == {"onnx-variants/model-fp32.onnx", "onnx-variants/model-int8.onnx"}
    history = client.get_metric_history(outcome.mlflow_run_id, "epoch_val_accuracy")
    assert [(m.step, round(m.value, 2)) for m in history] == [(1, 0.6), (2, 0.7), (3, 0.8)]
    assert "int8_served" in client.get_run(outcome.mlflow_run_id).data.metrics
