"""`make bench`: our ONNX-on-Lambda serving path vs the native scikit-learn service, in one run, on the same rows.

One model (breast-cancer, trained here once), published to S3 in a moto server on 127.0.0.1, then:

  warm latency, p50/p99 for 1 row and 100 rows (after warm-up)
    - onnxruntime ``InferenceSession.run``, with the session serving builds (same options: 1 intra-op thread)
    - scikit-learn ``predict_proba`` of the same pipeline (the baseline of the in-process paths)
    - our Lambda handler in-process: API Gateway event in, response out
    - a Flask app serving the joblib-pickled pipeline (scripts/flask_baseline.py), over loopback HTTP
      (the baseline of the HTTP paths)
    - our API over loopback HTTP: template.yaml served by the Docker-free local runner
  cold start, fresh process -> first response, median of a few runs
    - our handler: interpreter, imports, S3 reads (moto), ONNX session, first predict
    - native: interpreter, import scikit-learn, joblib.load, first predict_proba

A benchmark, not a test: it prints a table and asserts no timing. Dummy AWS credentials; loopback only.
Research and education only - NOT FOR CLINICAL USE.

    .venv/bin/python -m scripts.bench [--quick] [--markdown PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import platform
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version as installed_version
from pathlib import Path

import joblib
import numpy as np
import requests
from sklearn.model_selection import train_test_split

from med_classifier.adapters.model_store import ModelStore
from med_classifier.domain.inference import OnnxClassifier
from med_classifier.domain.manifest import Manifest
from scripts.lambda_path import lambda_sys_path
from scripts.local_cognito import LocalUserPool
from scripts.local_runner import LocalApi, LocalFunctions
from scripts.local_stack import LOCAL_CREDENTIALS, MotoServer, aws_client, free_port, s3_client
from tests.helpers.models import MALIGNANT_EXAMPLE, breast_cancer_candidate, load_function_module, publish
from training.breast_cancer import candidate_pipelines, load_wisconsin
from training.candidate import Candidate

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTION_DIR = REPO_ROOT / "functions" / "predict"
SHARED_LAYER = REPO_ROOT / "layers" / "shared" / "python"
PREDICT_EVENT = REPO_ROOT / "events" / "api-predict-breast-cancer.json"
BUCKET = "med-classifier-models-bench"
MODEL_ID = "breast-cancer"
SEED = 42
BATCH_ROWS = 100
JSON_HEADERS = {"Content-Type": "application/json"}

# The measured paths, as the table names them.
ONNX_PATH = "onnxruntime `InferenceSession.run`, serving's options"
SKLEARN_PATH = "scikit-learn `predict_proba`, native pipeline"
HANDLER_PATH = "our Lambda handler in-process, API Gateway event → response"
FLASK_PATH = "Flask + scikit-learn, loopback HTTP"
OURS_HTTP_PATH = "our API via the local runner, loopback HTTP"
HTTP_PATHS = (FLASK_PATH, OURS_HTTP_PATH)
PROFILE_TOP = 14


@dataclass(frozen=True)
class Budget:
    """Iterations per measurement (1 row, 100 rows); each measurement also stops after ``cap_s`` seconds
    per path. ``in_process``: scikit-learn and our handler, in turns; ``http``: Flask and ours, in turns."""

    onnx: tuple[int, int]
    in_process: tuple[int, int]
    http: tuple[int, int]
    cold_starts: int
    cap_s: float


# Sized so the default run stays under ~3 minutes on a 2-core machine.
DEFAULT_BUDGET = Budget(onnx=(5000, 2000), in_process=(2000, 1000), http=(2000, 500), cold_starts=5, cap_s=20.0)
QUICK_BUDGET = Budget(onnx=(500, 200), in_process=(200, 100), http=(100, 30), cold_starts=2, cap_s=5.0)


class Context:
    """The attributes of Lambda's context object that Powertools reads."""

    function_name = "PredictFunction"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:PredictFunction"
    aws_request_id = "bench"


# --- measuring -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    samples_us: np.ndarray

    @property
    def p50(self) -> float:
        return float(np.percentile(self.samples_us, 50))

    @property
    def p99(self) -> float:
        return float(np.percentile(self.samples_us, 99))

    @property
    def n(self) -> int:
        return len(self.samples_us)


def measure(call: Callable[[], object], iterations: int, cap_s: float) -> Latency:
    # Warm-up first: lazy imports, first-call caches, the allocator, the keep-alive connection.
    for _ in range(max(20, iterations // 10)):
        call()
    samples = []
    deadline = time.perf_counter() + cap_s
    for _ in range(iterations):
        started = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - started)
        if time.perf_counter() > deadline:
            break
    return Latency(np.asarray(samples, dtype=np.float64) / 1000.0)


def measure_in_turns(calls: dict[str, Callable[[], object]], iterations: int, cap_s: float) -> dict[str, Latency]:
    """Paths timed in turns, one call each per round, so that drift on a shared machine (another
    process, the CPU's clock) hits each alike and the ratio between them holds; measured one after
    the other, the same code's ratio moved by a third between runs."""
    for call in calls.values():
        for _ in range(max(20, iterations // 10)):
            call()
    samples: dict[str, list[int]] = {name: [] for name in calls}
    deadline = time.perf_counter() + cap_s * len(calls)
    for _ in range(iterations):
        for name, call in calls.items():
            started = time.perf_counter_ns()
            call()
            samples[name].append(time.perf_counter_ns() - started)
        if time.perf_counter() > deadline:
            break
    return {name: Latency(np.asarray(times, dtype=np.float64) / 1000.0) for name, times in samples.items()}


@dataclass(frozen=True)
class Profile:
    """The top cumulative entries of a cProfile run over a path's calls, per call."""

    title: str
    calls: int
    rows: list[tuple[str, float, float, float]]  # function, calls per call, own µs, cumulative µs


def profile(title: str, call: Callable[[], object], calls: int, top: int = PROFILE_TOP) -> Profile:
    """cProfile over ``calls`` calls (after the timed runs: profiling slows every Python call, so its
    times are relative, for seeing where the time goes, not for the tables)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        call()
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # (file, line, name) -> (primitive calls, calls, own s, cumulative s, ...)
    entries = sorted(stats.items(), key=lambda item: item[1][3], reverse=True)
    rows = [
        (_function_name(key), n / calls, own / calls * 1e6, cumulative / calls * 1e6)
        for key, (_, n, own, cumulative, _callers) in entries
        if not _is_profiling_noise(key)
    ][:top]
    return Profile(title=title, calls=calls, rows=rows)


def _function_name(key: tuple[str, int, str]) -> str:
    path, line, name = key
    if path == "~":  # a builtin
        return name
    for root in (str(REPO_ROOT) + "/", "site-packages/", "lib/python3"):
        if root in path:
            path = path.split(root, 1)[1]
            break
    return f"{path}:{line} {name}"


def _is_profiling_noise(key: tuple[str, int, str]) -> bool:
    return key[2] in ("<lambda>", "<method 'disable' of '_lsprof.Profiler' objects>")


def profile_tables(profiles: list[Profile]) -> list[str]:
    lines = [
        "Where the handler's time goes: cProfile's top cumulative entries per call (profiling slows every "
        "Python call, so compare rows within a table, not with the timings above):",
    ]
    for entry in profiles:
        lines += [
            "",
            f"**{entry.title}** ({entry.calls} calls)",
            "",
            "| function | calls | own µs | cumulative µs |",
            "| --- | ---: | ---: | ---: |",
        ]
        lines += [f"| `{name}` | {n:g} | {own:.1f} | {cumulative:.1f} |" for name, n, own, cumulative in entry.rows]
    return lines


def progress(message: str) -> None:
    print(f"[bench] {message}", flush=True)


# --- the model, the rows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    candidate: Candidate
    manifest: Manifest
    pipeline: object  # the fitted scikit-learn pipeline
    rows: dict[int, np.ndarray]  # n rows -> float64 matrix


def train_and_publish(client) -> Setup:
    candidate = breast_cancer_candidate(SEED)  # training.breast_cancer.train(k_folds=5, seed=SEED)
    manifest = publish(ModelStore(BUCKET, client), candidate)
    # train() returns the ONNX bytes, not the fitted pipeline. Refitting the pipeline it chose on the split it
    # used (same arguments as train(), same seed) gives the same model: checked against the ONNX below.
    data = load_wisconsin()
    X_train, X_test, y_train, _ = train_test_split(data.X, data.y, test_size=0.2, stratify=data.y, random_state=SEED)
    pipeline = candidate_pipelines(SEED)[candidate.estimator].fit(X_train, y_train)
    # 1 row: the public malignant example; 100 rows: held-out test rows the model never saw.
    rows = {1: np.asarray([MALIGNANT_EXAMPLE], dtype=np.float64), BATCH_ROWS: X_test[:BATCH_ROWS]}
    return Setup(candidate=candidate, manifest=manifest, pipeline=pipeline, rows=rows)


def labels_of_body(body: dict) -> list[int]:
    return [p["class_index"] for p in body["predictions"]]


def env_vars_file(workdir: Path, moto_url: str, bucket: str, **parameters: str) -> Path:
    """The SAM env-vars file every bench serves its functions with: moto, the bench's models bucket, a pointer
    re-read every 60 s (none changes during a run), and `parameters` on top."""
    env_file = workdir / "env.json"
    defaults = {"AWS_ENDPOINT_URL": moto_url, "MODELS_BUCKET": bucket, "POINTER_REFRESH_SECONDS": "60"}
    env_file.write_text(json.dumps({"Parameters": {**defaults, **parameters}}))
    return env_file


def function_environment(env_file: Path, function: str = "PredictFunction") -> dict[str, str]:
    """A function's environment as SAM resolves it for the local runner (template Globals, the env-vars
    file, the AWS_LAMBDA_* variables): the in-process and cold-start handlers run with the same one."""
    functions = LocalFunctions(str(REPO_ROOT / "template.yaml"), env_vars_path=str(env_file))
    try:
        runner = functions.lambda_runner
        return runner.get_invoke_config(runner.get_function(function)).env_vars.resolve()
    finally:
        functions.stop()


# --- cold start ------------------------------------------------------------------------------------------

# Ours runs as `python -S -c` in the function's folder with Lambda's search path (lambda_cold_start_env).
# boto3 and onnxruntime would be imported by the first call anyway; importing them first only splits the time.
# Both cold-start scripts time their phases the same way, from the moment the parent spawned them.
COLD_START_PROLOGUE = r"""
import os, sys, time
spawned = float(os.environ["BENCH_SPAWNED_AT"])
phases, mark = [], time.time()
phases.append(("interpreter", mark - spawned))
def lap(name):
    global mark
    now = time.time()
    phases.append((name, now - mark))
    mark = now
"""


# What both of our scripts end with: the Lambda context, the first call, and the result line.
FIRST_CALL = r"""
class Context:
    function_name = "__NAME__"
    memory_limit_in_mb = __MEMORY__
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:__NAME__"
    aws_request_id = "bench-cold"
with open(sys.argv[1]) as file:
    event = json.load(file)
response = app.lambda_handler(event, Context())
lap("__FIRST_CALL__")
label = json.loads(response["body"])["predictions"][0]["class_index"] if response["statusCode"] == 200 else None
print("BENCH_RESULT " + json.dumps({"total": time.time() - spawned, "phases": phases, "label": label}))
"""


def ours_cold_start(function_name: str, memory_mb: int) -> str:
    """The cold-start script for one of our functions (run in its folder, shared layer on PYTHONPATH)."""
    return _our_script(
        r"""
import json
import app
lap("import handler")
import boto3
lap("import boto3")
import onnxruntime
lap("import onnxruntime")
""",
        function_name,
        memory_mb,
        "first call: S3 + session + predict",
    )


# SnapStart, simulated: init and the before-snapshot hooks run first (on Lambda, once per published version,
# before the snapshot); the total is what a restored instance then does before its first response: the
# after-restore hooks and the first call. Lambda's own restore (mapping the snapshot's memory) is not in it.
def restored_start(function_name: str, memory_mb: int) -> str:
    return _our_script(
        r"""
import json
import app
import snapshot_restore_py
for hook, args, kwargs in reversed(snapshot_restore_py.get_before_snapshot()):
    hook(*args, **kwargs)
spawned = mark = time.time()  # the restore: what comes before is the snapshot's
phases = []
for hook, args, kwargs in snapshot_restore_py.get_after_restore():
    hook(*args, **kwargs)
lap("after-restore hooks: new clients, pointers re-read")
""",
        function_name,
        memory_mb,
        "first call",
    )


def _our_script(body: str, function_name: str, memory_mb: int, first_call: str) -> str:
    return (
        (COLD_START_PROLOGUE + body + FIRST_CALL)
        .replace("__NAME__", function_name)
        .replace("__MEMORY__", str(memory_mb))
        .replace("__FIRST_CALL__", first_call)
    )


NATIVE_COLD_START = (
    COLD_START_PROLOGUE
    + r"""
import importlib, json
import joblib
for module in sys.argv[3:]:
    importlib.import_module(module)
lap("import sklearn")
pipeline = joblib.load(sys.argv[1])
lap("joblib.load")
proba = pipeline.predict_proba(json.loads(sys.argv[2]))
lap("first predict_proba")
print("BENCH_RESULT " + json.dumps({"total": time.time() - spawned, "phases": phases,
                                    "label": int(proba.argmax())}))
"""
)


@dataclass(frozen=True)
class ColdStart:
    totals_s: list[float]
    phases_s: dict[str, list[float]]


def lambda_cold_start_env(function: str, function_env: dict[str, str], workdir: Path) -> dict[str, str]:
    """Our function's environment: its template variables and the search path Lambda gives it (its folder,
    its layers, the runtime's boto3; scripts/lambda_path.py), to be run with `python -S` so that nothing
    else of the dev venv is importable. The dev venv's extras change what boto3 imports: with awscrt and
    pyOpenSSL installed (SAM CLI's), `import boto3` costs about 100 ms more than on Lambda."""
    return {**os.environ, **function_env, "PYTHONPATH": os.pathsep.join(lambda_sys_path(function, workdir))}


def cold_start_once(
    code: str, args: list[str], cwd: Path, env: dict[str, str], expected_label: int, *, lambda_path: bool = False
) -> dict:
    env = {**env, "BENCH_SPAWNED_AT": repr(time.time())}
    flags = ["-S"] if lambda_path else []  # -S: no site-packages; PYTHONPATH is the whole search path
    done = subprocess.run(
        [sys.executable, *flags, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    # The handler prints its EMF metrics on stdout too: the result is the marked line.
    results = [line for line in done.stdout.splitlines() if line.startswith("BENCH_RESULT ")]
    if done.returncode != 0 or not results:
        raise RuntimeError(f"cold-start process failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result = json.loads(results[-1].removeprefix("BENCH_RESULT "))
    if result["label"] != expected_label:
        raise RuntimeError(
            f"cold-start process predicted {result['label']}, expected {expected_label}:\n{done.stdout[-2000:]}"
        )
    return result


def cold_starts(
    setup: Setup, model_file: Path, event_file: Path, function_env: dict[str, str], workdir: Path, repeats: int
) -> dict[str, ColdStart]:
    ours_env = lambda_cold_start_env("PredictFunction", function_env, workdir)
    sklearn_modules = sorted({"sklearn.pipeline"} | {type(step).__module__ for _, step in setup.pipeline.steps})
    row = setup.rows[1]
    label = int(np.argmax(setup.pipeline.predict_proba(row)))
    runs: dict[str, list[dict]] = {"ours": [], "restored": [], "native": []}
    for _ in range(repeats):  # alternate, so drift on the machine hits all alike
        runs["restored"].append(
            cold_start_once(
                restored_start("PredictFunction", 1024),
                [str(event_file)],
                FUNCTION_DIR,
                ours_env,
                label,
                lambda_path=True,
            )
        )
        runs["ours"].append(
            cold_start_once(
                ours_cold_start("PredictFunction", 1024),
                [str(event_file)],
                FUNCTION_DIR,
                ours_env,
                label,
                lambda_path=True,
            )
        )
        runs["native"].append(
            cold_start_once(
                NATIVE_COLD_START,
                [str(model_file), json.dumps(row.tolist()), *sklearn_modules],
                model_file.parent,
                dict(os.environ),
                label,
            )
        )
    summary = {}
    for path, results in runs.items():
        phases: dict[str, list[float]] = {}
        for result in results:
            for name, seconds in result["phases"]:
                phases.setdefault(name, []).append(seconds)
        summary[path] = ColdStart(totals_s=[r["total"] for r in results], phases_s=phases)
    return summary


# --- servers ---------------------------------------------------------------------------------------------


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def wait_until_up(url: str, process: subprocess.Popen | None, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {process.returncode}:\n{tail(log)}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s:\n{tail(log)}")


@contextlib.contextmanager
def flask_baseline(model_file: Path, log: Path):
    port = free_port()
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "scripts.flask_baseline", "--model", str(model_file), "--port", str(port)],
            cwd=REPO_ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # Ctrl-C is ours to handle: we stop it in order
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(f"{url}/health", process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def stderr_to(log: Path):
    """Sends file descriptor 2 to ``log``: the local runner writes SAM's and werkzeug's request log there, and
    its workers' stdout (the handler's EMF metrics, one line per request) goes there too."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log, "ab") as output:
        os.dup2(output.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def signed_in(moto_url: str) -> tuple[LocalUserPool, dict[str, str]]:
    """The template's user pool in moto (scripts/local_cognito.py) and the demo clinician's Authorization
    header: every predict route is behind the Cognito authorizer, which the local runner checks."""
    from scripts.local_cognito import DEMO_USERS, id_token, provision_cognito

    cognito = aws_client("cognito-idp", moto_url)
    pool = provision_cognito(cognito, REPO_ROOT / "template.yaml", moto_url)
    return pool, {"Authorization": id_token(cognito, pool.client_id, DEMO_USERS["clinician"])}


@contextlib.contextmanager
def local_api(env_file: Path, log: Path, moto_url: str) -> Iterator[tuple[str, dict[str, str]]]:
    """Our API through the local runner: its URL and the headers a signed-in clinician sends."""
    from scripts.local_runner.cognito import moto_user_pool

    pool, auth = signed_in(moto_url)
    port = free_port()
    template = str(REPO_ROOT / "template.yaml")
    user_pool = moto_user_pool(moto_url, pool.pool_id)
    api = LocalApi(template, env_vars_path=str(env_file), host="127.0.0.1", port=port, user_pool=user_pool)
    try:
        with stderr_to(log):
            api.start()
            try:
                wait_until_up(f"{api.url}/health", None, log)
                yield api.url, auth
            finally:
                api.stop()
    except Exception as error:
        raise RuntimeError(f"local runner: {error}\n--- its log ---\n{tail(log)}") from error


def http_post(session, url: str, body: bytes) -> Callable[[], dict]:
    def call() -> dict:
        response = session.post(url, data=body, headers=JSON_HEADERS)
        if response.status_code != 200:
            raise RuntimeError(f"POST {url}: {response.status_code} {response.text[:500]}")
        return response.json()

    return call


def measure_http(
    endpoints: dict[str, tuple[str, str, Callable[[dict], list[int]], dict[str, str]]],
    rows: dict[int, list],
    expected_labels: list[int],
    budget: Budget,
) -> dict[str, dict[int, Latency]]:
    """Each path (its URL, the body's key for the rows, how to read labels from its answer, the headers its
    session sends) timed in turns with the others, over one keep-alive connection each, as a steady client
    would have."""
    warm: dict[str, dict[int, Latency]] = {path: {} for path in endpoints}
    with contextlib.ExitStack() as stack:
        sessions = {path: stack.enter_context(requests.Session()) for path in endpoints}
        for path, (_, _, _, headers) in endpoints.items():
            sessions[path].headers.update(headers)
        for n, iterations in zip(rows, budget.http):
            calls = {
                path: http_post(sessions[path], url, json.dumps({key: rows[n]}).encode())
                for path, (url, key, _, _) in endpoints.items()
            }
            for path, (_, _, labels, _) in endpoints.items():
                if n == BATCH_ROWS and labels(calls[path]()) != expected_labels:
                    raise RuntimeError(f"{path} does not predict what the pipeline predicts")
            for path, latency in measure_in_turns(calls, iterations, budget.cap_s).items():
                warm[path][n] = latency
    return warm


# --- report ----------------------------------------------------------------------------------------------


def machine_line(
    packages: tuple[str, ...] = (
        "onnxruntime",
        "scikit-learn",
        "numpy",
        "Flask",
        "aws-lambda-powertools",
        "aws-sam-cli",
    ),
) -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = ", ".join(f"{name} {installed_version(name)}" for name in packages)
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; {versions}"
    )


def fmt_time(us: float) -> str:
    """About three significant digits, in µs, ms or s."""
    value, unit = (us, "µs") if us < 1e3 else (us / 1e3, "ms") if us < 1e6 else (us / 1e6, "s")
    decimals = 2 if value < 10 else 1 if value < 100 else 0
    return f"{value:.{decimals}f} {unit}"


def fmt_ratio(ratio: float) -> str:
    if ratio >= 10:
        return f"{ratio:.0f}×"
    if ratio >= 1:
        return f"{ratio:.2f}×"
    return f"{ratio:.2g}×"


def ratio_cell(path: dict[int, Latency], baseline: dict[int, Latency]) -> str:
    return " / ".join(fmt_ratio(path[n].p50 / baseline[n].p50) for n in sorted(path))


def report(
    setup: Setup,
    warm: dict[str, dict[int, Latency]],
    cold: dict[str, ColdStart],
    parity: float,
    sizes: dict[str, int],
    quick: bool,
    started: datetime,
    load: float,
    elapsed_s: float,
    profiles: list[Profile],
) -> str:
    lines = [
        "## Benchmark: breast-cancer, ONNX on Lambda vs native scikit-learn (NOT FOR CLINICAL USE)",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC{' (--quick run)' if quick else ''}; whole run {elapsed_s:.0f} s; "
        f"load average {load:.2f} at the start (anything else running skews the numbers)",
        f"- Machine: {machine_line()}",
        f"- Model: `{setup.candidate.estimator}` pipeline (StandardScaler + classifier), ONNX {sizes['onnx']:,} B, "
        f"joblib {sizes['joblib']:,} B; native vs ONNX max |Δp| on the bench rows {parity:.1e}",
        f"- Rows: 1 = the public malignant example; {BATCH_ROWS} = held-out Wisconsin test rows; "
        "the same rows on every path",
        "",
        *warm_table(warm),
        "",
        *cold_start_table(cold),
        "",
        PATHS_EXPLAINED,
        "",
        *profile_tables(profiles),
    ]
    return "\n".join(lines) + "\n"


def warm_table(warm: dict[str, dict[int, Latency]]) -> list[str]:
    lines = [
        f"| path | 1 row p50 | 1 row p99 | {BATCH_ROWS} rows p50 | {BATCH_ROWS} rows p99 "
        f"| p50 ÷ sklearn `predict_proba` (1 / {BATCH_ROWS}) | p50 ÷ Flask HTTP (1 / {BATCH_ROWS}) "
        f"| n (1 / {BATCH_ROWS}) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, latencies in warm.items():
        one, batch = latencies[1], latencies[BATCH_ROWS]
        vs_flask = ratio_cell(latencies, warm[FLASK_PATH]) if name in HTTP_PATHS else "—"
        lines.append(
            f"| {name} | {fmt_time(one.p50)} | {fmt_time(one.p99)} | {fmt_time(batch.p50)} "
            f"| {fmt_time(batch.p99)} | {ratio_cell(latencies, warm[SKLEARN_PATH])} | {vs_flask} "
            f"| {one.n} / {batch.n} |"
        )
    return lines


COLD_START_TITLES = {
    "ours": "our handler: import, S3 read + sha256, ONNX session, predict",
    "restored": "our handler restored from a SnapStart snapshot (simulated): after-restore hooks, predict",
    "native": "native: import scikit-learn, `joblib.load`, `predict_proba`",
}


def cold_start_table(cold: dict[str, ColdStart]) -> list[str]:
    repeats = len(cold["ours"].totals_s)
    lines = [
        f"Cold start: fresh process → first response (1 row), median of {repeats}; page cache warm, S3 is moto on "
        "loopback, so real Lambda cold starts (runtime init, S3 over the network) take longer.",
        "",
        "| path | median | min – max | where the time goes (medians) | ÷ native |",
        "| --- | ---: | ---: | --- | ---: |",
    ]
    native_median = statistics.median(cold["native"].totals_s)
    for path, result in cold.items():
        median = statistics.median(result.totals_s)
        phases = " · ".join(
            f"{name} {fmt_time(statistics.median(values) * 1e6)}" for name, values in result.phases_s.items()
        )
        lines.append(
            f"| {COLD_START_TITLES[path]} | {fmt_time(median * 1e6)} | {fmt_time(min(result.totals_s) * 1e6)} – "
            f"{fmt_time(max(result.totals_s) * 1e6)} | {phases} | {fmt_ratio(median / native_median)} |"
        )
    return lines


PATHS_EXPLAINED = (
    "Paths: `InferenceSession.run` and `predict_proba` take a ready numpy array (float32 / float64). The handler "
    "path is `lambda_handler(event, context)` with the API Gateway event (JSON parsing, validation, Powertools "
    "logging and EMF metrics included). Flask: scripts/flask_baseline.py, werkzeug's threaded server in a "
    'subprocess, body `{"features": rows}`. Our API: template.yaml served by scripts/local_runner (SAM CLI\'s '
    'API Gateway emulation, handler in a warm worker process), body `{"instances": rows}`. Both HTTP paths: '
    "one keep-alive `requests.Session` each on 127.0.0.1, client and server sharing the machine's cores; the local "
    "runner's overhead is SAM's emulation, not API Gateway + Lambda on AWS. Each pair compared (scikit-learn and "
    "our handler; Flask and our API) is timed in turns, one call each per round, so drift hits both alike."
)


# --- the run ---------------------------------------------------------------------------------------------


def check_same_model(setup: Setup, session) -> tuple[float, list[int]]:
    """Max |Δp| between the refitted pipeline and the published ONNX on the bench rows, and the labels of the
    100 rows, which every path must reproduce: timing different models would compare nothing."""
    input_name, output_name = setup.manifest.input.input_name, setup.manifest.outputs.probabilities
    onnx = {n: session.run([output_name], {input_name: rows.astype(np.float32)})[0] for n, rows in setup.rows.items()}
    native = {n: setup.pipeline.predict_proba(rows) for n, rows in setup.rows.items()}
    parity = max(float(np.max(np.abs(onnx[n] - native[n]))) for n in setup.rows)
    labels = np.argmax(native[BATCH_ROWS], axis=1).tolist()
    if parity > 1e-4 or np.argmax(onnx[BATCH_ROWS], axis=1).tolist() != labels:
        raise RuntimeError(f"the refitted pipeline is not the published model (max |Δp| {parity:.1e})")
    return parity, labels


def measure_in_process(
    setup: Setup, session, events: dict[int, dict], expected_labels: list[int], budget: Budget
) -> tuple[dict[str, dict[int, Latency]], list[Profile]]:
    input_name, output_name = setup.manifest.input.input_name, setup.manifest.outputs.probabilities
    rows32 = {n: rows.astype(np.float32) for n, rows in setup.rows.items()}
    warm = {
        ONNX_PATH: {
            n: measure(lambda n=n: session.run([output_name], {input_name: rows32[n]}), iterations, budget.cap_s)
            for n, iterations in zip(setup.rows, budget.onnx)
        },
        SKLEARN_PATH: {},
        HANDLER_PATH: {},
    }
    handler = load_function_module("predict").lambda_handler
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # one EMF metrics line per call
        answer = handler(events[BATCH_ROWS], Context())
        if answer["statusCode"] != 200 or labels_of_body(json.loads(answer["body"])) != expected_labels:
            raise RuntimeError(f"in-process handler answered {answer['statusCode']}: {answer['body'][:500]}")
        for n, iterations in zip(setup.rows, budget.in_process):
            paths = {
                SKLEARN_PATH: lambda n=n: setup.pipeline.predict_proba(setup.rows[n]),
                HANDLER_PATH: lambda n=n: handler(events[n], Context()),
            }
            for path, latency in measure_in_turns(paths, iterations, budget.cap_s).items():
                warm[path][n] = latency
        profiles = [
            profile(
                f"breast-cancer handler, {n} row{'s' if n > 1 else ''}",
                lambda n=n: handler(events[n], Context()),
                calls,
            )
            for n, calls in zip(setup.rows, budget.in_process)
        ]
    return warm, profiles


def run(budget: Budget, quick: bool, markdown: Path | None) -> None:
    started_at, started, load = datetime.now(UTC), time.perf_counter(), os.getloadavg()[0]
    with contextlib.ExitStack() as cleanup:
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        progress("starting moto on 127.0.0.1…")
        moto = MotoServer(port=free_port()).start()
        cleanup.callback(moto.stop)
        client = s3_client(moto.url)
        client.create_bucket(Bucket=BUCKET)
        env_file = env_vars_file(workdir, moto.url, BUCKET)
        function_env = function_environment(env_file)
        os.environ.update(function_env)  # the in-process handler reads them at its first call

        progress("training breast-cancer (5-fold CV) and publishing it to moto S3…")
        setup = train_and_publish(client)
        model_file = workdir / "breast_cancer_pipeline.joblib"
        joblib.dump(setup.pipeline, model_file)
        # The serving class builds the session, so the options are serving's (1 intra-op thread, ORT_ENABLE_ALL).
        session = OnnxClassifier(setup.manifest, setup.candidate.onnx).session
        parity, expected_labels = check_same_model(setup, session)
        rows_as_lists = {n: rows.tolist() for n, rows in setup.rows.items()}
        event_template = json.loads(PREDICT_EVENT.read_text())
        events = {n: {**event_template, "body": json.dumps({"instances": rows})} for n, rows in rows_as_lists.items()}

        progress("warm, in-process: onnxruntime, scikit-learn, our handler…")
        warm, profiles = measure_in_process(setup, session, events, expected_labels, budget)

        progress(f"cold start: {budget.cold_starts} fresh processes each, ours and native…")
        event_file = workdir / "event.json"
        event_file.write_text(json.dumps(events[1]))
        cold = cold_starts(setup, model_file, event_file, function_env, workdir, budget.cold_starts)

        progress("warm, loopback HTTP: the Flask baseline and our API through the local runner, in turns…")
        with (
            flask_baseline(model_file, workdir / "flask.log") as flask_url,
            local_api(env_file, workdir / "local-runner.log", moto.url) as (ours_url, auth),
        ):
            endpoints = {
                FLASK_PATH: (f"{flask_url}/predict", "features", lambda answer: answer["predictions"], {}),
                OURS_HTTP_PATH: (f"{ours_url}/models/{MODEL_ID}/predict", "instances", labels_of_body, auth),
            }
            warm.update(measure_http(endpoints, rows_as_lists, expected_labels, budget))

        sizes = {"onnx": len(setup.candidate.onnx), "joblib": model_file.stat().st_size}
    elapsed = time.perf_counter() - started
    table = report(setup, warm, cold, parity, sizes, quick, started_at, load, elapsed, profiles)
    print_table(table, markdown)


def print_table(table: str, markdown: Path | None) -> None:
    """A bench's report on stdout, and in ``markdown`` when --markdown was given."""
    print()
    print(table, end="")
    if markdown is not None:
        markdown.write_text(table)
        progress(f"table written to {markdown}")


def interrupt(signum, frame) -> None:
    """SIGTERM unwinds like Ctrl-C, so every server and temp file is cleaned up either way."""
    raise KeyboardInterrupt


def bench_main(argv: list[str] | None, description: str, run_bench: Callable, default_budget, quick_budget) -> int:
    """Command line shared by the bench scripts: --quick, --markdown, clean stop on Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a short run: fewer iterations and cold starts")
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="also write the table to PATH")
    args = parser.parse_args(argv)
    os.environ.update({**LOCAL_CREDENTIALS, "SAM_CLI_TELEMETRY": "0"})
    signal.signal(signal.SIGTERM, interrupt)
    try:
        run_bench(quick_budget if args.quick else default_budget, args.quick, args.markdown)
    except KeyboardInterrupt:
        progress("interrupted; servers stopped")
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    return bench_main(argv, __doc__.splitlines()[0], run, DEFAULT_BUDGET, QUICK_BUDGET)


if __name__ == "__main__":
    sys.exit(main())
