"""`python -m scripts.bench_concurrency`: our API through the local runner under concurrent clients, with 1 and more
warm workers per function.

16 client threads, each with its own ``requests.Session``, send requests back to back against the runner started
as ``make run`` starts it (``python -m scripts.local_runner start-api``, a process of its own), for two workloads:

  - tabular: POST /models/breast-cancer/predict, the public malignant example (1 row, JSON)
  - image:   POST /models/skin-lesion/predict, events/images/skin-lesion-mel.png (image/png)

once per N, the most workers a function may run at once, set as on AWS by the functions' reserved concurrency
(``PredictReservedConcurrency`` / ``ImagePredictReservedConcurrency`` = N, parameter overrides). Workers start on
demand: a warm-up burst of the same 16 clients lets the runner scale out before the measured run. Reported per
workload and N: requests per second, p50 and p99 latency, and the worker processes of the function at the end.
For reference, the same clients against the Flask + scikit-learn baseline (scripts/flask_baseline.py, werkzeug's
threaded server, one process) on the tabular workload.

The clients and the runner share the machine's cores: on a 2-core machine the 16 client threads (one process, one
GIL) take a large share of the CPU the workers could use. A benchmark, not a test: it prints a table and asserts no
timing. Dummy AWS credentials; models in a moto server on 127.0.0.1. Research and education only - NOT FOR CLINICAL
USE.

    .venv/bin/python -m scripts.bench_concurrency [--quick] [--markdown PATH]
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import joblib
import numpy as np
import requests

from med_classifier.adapters.model_store import ModelStore
from scripts.bench import (
    BUCKET,
    JSON_HEADERS,
    MODEL_ID,
    Setup,
    bench_main,
    env_vars_file,
    flask_baseline,
    fmt_time,
    machine_line,
    print_table,
    progress,
    signed_in,
    tail,
    train_and_publish,
    wait_until_up,
)
from scripts.local_stack import MotoServer, free_port, s3_client
from tests.helpers.models import publish
from tests.helpers.skin_lesion import skin_lesion_candidate

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGE = REPO_ROOT / "events" / "images" / "skin-lesion-mel.png"
IMAGE_MODEL_ID = "skin-lesion"
CLIENTS = 16
# Function -> (its template parameter for reserved concurrency, its code folder: how its workers are counted).
FUNCTIONS = {
    "tabular": ("PredictReservedConcurrency", "functions/predict"),
    "image": ("ImagePredictReservedConcurrency", "functions/image_predict"),
}


@dataclass(frozen=True)
class Budget:
    """Requests per client in the measured run (tabular, image) and in the warm-up burst."""

    tabular: int
    image: int
    warm_up: int


DEFAULT_BUDGET = Budget(tabular=150, image=25, warm_up=4)
QUICK_BUDGET = Budget(tabular=40, image=8, warm_up=2)


@dataclass(frozen=True)
class Workload:
    name: str
    url_path: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Result:
    workload: str
    workers_per_function: int | None  # None: the Flask baseline
    requests: int
    seconds: float
    latencies_us: np.ndarray
    workers_started: int | None

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds


def worker_counts(parameter_values: list[int]) -> list[int]:
    """N = 1, the number of cores, and 4: each once, in order."""
    return sorted({1, os.cpu_count() or 1, *parameter_values})


# --- the runner, as `make run` starts it -----------------------------------------------------------


@contextlib.contextmanager
def runner(
    env_file: Path, workers: int, log: Path, user_pool_id: str, moto_url: str
) -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    overrides = [f"{parameter}={workers}" for parameter, _ in FUNCTIONS.values()]
    command = [
        sys.executable,
        "-m",
        "scripts.local_runner",
        "start-api",
        "--template",
        str(REPO_ROOT / "template.yaml"),
        "--env-vars",
        str(env_file),
        "--port",
        str(port),
        "--user-pool-id",
        user_pool_id,
        "--cognito-endpoint",
        moto_url,
        "--parameter-overrides",
        *overrides,
    ]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(f"{url}/health", process, log, timeout=120.0)
        yield url, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def workers_of(process: subprocess.Popen, code_folder: str) -> int:
    """The runner's worker processes serving the function whose code is in ``code_folder``."""
    tasks = Path(f"/proc/{process.pid}/task").iterdir()  # a worker is the child of the thread that started it
    children = [child for task in tasks for child in (task / "children").read_text().split()]
    count = 0
    for child in children:
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            if b"--path" in command and str(REPO_ROOT / code_folder).encode() in command:
                count += 1
    return count


# --- the clients -----------------------------------------------------------------------------------


def run_clients(url: str, workload: Workload, requests_per_client: int) -> tuple[float, list[float]]:
    """CLIENTS threads send ``requests_per_client`` requests each, starting together: (seconds, latencies in s)."""
    start = threading.Barrier(CLIENTS + 1)
    latencies: list[list[float]] = [[] for _ in range(CLIENTS)]
    failures: list[str] = []

    def client(index: int) -> None:
        with requests.Session() as session:
            start.wait()
            for _ in range(requests_per_client):
                began = time.perf_counter()
                response = session.post(url + workload.url_path, data=workload.body, headers=workload.headers)
                latencies[index].append(time.perf_counter() - began)
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:300]}")

    threads = [threading.Thread(target=client, args=(index,), daemon=True) for index in range(CLIENTS)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    if failures:
        raise RuntimeError(f"{workload.name}: {len(failures)} requests failed, e.g. {failures[0]}")
    return seconds, [latency for per_client in latencies for latency in per_client]


def measure(url: str, process, workload: Workload, workers: int | None, per_client: int, budget: Budget) -> Result:
    """``workers`` None: the Flask baseline (``process`` unused)."""
    run_clients(url, workload, budget.warm_up)  # lets the function scale out to N workers, warms them
    seconds, latencies = run_clients(url, workload, per_client)
    return Result(
        workload=workload.name,
        workers_per_function=workers,
        requests=len(latencies),
        seconds=seconds,
        latencies_us=np.asarray(latencies) * 1e6,
        workers_started=workers_of(process, FUNCTIONS[workload.name][1]) if workers else None,
    )


# --- report ----------------------------------------------------------------------------------------


def report(results: list[Result], quick: bool, started: datetime, load: float, elapsed_s: float) -> str:
    lines = [
        "## Concurrency: our API through the local runner, 16 clients (NOT FOR CLINICAL USE)",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC{' (--quick run)' if quick else ''}; whole run {elapsed_s:.0f} s; "
        f"load average {load:.2f} at the start (anything else running skews the numbers)",
        f"- Machine: {machine_line()}",
        f"- {CLIENTS} client threads (one process), each with its own `requests.Session` (werkzeug closes every "
        "connection, so each request opens one), requests back to back; N = reserved concurrency of PredictFunction "
        "and ImagePredictFunction (parameter overrides); tabular = 1 row of breast-cancer (JSON), image = "
        "skin-lesion PNG (smoke-trained model); Flask = scripts/flask_baseline.py (threaded, one process)",
        "",
        "| server | workload | N (workers per function) | requests | req/s | p50 | p99 | workers at the end |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        server = "Flask + scikit-learn" if result.workers_per_function is None else "local runner"
        lines.append(
            f"| {server} | {result.workload} | {result.workers_per_function or '—'} | {result.requests} "
            f"| {result.throughput:.0f} | {fmt_time(float(np.percentile(result.latencies_us, 50)))} "
            f"| {fmt_time(float(np.percentile(result.latencies_us, 99)))} | {result.workers_started or '—'} |"
        )
    return "\n".join(lines) + "\n"


# --- the run ---------------------------------------------------------------------------------------


def workloads(auth: dict[str, str]) -> list[Workload]:
    """What the clients send to our API, signed in with `auth` (its routes need a signed-in caller)."""
    row = json.loads((REPO_ROOT / "events" / "api-predict-breast-cancer.json").read_text())["body"]
    image_headers = {"Content-Type": "image/png", **auth}
    return [
        Workload("tabular", f"/models/{MODEL_ID}/predict", row.encode(), {**JSON_HEADERS, **auth}),
        Workload("image", f"/models/{IMAGE_MODEL_ID}/predict", IMAGE.read_bytes(), image_headers),
    ]


def publish_models(workdir: Path, moto_url: str) -> tuple[Path, Setup]:
    client = s3_client(moto_url)
    client.create_bucket(Bucket=BUCKET)
    progress("training breast-cancer and smoke-training skin-lesion, publishing both to moto S3…")
    setup = train_and_publish(client)
    publish(ModelStore(BUCKET, client), skin_lesion_candidate())
    return env_vars_file(workdir, moto_url, BUCKET, POWERTOOLS_LOG_LEVEL="WARNING"), setup


def flask_reference(setup: Setup, workdir: Path, budget: Budget) -> Result:
    """The tabular workload against the Flask + scikit-learn baseline, the same clients."""
    model_file = workdir / "breast_cancer_pipeline.joblib"
    joblib.dump(setup.pipeline, model_file)
    row = json.loads(workloads({})[0].body)["instances"]
    workload = Workload("tabular", "/predict", json.dumps({"features": row}).encode(), JSON_HEADERS)
    progress(f"Flask baseline: tabular, {CLIENTS} clients × {budget.tabular} requests…")
    with flask_baseline(model_file, workdir / "flask.log") as url:
        return measure(url, None, workload, None, budget.tabular, budget)


def run(budget: Budget, quick: bool, markdown: Path | None) -> None:
    started_at, started, load = datetime.now(UTC), time.perf_counter(), os.getloadavg()[0]
    results = []
    with contextlib.ExitStack() as cleanup:
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bench-concurrency-")))
        progress("starting moto on 127.0.0.1…")
        moto = MotoServer(port=free_port()).start()
        cleanup.callback(moto.stop)
        env_file, setup = publish_models(workdir, moto.url)
        pool, auth = signed_in(moto.url)
        results.append(flask_reference(setup, workdir, budget))
        for workers in worker_counts([4]):
            progress(f"N = {workers}: starting the local runner…")
            log = workdir / f"runner-{workers}.log"
            try:
                with runner(env_file, workers, log, pool.pool_id, moto.url) as (url, process):
                    for workload in workloads(auth):
                        per_client = budget.tabular if workload.name == "tabular" else budget.image
                        progress(f"N = {workers}: {workload.name}, {CLIENTS} clients × {per_client} requests…")
                        results.append(measure(url, process, workload, workers, per_client, budget))
            except Exception as error:
                raise RuntimeError(f"local runner (N = {workers}): {error}\n--- its log ---\n{tail(log)}") from error
    table = report(results, quick, started_at, load, time.perf_counter() - started)
    print_table(table, markdown)


def main(argv: list[str] | None = None) -> int:
    return bench_main(argv, __doc__.splitlines()[0], run, DEFAULT_BUDGET, QUICK_BUDGET)


if __name__ == "__main__":
    sys.exit(main())
