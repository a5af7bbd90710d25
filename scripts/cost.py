"""`python -m scripts.cost`: the monthly cost of 1 M predictions per model, and of one retraining job, at AWS's prices.

Per model, from template.yaml (read, not copied): the function serving it and its MemorySize, the pointer refresh
(PointerRefreshSeconds), the training instance and TrainingMaxRuntimeSeconds. Measured here: each model's warm
handler, in this process (API Gateway event in, response out; the model smoke-trained and published to a moto
server, as `make bench` does), and the log bytes it writes per request. The rest are the assumptions and prices
below, each with its source. Prints a markdown table (README "What it costs").
NOT FOR CLINICAL USE.

    .venv/bin/python -m scripts.cost [--quick] [--markdown PATH]
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from scripts.local_resources import load_template

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "template.yaml"
PREDICT_EVENT = REPO_ROOT / "events" / "api-predict-breast-cancer.json"
BUCKET = "med-classifier-models-cost"
MODELS = ("breast-cancer", "breast-cancer-lite", "skin-lesion", "chest-ct")


# --- prices: us-east-1, x86, on demand, without free tiers; checked on PRICES_CHECKED ------------------------


@dataclass(frozen=True)
class Price:
    usd: float  # per unit of the arithmetic below
    label: str  # as the price page states it
    source: str


PRICES_CHECKED = "2026-12-01"
LAMBDA_GB_SECOND = Price(0.0000166667, "$0.0000166667 per GB-second (x86)", "https://aws.amazon.com/lambda/pricing/")
LAMBDA_REQUEST = Price(0.20 / 1e6, "$0.20 per 1 M requests", "https://aws.amazon.com/lambda/pricing/")
API_REQUEST = Price(
    3.50 / 1e6,
    "$3.50 per 1 M REST API requests (the first 333 M a month)",
    "https://aws.amazon.com/api-gateway/pricing/",
)
S3_GET = Price(0.0004 / 1000, "$0.0004 per 1,000 GET requests (S3 Standard)", "https://aws.amazon.com/s3/pricing/")
LOG_GB = Price(0.50, "$0.50 per GB of logs ingested", "https://aws.amazon.com/cloudwatch/pricing/")
TRACE = Price(5.00 / 1e6, "$5.00 per 1 M X-Ray traces recorded", "https://aws.amazon.com/xray/pricing/")
TRAINING_HOUR = {
    "ml.m5.xlarge": Price(
        0.23, "$0.23 per hour of an ml.m5.xlarge training instance", "https://aws.amazon.com/sagemaker/pricing/"
    ),
}
# SnapStart for Python: each published version's snapshot is cached (billed per GB of memory and second,
# while the version is active) and each restore billed per GB of memory. Third-party price listings.
SNAPSTART_CACHE = Price(
    0.0000015046, "$0.0000015046 per GB-second of SnapStart cache", "https://aws.amazon.com/lambda/pricing/"
)
SNAPSTART_RESTORE = Price(0.0001397998, "$0.0001397998 per GB restored", "https://aws.amazon.com/lambda/pricing/")
MONTH_S = 30 * 24 * 3600
PRICES = (
    LAMBDA_GB_SECOND,
    LAMBDA_REQUEST,
    API_REQUEST,
    S3_GET,
    LOG_GB,
    TRACE,
    SNAPSTART_CACHE,
    SNAPSTART_RESTORE,
    *TRAINING_HOUR.values(),
)


# --- assumptions ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assumptions:
    requests: int = 1_000_000
    month_s: int = 30 * 24 * 3600
    # Share of requests that meet a cold start (a new instance: bursts, Lambda recycling instances). Steady
    # traffic of 1 M a month (0.4/s) keeps one instance warm and has far fewer; 1 % is a pessimistic round figure.
    cold_share: float = 0.01
    warm_instances: int = 1  # instances re-reading production.json all month
    cold_start_gets: int = 3  # a new instance reads production.json, manifest.json, model.onnx
    # Lambda's START, END and REPORT lines per invocation (text format, with the request id).
    platform_log_bytes: int = 250


# Fresh process -> first response (imports, S3 reads, ONNX session, predict), median of 5: README "Benchmark and
# sizes", make bench on 2026-12-01 08:12-08:13 UTC (breast-cancer; the larger of skin-lesion and chest-ct). Lambda
# bills the init phase too.
COLD_START_S = {"PredictFunction": 0.533, "ImagePredictFunction": 0.568}
# Lambda gives a function CPU in proportion to its memory, one vCPU at 1,769 MB; below that a CPU-bound handler
# (one thread) takes longer than on a full core here.
LAMBDA_VCPU_MB = 1769
# A retraining job's full schedule (not smoke) on the synthetic data, timed here on 2026-12-01 11:57-12:09 UTC
# (`python -m training <model> --no-publish`, 2 cores, load average 1 to 2; an ml.m5.xlarge has 4 vCPUs, 2 cores).
# SageMaker's start (pulling the image) is not in them.
TRAINING_JOB_S = {"chest-ct": 138.0, "skin-lesion": 536.0}
# API Gateway's access log line (the template's Format) with values of typical length.
ACCESS_LOG_VALUES = {
    "requestId": "0f6e5a9b-7c2d-4e1f-9a3b-5c6d7e8f9a0b",
    "extendedRequestId": "Ab1Cd2Ef3Gh4Ij5=",
    "identity.sourceIp": "203.0.113.42",
    "authorizer.claims.sub": "9d8c7b6a-5f4e-3d2c-1b0a-9f8e7d6c5b4a",
    "httpMethod": "POST",
    "resourcePath": "/models/{model}/predict",
    "path": "/models/breast-cancer/predict",
    "protocol": "HTTP/1.1",
    "status": "200",
    "responseLength": "412",
    "requestTime": "01/Dec/2026:08:12:00 +0000",
    "requestTimeEpoch": "1795939920000",
    "integrationLatency": "12",
    "responseLatency": "15",
    "integrationStatus": "200",
    "error.responseType": "-",
    "waf.status": "-",
}


# --- what the template says --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Serving:
    function: str
    memory_mb: int


def serving(template: dict, model: str) -> Serving:
    """The function whose POST route serves `model` (a literal route wins over {model}, as in API Gateway)."""
    routes = {}
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for event in resource["Properties"].get("Events", {}).values():
            if event["Type"] == "Api" and event["Properties"]["Method"].upper() == "POST":
                routes[event["Properties"]["Path"]] = name
    function = routes.get(f"/models/{model}/predict") or routes["/models/{model}/predict"]
    memory = template["Resources"][function]["Properties"].get("MemorySize")
    return Serving(function, int(memory or template["Globals"]["Function"]["MemorySize"]))


def snapstart_functions(template: dict) -> dict[str, int]:
    """{function: MemorySize} of the functions that publish SnapStart versions."""
    default = int(template["Globals"]["Function"]["MemorySize"])
    return {
        name: int(resource["Properties"].get("MemorySize", default))
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function" and "SnapStart" in resource["Properties"]
    }


def snapstart_month(memory_mb: int, restores: float) -> tuple[float, float]:
    """(the snapshot of one version cached all month, `restores` restores) in USD."""
    gb = memory_mb / 1024
    return gb * MONTH_S * SNAPSTART_CACHE.usd, gb * restores * SNAPSTART_RESTORE.usd


def parameter(template: dict, name: str):
    return template["Parameters"][name]["Default"]


def access_log_line(template: dict) -> str:
    """The API's access log line for one request: the template's Format with values of typical length."""
    stage = next(r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::Api")
    log_format = stage["Properties"]["AccessLogSetting"]["Format"]
    return re.sub(r"\$context\.([\w.]+)", lambda variable: ACCESS_LOG_VALUES[variable[1]], log_format)


# --- arithmetic ---------------------------------------------------------------------------------------------------


def billed_ms(duration_ms: float) -> int:
    """Lambda bills duration rounded up to the next 1 ms."""
    return math.ceil(duration_ms)


def lambda_ms(here_ms: float, memory_mb: int) -> float:
    """A duration measured on a full core here, as a function of `memory_mb` would take it."""
    return here_ms * max(1.0, LAMBDA_VCPU_MB / memory_mb)


def gb_seconds(invocations: float, billed: float, memory_mb: int) -> float:
    return invocations * billed / 1000 * memory_mb / 1024


def traced_share(rate_per_s: float) -> float:
    """X-Ray's default sampling (the first request each second, then 5 % of the rest) at a steady Poisson rate."""
    first = 1 - math.exp(-rate_per_s)
    return (first + 0.05 * (rate_per_s - first)) / rate_per_s


@dataclass(frozen=True)
class Measured:
    samples_ms: tuple[float, ...]  # warm handler durations here
    log_bytes: int  # what the handler writes to stdout (CloudWatch Logs) per request


@dataclass(frozen=True)
class Costs:
    billed_ms: float  # mean billed duration of a warm request on Lambda
    lambda_warm: float
    lambda_cold: float
    lambda_requests: float
    api: float
    s3: float
    logs: float
    traces: float

    @property
    def total(self) -> float:
        return sum(
            (self.lambda_warm, self.lambda_cold, self.lambda_requests, self.api, self.s3, self.logs, self.traces)
        )


def monthly(measured: Measured, fn: Serving, refresh_s: float, access_log: int, a: Assumptions) -> Costs:
    billed = statistics.fmean(billed_ms(lambda_ms(ms, fn.memory_mb)) for ms in measured.samples_ms)
    cold_starts = a.requests * a.cold_share
    cold_billed = billed_ms(COLD_START_S[fn.function] * 1000)
    # At most one pointer read per instance per PointerRefreshSeconds, and only on a request.
    pointer_reads = a.requests if refresh_s == 0 else min(a.requests, a.warm_instances * a.month_s / refresh_s)
    log_bytes = a.requests * (measured.log_bytes + a.platform_log_bytes + access_log)
    return Costs(
        billed_ms=billed,
        lambda_warm=gb_seconds(a.requests, billed, fn.memory_mb) * LAMBDA_GB_SECOND.usd,
        lambda_cold=gb_seconds(cold_starts, cold_billed, fn.memory_mb) * LAMBDA_GB_SECOND.usd,
        lambda_requests=a.requests * LAMBDA_REQUEST.usd,
        api=a.requests * API_REQUEST.usd,
        s3=(pointer_reads + cold_starts * a.cold_start_gets) * S3_GET.usd,
        logs=log_bytes / 1e9 * LOG_GB.usd,
        traces=a.requests * traced_share(a.requests / a.month_s) * TRACE.usd,
    )


def training_job(seconds: float, instance_type: str) -> float:
    return seconds / 3600 * TRAINING_HOUR[instance_type].usd


# --- measuring -----------------------------------------------------------------------------------------------------


def tabular_event(model: str, row: list[float]) -> dict:
    event = json.loads(PREDICT_EVENT.read_text())
    event.update(
        {
            "body": json.dumps({"instances": [row]}),
            "path": f"/models/{model}/predict",
            "pathParameters": {"model": model},
        }
    )
    return event


def measure_handler(handler: Callable, event: dict, context, iterations: int) -> Measured:
    """Warm durations of one model's handler, and the bytes a warm request writes to stdout: Powertools' EMF
    metrics line (its Logger logs nothing on a warm success)."""
    from scripts.bench import measure

    with contextlib.redirect_stdout(io.StringIO()):
        answer = handler(event, context)  # the cold call: loads the model
    if answer["statusCode"] != 200:
        raise RuntimeError(f"{event['path']}: {answer['statusCode']} {answer['body'][:300]}")
    with contextlib.redirect_stdout(io.StringIO()) as warm:
        handler(event, context)
    with contextlib.redirect_stdout(io.StringIO()):
        latency = measure(lambda: handler(event, context), iterations, cap_s=30.0)
    return Measured(tuple(latency.samples_us / 1000), len(warm.getvalue().encode()))


def measure_models(iterations: int, workdir: Path) -> dict[str, Measured]:
    # The benches' and the tests' helpers import the training frameworks: only a measuring run needs them.
    from med_classifier.adapters.model_store import ModelStore
    from scripts.bench import env_vars_file, function_environment, progress
    from scripts.bench_images import image_event, limit_native_threads
    from scripts.local_stack import MotoServer, free_port, s3_client
    from tests.helpers.keras_models import breast_cancer_lite_candidate, chest_ct_candidate
    from tests.helpers.models import (
        MALIGNANT_EXAMPLE,
        LambdaContext,
        breast_cancer_candidate,
        load_function_module,
        publish,
    )
    from tests.helpers.skin_lesion import skin_lesion_candidate
    from training.datasets import chest_ct, ham10000

    limit_native_threads()  # as make bench does: its and these handler times compare
    moto = MotoServer(port=free_port()).start()
    try:
        client = s3_client(moto.url)
        client.create_bucket(Bucket=BUCKET)
        store = ModelStore(BUCKET, client)
        env_file = env_vars_file(workdir, moto.url, BUCKET)
        progress("training (smoke) and publishing the four models to moto…")
        lite = breast_cancer_lite_candidate()
        for candidate in (breast_cancer_candidate(), lite, skin_lesion_candidate(), chest_ct_candidate()):
            publish(store, candidate)
        events = {
            "breast-cancer": tabular_event("breast-cancer", list(MALIGNANT_EXAMPLE)),
            "breast-cancer-lite": tabular_event("breast-cancer-lite", list(lite.input_spec["example"])),
            "skin-lesion": image_event("skin-lesion", ham10000.example_image(ham10000.CLASSES[-1])),
            "chest-ct": image_event("chest-ct", chest_ct.example_image(chest_ct.CLASSES[-1])),
        }
        template, handlers, measured = load_template(TEMPLATE), {}, {}
        for model in MODELS:  # a function's models one after the other: its settings are read at its first call
            fn = serving(template, model)
            if fn.function not in handlers:
                os.environ.update(function_environment(env_file, fn.function))
                folder = Path(template["Resources"][fn.function]["Properties"]["CodeUri"]).name
                handlers[fn.function] = load_function_module(folder).lambda_handler
            progress(f"{model}: timing the warm handler of {fn.function}…")
            context = LambdaContext(fn.function, fn.memory_mb)
            measured[model] = measure_handler(handlers[fn.function], events[model], context, iterations)
        return measured
    finally:
        moto.stop()


# --- the report ------------------------------------------------------------------------------------------------------


def usd(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.995 else f"${value:.3f}"


def report(template: dict, measured: dict[str, Measured], a: Assumptions, started: datetime, load: float) -> str:
    from scripts.bench import machine_line

    refresh_s = float(parameter(template, "PointerRefreshSeconds"))
    access_log = len(access_log_line(template).encode())
    lines = [
        f"Monthly cost of {a.requests:,} predictions of one model (us-east-1, x86, on-demand prices checked "
        f"{PRICES_CHECKED}, no free tier); handlers timed {started:%Y-%m-%d %H:%M} UTC, load average {load:.2f}:",
        "",
        "| model | function, memory | warm handler here (median) | billed per warm request | Lambda duration "
        f"| Lambda cold starts ({a.cold_share:.0%}) | Lambda requests | API Gateway | S3 reads | CloudWatch Logs "
        "| X-Ray | total |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model in MODELS:
        fn = serving(template, model)
        costs = monthly(measured[model], fn, refresh_s, access_log, a)
        here = statistics.median(measured[model].samples_ms)
        lines.append(
            f"| `{model}` | `{fn.function}`, {fn.memory_mb} MB | {here:.2f} ms "
            f"| {costs.billed_ms:.2f} ms | {usd(costs.lambda_warm)} | {usd(costs.lambda_cold)} "
            f"| {usd(costs.lambda_requests)} | {usd(costs.api)} | {usd(costs.s3)} | {usd(costs.logs)} "
            f"| {usd(costs.traces)} | **{usd(costs.total)}** |"
        )
    instance = parameter(template, "TrainingInstanceType")
    bound_s = float(parameter(template, "TrainingMaxRuntimeSeconds"))
    lines += [
        "",
        f"| one retraining job ({instance}, {usd(TRAINING_HOUR[instance].usd)} an hour) | instance time | cost |",
        "| --- | ---: | ---: |",
        *(
            f"| `{model}`, full schedule on the synthetic data (timed here) "
            f"| {seconds / 60:.1f} min | {usd(training_job(seconds, instance))} |"
            for model, seconds in TRAINING_JOB_S.items()
        ),
        f"| at most: TrainingMaxRuntimeSeconds | {bound_s / 3600:.1f} h | {usd(training_job(bound_s, instance))} |",
        "",
        "SnapStart, per stack and month, whatever the traffic: each function's live version cached all month "
        "(a deploy adds the previous version's until Lambda drops its snapshot), and its restores "
        f"(with SnapStart, the table's {a.cold_share:.0%} cold starts are restores):",
        "",
        "| function, memory | live version's snapshot cached a month | 10,000 restores |",
        "| --- | ---: | ---: |",
        *(
            f"| `{name}`, {memory} MB | {usd(snapstart_month(memory, 0)[0])} | "
            f"{usd(snapstart_month(memory, 10_000)[1])} |"
            for name, memory in snapstart_functions(template).items()
        ),
        "",
        "Prices: " + "; ".join(f"{p.label} ({p.source})" for p in PRICES) + ".",
        "",
        f"Machine: {machine_line(('onnxruntime', 'numpy', 'aws-lambda-powertools'))}",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Budget:
    iterations: int


def run(budget: Budget, quick: bool, markdown: Path | None) -> None:
    from scripts.bench import print_table

    started, load = datetime.now(UTC), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="cost-") as workdir:
        os.environ["LOCAL_STATE_DIR"] = str(Path(workdir) / "state")  # synthetic data + MLflow stay in the temp dir
        measured = measure_models(budget.iterations, Path(workdir))
    print_table(report(load_template(TEMPLATE), measured, Assumptions(), started, load), markdown)


def main(argv: list[str] | None = None) -> int:
    from scripts.bench import bench_main

    return bench_main(argv, __doc__.splitlines()[0], run, Budget(iterations=500), Budget(iterations=50))


if __name__ == "__main__":
    sys.exit(main())
