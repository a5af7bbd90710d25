"""Shared Keras side of the Keras trainers (breast-cancer-lite, chest-ct): TensorFlow
set-up, per-epoch logging, Keras -> ONNX export with tf2onnx, and the parity check.

Heavy imports (TensorFlow, tf2onnx, onnx, onnxruntime) happen inside the functions:
importing this module, or a trainer that uses it, stays cheap.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from training.calibration import ServedOutput

log = logging.getLogger("training")

# tf2onnx 1.17 knows opsets up to 18; 17 is what onnxruntime's CPU kernels and its
# static quantiser handle best, and what the scikit-learn export uses by default.
OPSET = 17
CPU_THREADS = 2
BATCH_DIM = "batch"


def tensorflow(seed: int):
    """Import TensorFlow and Keras for a reproducible CPU run: quiet logs, CPU only,
    CPU_THREADS threads, every seed set, deterministic kernels. Returns (tf, keras)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    try:  # only possible before TensorFlow's runtime starts: the first run in a process
        tf.config.set_visible_devices([], "GPU")
        tf.config.threading.set_intra_op_parallelism_threads(CPU_THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(CPU_THREADS)
    except RuntimeError:
        pass
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    return tf, keras


def versions() -> tuple[dict[str, str], dict[str, str]]:
    """(framework, converter) version dicts for the Candidate and the manifest."""
    import keras
    import tensorflow as tf
    import tf2onnx

    return {"tensorflow": tf.__version__, "keras": keras.__version__}, {"tf2onnx": tf2onnx.__version__}


def epoch_logger(total_epochs: int, metric: str | None = None):
    """A Keras callback that logs one readable line per epoch to the "training" logger
    (use with verbose=0): epoch n/N, loss, val loss, val `metric`, seconds."""
    import keras

    class EpochLogger(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            parts = [f"epoch {epoch + 1:>3}/{total_epochs}", f"loss {logs.get('loss', float('nan')):.4f}"]
            if "val_loss" in logs:
                parts.append(f"val loss {logs['val_loss']:.4f}")
            if metric and f"val_{metric}" in logs:
                parts.append(f"val {metric.replace('_', ' ')} {logs[f'val_{metric}']:.4f}")
            parts.append(f"{time.perf_counter() - self._started:.1f} s")
            log.info("  %s", "   ".join(parts))

    return EpochLogger()


def history_records(history) -> list[dict[str, float]]:
    """keras History -> [{"epoch": 1, "loss": .., "val_loss": .., ...}, ...] (1-based epochs)."""
    keys = sorted(history.history)
    n_epochs = len(history.history[keys[0]]) if keys else 0
    return [{"epoch": epoch + 1, **{k: float(history.history[k][epoch]) for k in keys}} for epoch in range(n_epochs)]


def to_onnx(model, input_name: str, item_shape: tuple[int, ...], output_name: str) -> bytes:
    """Export a single-input, single-output Keras model with tf2onnx.

    The graph gets exactly one float32 input `input_name` of shape (batch, *item_shape)
    and one output `output_name`, both with a dynamic batch axis named "batch". The IR
    version is the lowest one that carries OPSET (onnx 1.23 would otherwise stamp its
    own newest, which onnxruntime refuses)."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError("to_onnx exports single-input, single-output models only")
    # Keras 3 models no longer carry the output names tf2onnx.from_keras relies on.
    model.output_names = [output_name]
    signature = [tf.TensorSpec((None, *item_shape), tf.float32, name=input_name)]
    # tf2onnx numbers the nodes it makes from a process-wide counter: restart it so the
    # same model exports to the same bytes however many exports ran before (the rewriter
    # module takes a name from it when first imported: import it before the restart).
    import tf2onnx.rewriter.loop_rewriter_base  # noqa: F401

    tf2onnx.utils.INTERNAL_NAME = 1
    converter_log = logging.getLogger("tf2onnx")
    level = converter_log.level
    converter_log.setLevel(logging.WARNING)  # its INFO lines would drown the training log
    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=OPSET)
    finally:
        converter_log.setLevel(level)
    proto.ir_version = onnx.helper.find_min_ir_version_for(list(proto.opset_import), ignore_unknown=True)
    inputs = [i.name for i in proto.graph.input]
    outputs = [o.name for o in proto.graph.output]
    if inputs != [input_name] or outputs != [output_name]:  # the names are our serving contract
        raise RuntimeError(
            f"tf2onnx produced inputs {inputs} and outputs {outputs}, expected [{input_name!r}] and [{output_name!r}]"
        )
    for value in (proto.graph.input[0], proto.graph.output[0]):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = BATCH_DIM
    proto.producer_name = "tf2onnx"
    proto.doc_string = "NOT FOR CLINICAL USE"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def onnx_outputs(onnx_bytes: bytes, input_name: str, output_name: str, x: np.ndarray) -> np.ndarray:
    """Run the exported model on onnxruntime's CPU provider, as serving does."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (out,) = session.run([output_name], {input_name: np.ascontiguousarray(x, dtype=np.float32)})
    return np.asarray(out)


def keras_outputs(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The native model's raw outputs in inference mode (no dropout, BN moving stats).
    Eager calls: model.predict would trace a new function for every model trained."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not len(x):
        return np.zeros((0, *model.outputs[0].shape[1:]), dtype=np.float32)
    return np.concatenate(
        [np.asarray(model(x[i : i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
    )


def parity(
    model,
    onnx_bytes: bytes,
    input_name: str,
    output_name: str,
    x: np.ndarray,
    to_proba: Callable[[np.ndarray], np.ndarray] = lambda raw: raw,
    served: ServedOutput | None = None,
) -> dict[str, float | int]:
    """Keras vs onnxruntime on the same float32 rows: identical labels and max |Δp| of the
    class-probability columns (`to_proba` turns a raw output into those columns; with
    `served`, calibrated and labelled as serving does)."""
    from training.metrics import parity_figures

    native = to_proba(np.asarray(keras_outputs(model, x), dtype=np.float64))
    exported = to_proba(np.asarray(onnx_outputs(onnx_bytes, input_name, output_name, x), dtype=np.float64))
    return parity_figures(native, exported, served)
