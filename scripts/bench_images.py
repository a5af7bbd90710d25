"""`make bench` (second half): the image and Keras models, ONNX on Lambda vs their native frameworks.

In one run, on the same inputs (each model's known example image, decoded and preprocessed by the one shared
preprocessing implementation; breast-cancer-lite: Wisconsin row 0):

  warm latency p50/p99, batch 1, after warm-up
    - onnxruntime ``InferenceSession.run`` on the ready tensor, fp32 and static QDQ INT8 (serving's options:
      1 intra-op thread)
    - native framework on the same tensor: PyTorch ``model(x)`` (skin-lesion), Keras ``model(x)``
      (chest-ct, breast-cancer-lite), both limited to 1 thread like the ONNX session
    - our Lambda handler in-process: API Gateway event with the PNG body in, response out (base64 decode,
      PNG decode, resize, normalise, ONNX, JSON)
  cold start, fresh process -> first response, median of a few runs
    - ours: the function's folder + shared layer, import, S3 read (moto), session, first predict
    - native: import torch / keras, load the saved model (TorchScript / .keras), preprocess, first predict
  size and accuracy of fp32 vs INT8 on the held-out synthetic test split

Models are trained here in smoke mode on the synthetic data (the architecture, hence latency and size, is the
one the full run trains). A benchmark, not a test: it prints a table and asserts no timing.
Research and education only - NOT FOR CLINICAL USE.

    .venv/bin/python -m scripts.bench_images [--quick] [--markdown PATH]
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from med_classifier.domain.calibration import calibrate
from med_classifier.domain.inference import OnnxClassifier, class_probabilities
from med_classifier.domain.manifest import ImageInput, OnnxOutputs
from med_classifier.domain.preprocessing import tensor_from_bytes
from scripts.bench import (
    COLD_START_PROLOGUE,
    Latency,
    Profile,
    bench_main,
    cold_start_once,
    env_vars_file,
    fmt_ratio,
    fmt_time,
    function_environment,
    lambda_cold_start_env,
    machine_line,
    measure,
    ours_cold_start,
    print_table,
    profile,
    profile_tables,
    progress,
)
from scripts.local_stack import MotoServer, free_port, s3_client
from tests.helpers.models import LambdaContext, load_function_module, publish

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_LAYER = REPO_ROOT / "layers" / "shared" / "python"
EVENT_TEMPLATE = REPO_ROOT / "events" / "api-predict-breast-cancer.json"
BUCKET = "med-classifier-models-bench-images"

ORT_FP32 = "onnxruntime `run`, fp32"
ORT_INT8 = "onnxruntime `run`, static QDQ INT8"
NATIVE = "native framework `model(x)`"
HANDLER = "our Lambda handler in-process, event → response"


@dataclass(frozen=True)
class Budget:
    iterations: int
    native_iterations: int
    handler_iterations: int
    cold_starts: int
    cap_s: float


DEFAULT_BUDGET = Budget(iterations=300, native_iterations=200, handler_iterations=200, cold_starts=3, cap_s=15.0)
QUICK_BUDGET = Budget(iterations=40, native_iterations=30, handler_iterations=30, cold_starts=1, cap_s=4.0)


@dataclass
class ModelResult:
    model_id: str
    framework: str
    warm: dict[str, Latency]
    cold: dict[str, list[float]]
    sizes: dict[str, int]
    accuracy: dict[str, float]
    int8_served: bool | None
    int8_speedup: float | None = None
    profile: Profile | None = None
    cold_phases: dict[str, list[float]] | None = None  # ours: phase -> seconds per run


def limit_native_threads() -> None:
    """One thread for torch and TensorFlow, like the ONNX session (Lambda's vCPU share is small)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import torch

    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):  # already initialised
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def _native_callable(framework: str, model, batch: np.ndarray):
    if framework == "torch":
        import torch

        tensor = torch.from_numpy(batch)

        def call():
            with torch.inference_mode():
                return model(tensor).numpy()

        return call
    return lambda: np.asarray(model(batch, training=False))


def _native_proba(framework: str, model, batch: np.ndarray, outputs: dict) -> np.ndarray:
    return class_probabilities(_native_callable(framework, model, batch)(), OnnxOutputs(**outputs))


def _served_native_proba(framework: str, model, batch: np.ndarray, classifier: OnnxClassifier) -> np.ndarray:
    """The native model's probabilities, calibrated as the classifier's manifest says (as served)."""
    outputs = classifier.manifest.outputs
    native = _native_proba(framework, model, batch, outputs.model_dump())
    return calibrate(native, classifier.manifest.calibration, outputs.positive_index)


def _save_native(framework: str, model, batch: np.ndarray, folder: Path) -> Path:
    if framework == "torch":
        import torch

        path = folder / "model.torchscript.pt"
        with torch.inference_mode():
            torch.jit.save(torch.jit.trace(model, torch.from_numpy(batch)), str(path))
        return path
    path = folder / "model.keras"
    model.save(path)
    return path


# argv: framework, model file, input file (.npy of the preprocessed batch, or the image + spec JSON)
NATIVE_COLD_START = (
    COLD_START_PROLOGUE
    + r"""
import json
import numpy as np
framework, model_file, image_file, spec_json = sys.argv[1:5]
if framework == "torch":
    import torch
    torch.set_num_threads(1)
    lap("import torch")
    model = torch.jit.load(model_file)
    lap("torch.jit.load")
else:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import keras
    lap("import keras + tensorflow")
    model = keras.saving.load_model(model_file)
    lap("keras load_model")
from med_classifier.domain.manifest import ImageInput
from med_classifier.domain.preprocessing import tensor_from_file
batch = tensor_from_file(image_file, ImageInput(**json.loads(spec_json)))[None]
lap("preprocess (shared code)")
if framework == "torch":
    with torch.inference_mode():
        proba = model(torch.from_numpy(batch)).numpy()
else:
    proba = np.asarray(model(batch, training=False))
lap("first predict")
print("BENCH_RESULT " + json.dumps({"total": time.time() - spawned, "phases": phases,
                                    "label": int(np.argmax(proba[0]))}))
"""
)


def image_event(model_id: str, image: bytes) -> dict:
    event = json.loads(EVENT_TEMPLATE.read_text())
    event.update(
        {
            "body": base64.b64encode(image).decode(),
            "isBase64Encoded": True,
            "path": f"/models/{model_id}/predict",
            "pathParameters": {"model": model_id},
            "resource": f"/models/{model_id}/predict",
        }
    )
    event["headers"]["Content-Type"] = "image/png"
    event["multiValueHeaders"]["Content-Type"] = ["image/png"]
    return event


def bench_image_model(
    model_id: str,
    candidate,
    example: bytes,
    expected_label: str,
    store,
    function_env: dict,
    workdir: Path,
    budget: Budget,
) -> ModelResult:
    from training.calibration import ServedOutput
    from training.quantize import evaluate_int8
    from training.trainers import trainer

    framework = "torch" if "torch" in candidate.framework else "keras"
    native = candidate.evaluation["native_model"]
    manifest = publish(store, candidate)  # fp32, as trained
    spec = ImageInput(**candidate.input_spec)
    batch = tensor_from_bytes(example, spec)[None]
    expected = candidate.classes.index(expected_label)

    fp32 = OnnxClassifier(manifest, candidate.onnx)
    quantized = evaluate_int8(
        candidate.onnx,
        candidate.classes,
        candidate.input_spec,
        candidate.outputs["probabilities"],
        candidate.evaluation,
        trainer(model_id).DEFAULT_GATE,
        ServedOutput.of(candidate.classes, candidate.outputs, candidate.calibration, candidate.operating_point),
    )  # the decision training makes
    int8 = OnnxClassifier(manifest, quantized.onnx_int8) if quantized.onnx_int8 else None
    _check_native_and_onnx_agree(model_id, framework, native, fp32, batch, candidate.outputs, expected_label, expected)
    warm = _warm_latencies(framework, native, fp32, int8, spec.input_name, candidate.outputs, batch, budget)
    event = image_event(model_id, example)
    warm[HANDLER], handler_profile = _handler_latency(model_id, event, expected_label, budget)
    native_file = _save_native(framework, native, batch, workdir)
    cold, cold_phases = _cold_starts(
        model_id, framework, candidate, example, event, native_file, function_env, workdir, expected, budget
    )
    return ModelResult(
        model_id=model_id,
        framework=framework,
        warm=warm,
        cold=cold,
        sizes={
            "fp32": len(candidate.onnx),
            "int8": int(quantized.int8.get("bytes", 0)),
            "native": native_file.stat().st_size,
        },
        accuracy={"fp32": quantized.fp32["test_accuracy"], "int8": quantized.int8.get("test_accuracy", float("nan"))},
        int8_served=quantized.chosen,
        int8_speedup=quantized.int8.get("speedup_vs_fp32"),
        profile=handler_profile,
        cold_phases=cold_phases,
    )


def _check_native_and_onnx_agree(model_id, framework, native, fp32, batch, outputs, expected_label, expected) -> None:
    checks = {"fp32": fp32.predict_proba(batch), "native": _served_native_proba(framework, native, batch, fp32)}
    if int(np.argmax(checks["fp32"])) != expected or int(np.argmax(checks["native"])) != expected:
        raise RuntimeError(f"{model_id}: the example is not predicted as {expected_label}: {checks}")
    if float(np.max(np.abs(checks["fp32"] - checks["native"]))) > 1e-4:
        raise RuntimeError(f"{model_id}: native and ONNX disagree on the bench input")


def _warm_latencies(framework, native, fp32, int8, input_name, outputs, batch, budget: Budget) -> dict:
    output_name = outputs["probabilities"]
    warm = {
        ORT_FP32: measure(lambda: fp32.session.run([output_name], {input_name: batch}), budget.iterations, budget.cap_s)
    }
    if int8 is not None:
        warm[ORT_INT8] = measure(
            lambda: int8.session.run([output_name], {input_name: batch}), budget.iterations, budget.cap_s
        )
    warm[NATIVE] = measure(_native_callable(framework, native, batch), budget.native_iterations, budget.cap_s)
    return warm


def _handler_latency(model_id: str, event: dict, expected_label: str, budget: Budget) -> tuple[Latency, Profile]:
    """The image function's handler in this process: API Gateway event → response; then its profile."""
    handler = load_function_module("image_predict")
    context = LambdaContext("ImagePredictFunction", 2048)
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # EMF line per call
        answer = handler.lambda_handler(event, context)
        if answer["statusCode"] != 200 or json.loads(answer["body"])["predictions"][0]["label"] != expected_label:
            raise RuntimeError(f"{model_id}: handler answered {answer['statusCode']}: {answer['body'][:300]}")
        latency = measure(lambda: handler.lambda_handler(event, context), budget.handler_iterations, budget.cap_s)
        calls = budget.handler_iterations
        return latency, profile(f"{model_id} handler, one PNG", lambda: handler.lambda_handler(event, context), calls)


def _cold_starts(model_id, framework, candidate, example, event, native_file, function_env, workdir, expected, budget):
    """Fresh processes → first answer, ours (the image function) and native, alternating so drift hits both alike."""
    image_file = workdir / f"{model_id}.png"
    image_file.write_bytes(example)
    event_file = workdir / f"{model_id}-event.json"
    event_file.write_text(json.dumps(event))
    ours_env = lambda_cold_start_env("ImagePredictFunction", function_env, workdir)
    native_env = {**os.environ, "PYTHONPATH": str(SHARED_LAYER)}
    native_args = [framework, str(native_file), str(image_file), json.dumps(candidate.input_spec)]
    ours_script = ours_cold_start("ImagePredictFunction", 2048)
    cold: dict[str, list[float]] = {"ours": [], "native": []}
    phases: dict[str, list[float]] = {}
    for _ in range(budget.cold_starts):
        ours = cold_start_once(
            ours_script,
            [str(event_file)],
            REPO_ROOT / "functions" / "image_predict",
            ours_env,
            expected,
            lambda_path=True,
        )
        cold["ours"].append(ours["total"])
        for name, seconds in ours["phases"]:
            phases.setdefault(name, []).append(seconds)
        cold["native"].append(cold_start_once(NATIVE_COLD_START, native_args, workdir, native_env, expected)["total"])
    return cold, phases


def bench_lite(candidate, store, budget: Budget) -> ModelResult:
    """breast-cancer-lite: the Keras MLP vs its ONNX export on one raw Wisconsin row (no image)."""
    native = candidate.evaluation["native_model"]
    manifest = publish(store, candidate)
    row = np.asarray([candidate.input_spec["example"]], dtype=np.float32)
    classifier = OnnxClassifier(manifest, candidate.onnx)
    if (
        float(np.max(np.abs(classifier.predict_proba(row) - _served_native_proba("keras", native, row, classifier))))
        > 1e-4
    ):
        raise RuntimeError("breast-cancer-lite: native and ONNX disagree on the bench row")
    input_name, output_name = manifest.input.input_name, manifest.outputs.probabilities
    warm = {
        ORT_FP32: measure(
            lambda: classifier.session.run([output_name], {input_name: row}), budget.iterations * 10, budget.cap_s
        ),
        NATIVE: measure(_native_callable("keras", native, row), budget.native_iterations, budget.cap_s),
    }
    return ModelResult(
        model_id="breast-cancer-lite",
        framework="keras",
        warm=warm,
        cold={},
        sizes={"fp32": len(candidate.onnx)},
        accuracy={"fp32": candidate.metrics["test_accuracy"]},
        int8_served=None,
    )


def report(results: list[ModelResult], quick: bool, started: datetime, load: float, elapsed_s: float) -> str:
    lines = [
        "## Benchmark: image and Keras models, ONNX on Lambda vs native PyTorch / Keras (NOT FOR CLINICAL USE)",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC{' (--quick run)' if quick else ''}; whole run {elapsed_s:.0f} s; "
        f"load average {load:.2f} at the start",
        f"- Machine: {machine_line(('onnxruntime', 'numpy', 'pillow', 'torch', 'tensorflow', 'keras'))}",
        "- Inputs: each model's known example image (PNG) of its synthetic data, through the shared preprocessing; "
        "breast-cancer-lite: Wisconsin row 0. Batch 1, 1 thread on every path. Models: smoke-trained here.",
        "",
        *warm_table(results),
        "",
        *cold_start_table(results),
        "",
        *size_and_accuracy_table(results),
        "",
        *profile_tables([result.profile for result in results if result.profile is not None]),
        "",
        "INT8 is published only if it passes the model's gate, loses at most 1 point of accuracy and is "
        "at least 5 % faster at batch 1 on the training machine (training/quantize.py); the last column is "
        "that decision on this machine.",
    ]
    return "\n".join(lines) + "\n"


def warm_table(results: list[ModelResult]) -> list[str]:
    lines = [
        "| model | path | p50 | p99 | p50 ÷ native | p50 ÷ ONNX fp32 `run` | n |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        native, onnx = result.warm[NATIVE].p50, result.warm[ORT_FP32].p50
        native_name = NATIVE.replace(
            "native framework", "native PyTorch" if result.framework == "torch" else "native Keras"
        )
        for path, latency in result.warm.items():
            lines.append(
                f"| {result.model_id} | {native_name if path == NATIVE else path} | {fmt_time(latency.p50)} "
                f"| {fmt_time(latency.p99)} | {fmt_ratio(latency.p50 / native)} | {fmt_ratio(latency.p50 / onnx)} "
                f"| {latency.n} |"
            )
    return lines


def cold_start_table(results: list[ModelResult]) -> list[str]:
    lines = [
        "Cold start, fresh process → first response (median; page cache warm, S3 is moto on loopback):",
        "",
        "| model | ours (handler, S3, session, predict) | where ours goes (medians) "
        "| native (import framework, load model, predict) | ours ÷ native |",
        "| --- | ---: | --- | ---: | ---: |",
    ]
    for result in results:
        if result.cold:
            ours, native = statistics.median(result.cold["ours"]), statistics.median(result.cold["native"])
            phases = " · ".join(
                f"{name} {fmt_time(statistics.median(values) * 1e6)}" for name, values in result.cold_phases.items()
            )
            lines.append(
                f"| {result.model_id} | {fmt_time(ours * 1e6)} | {phases} | {fmt_time(native * 1e6)} "
                f"| {fmt_ratio(ours / native)} |"
            )
    return lines


def size_and_accuracy_table(results: list[ModelResult]) -> list[str]:
    lines = [
        "Size and held-out accuracy (synthetic test split), fp32 vs static QDQ INT8:",
        "",
        "| model | ONNX fp32 | ONNX INT8 | native file | accuracy fp32 | accuracy INT8 "
        "| INT8 speed-up (decision's paired timing) | INT8 would be served |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for result in results:
        int8 = f"{result.sizes['int8'] / 1024:,.0f} KiB" if result.sizes.get("int8") else "—"
        native = f"{result.sizes['native'] / 1024:,.0f} KiB" if result.sizes.get("native") else "—"
        acc8 = f"{result.accuracy['int8']:.4f}" if "int8" in result.accuracy else "—"
        served = "—" if result.int8_served is None else ("yes" if result.int8_served else "no")
        speedup = f"{result.int8_speedup:.2f}×" if result.int8_speedup else "—"
        lines.append(
            f"| {result.model_id} | {result.sizes['fp32'] / 1024:,.0f} KiB | {int8} | {native} "
            f"| {result.accuracy['fp32']:.4f} | {acc8} | {speedup} | {served} |"
        )
    return lines


def run(budget: Budget, quick: bool, markdown: Path | None) -> None:
    from tests.helpers.keras_models import breast_cancer_lite_candidate, chest_ct_candidate
    from tests.helpers.skin_lesion import skin_lesion_candidate
    from training.datasets import chest_ct, ham10000

    started_at, started, load = datetime.now(UTC), time.perf_counter(), os.getloadavg()[0]
    results = []
    with contextlib.ExitStack() as cleanup:
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bench-images-")))
        os.environ["LOCAL_STATE_DIR"] = str(workdir / "state")  # synthetic data + MLflow stay in the temp dir
        progress("starting moto on 127.0.0.1…")
        moto = MotoServer(port=free_port()).start()
        cleanup.callback(moto.stop)
        client = s3_client(moto.url)
        client.create_bucket(Bucket=BUCKET)
        from med_classifier.adapters.model_store import ModelStore

        store = ModelStore(BUCKET, client)
        function_env = function_environment(env_vars_file(workdir, moto.url, BUCKET), "ImagePredictFunction")
        os.environ.update(function_env)
        limit_native_threads()
        for model_id, train, data in (
            ("skin-lesion", skin_lesion_candidate, ham10000),
            ("chest-ct", chest_ct_candidate, chest_ct),
        ):
            progress(f"{model_id}: training (smoke), quantising, measuring…")
            label = data.CLASSES[-1]
            results.append(
                bench_image_model(
                    model_id, train(), data.example_image(label), label, store, function_env, workdir, budget
                )
            )
        progress("breast-cancer-lite: training (smoke), measuring…")
        results.append(bench_lite(breast_cancer_lite_candidate(), store, budget))
    table = report(results, quick, started_at, load, time.perf_counter() - started)
    print_table(table, markdown)


def main(argv: list[str] | None = None) -> int:
    return bench_main(argv, __doc__.splitlines()[0], run, DEFAULT_BUDGET, QUICK_BUDGET)


if __name__ == "__main__":
    sys.exit(main())
