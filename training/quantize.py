"""Static QDQ INT8 quantisation of an image model, kept only where it pays.

Dynamic INT8 slows convolutions down on CPU, so this uses static QDQ quantisation
calibrated on training tensors (built by the shared preprocessing). The INT8 variant
replaces the fp32 export only if, on the same held-out tensors, it still passes the
promotion gate, loses at most `max_accuracy_drop` accuracy, and is faster on this CPU.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.calibration import ServedOutput
from training.gate import GateResult, PromotionGate
from training.metrics import classification_metrics

log = logging.getLogger("training")

MAX_ACCURACY_DROP = 0.01
MIN_SPEEDUP = 1.05  # int8 must be at least 5 % faster at batch 1 to be worth the risk
LATENCY_REPEATS = 300  # timed batch-1 runs of each model


@dataclass
class QuantizationReport:
    chosen: bool
    reasons: list[str]
    onnx_int8: bytes | None
    fp32: dict[str, float]
    int8: dict[str, float] = field(default_factory=dict)
    # Full test metrics and probabilities of the INT8 model, for when it is served.
    int8_metrics: dict[str, float] = field(default_factory=dict)
    int8_proba: np.ndarray | None = None

    def as_manifest_dict(self, fp32_sha256: str) -> dict[str, Any]:
        return {
            "scheme": "static-qdq-int8",
            "chosen": self.chosen,
            "reasons": self.reasons,
            "fp32_sha256": fp32_sha256,
            "fp32": self.fp32,
            "int8": self.int8,
        }


def _session(onnx_bytes: bytes):
    """A session with serving's options, so the latency compared is the one Lambda sees."""
    import onnxruntime as ort

    from med_classifier.domain.inference import session_options

    return ort.InferenceSession(onnx_bytes, sess_options=session_options(), providers=["CPUExecutionProvider"])


def _run(session, input_name: str, output_name: str, batch: np.ndarray) -> np.ndarray:
    (out,) = session.run([output_name], {input_name: batch})
    return np.asarray(out, dtype=np.float64)


def paired_latency_ms(first, second, input_name: str, output_name: str, item: np.ndarray) -> tuple[float, float]:
    """Median batch-1 latency of two sessions, measured interleaved after warm-up so
    that drift on the machine hits both alike (sub-millisecond models are noisy)."""
    for _ in range(10):
        _run(first, input_name, output_name, item)
        _run(second, input_name, output_name, item)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(LATENCY_REPEATS):
        for session, samples in ((first, times[0]), (second, times[1])):
            started = time.perf_counter()
            _run(session, input_name, output_name, item)
            samples.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times[0]), statistics.median(times[1])


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over a tensor batch."""

    def __init__(self, input_name: str, tensors: np.ndarray, batch: int = 16):
        self._batches = iter([{input_name: tensors[i : i + batch]} for i in range(0, len(tensors), batch)])

    def get_next(self):
        return next(self._batches, None)


def quantize_static_int8(onnx_fp32: bytes, input_name: str, calibration: np.ndarray) -> bytes:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        source, prepared, target = Path(tmp, "fp32.onnx"), Path(tmp, "prepared.onnx"), Path(tmp, "int8.onnx")
        source.write_bytes(onnx_fp32)
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(target),
            _Calibration(input_name, calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            # u8 activations / s8 weights is what ORT's CPU kernels run fastest; without
            # VNNI, 7-bit weights (reduce_range) avoid saturation in the int16 accumulators.
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=True,
            calibrate_method=CalibrationMethod.MinMax,
        )
        return target.read_bytes()


def evaluate_int8(
    onnx_fp32: bytes,
    classes: list[str],
    input_spec: dict,
    output_name: str,
    evaluation: dict,
    gate: PromotionGate,
    served: ServedOutput | None = None,
) -> QuantizationReport:
    """Build the INT8 variant, measure both on the same tensors, decide. With `served`, both
    are measured as serving answers: calibrated, labels at the operating point."""
    served = served or ServedOutput(list(classes))
    input_name = input_spec["input_name"]
    x_eval, y_true = evaluation["x_eval"], np.asarray(evaluation["y_true"])
    fp32_session = _session(onnx_fp32)
    fp32_proba = served.proba(_run(fp32_session, input_name, output_name, x_eval))
    fp32_metrics = classification_metrics(y_true, fp32_proba, classes, served.operating_point)
    fp32 = {
        "bytes": float(len(onnx_fp32)),
        "test_accuracy": fp32_metrics["test_accuracy"],
        "test_macro_f1": fp32_metrics["test_macro_f1"],
    }
    try:
        onnx_int8 = quantize_static_int8(onnx_fp32, input_name, evaluation["x_calibration"])
        int8_session = _session(onnx_int8)
    except Exception as exc:  # an op the quantiser cannot handle: keep fp32, say why
        log.warning("INT8 quantisation failed, keeping fp32: %s", exc)
        return QuantizationReport(False, [f"quantisation failed: {exc}"], None, fp32)
    int8_proba = served.proba(_run(int8_session, input_name, output_name, x_eval))
    int8_metrics = classification_metrics(y_true, int8_proba, classes, served.operating_point)
    fp32["latency_ms_p50"], int8_ms = paired_latency_ms(fp32_session, int8_session, input_name, output_name, x_eval[:1])
    int8 = {
        "bytes": float(len(onnx_int8)),
        "latency_ms_p50": int8_ms,
        "test_accuracy": int8_metrics["test_accuracy"],
        "test_macro_f1": int8_metrics["test_macro_f1"],
        "label_agreement_with_fp32": float(np.mean(served.labels(int8_proba) == served.labels(fp32_proba))),
        "max_abs_prob_diff_vs_fp32": float(np.max(np.abs(int8_proba - fp32_proba))),
        "speedup_vs_fp32": fp32["latency_ms_p50"] / int8_ms,
    }
    reasons = _reasons_to_keep_fp32(fp32, int8, gate.evaluate(int8_metrics))
    _log_decision(fp32, int8, reasons)
    return QuantizationReport(
        not reasons,
        reasons or ["int8 passes the gate, within the accuracy budget, and faster"],
        onnx_int8,
        fp32,
        int8,
        int8_metrics,
        int8_proba,
    )


def _reasons_to_keep_fp32(fp32: dict[str, float], int8: dict[str, float], verdict: GateResult) -> list[str]:
    """Why the INT8 variant must not replace fp32: it fails the gate, loses more than
    MAX_ACCURACY_DROP accuracy, or is not at least MIN_SPEEDUP times faster."""
    reasons = []
    if not verdict.passed:
        reasons.append("int8 fails the gate: " + "; ".join(verdict.reasons))
    drop = fp32["test_accuracy"] - int8["test_accuracy"]
    if drop > MAX_ACCURACY_DROP:
        reasons.append(f"int8 accuracy drop {drop:.4f} > {MAX_ACCURACY_DROP}")
    if int8["speedup_vs_fp32"] < MIN_SPEEDUP:
        reasons.append(f"int8 is not faster on this CPU ({int8['speedup_vs_fp32']:.2f}x, need {MIN_SPEEDUP}x)")
    return reasons


def _log_decision(fp32: dict[str, float], int8: dict[str, float], reasons: list[str]) -> None:
    log.info(
        "INT8 (static QDQ): %.0f KB vs %.0f KB, p50 %.2f ms vs %.2f ms (%.2fx), accuracy %.4f vs %.4f → %s",
        int8["bytes"] / 1024,
        fp32["bytes"] / 1024,
        int8["latency_ms_p50"],
        fp32["latency_ms_p50"],
        int8["speedup_vs_fp32"],
        int8["test_accuracy"],
        fp32["test_accuracy"],
        "keep fp32 (" + "; ".join(reasons) + ")" if reasons else "publish int8",
    )
