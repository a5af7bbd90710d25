"""What drift capture costs a prediction (README, "Drift monitoring"): buffering a request's predictions
(CaptureBuffer.add without a write) and writing one batch (S3MonitoringStore.write_captures, one PutObject)
to a moto server started here. A benchmark, not a test: it prints a table and asserts no timing.
Research and education only - NOT FOR CLINICAL USE.

    .venv/bin/python -m scripts.bench_capture [--rows 20] [--repeats 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime

from med_classifier.adapters.capture_store import S3MonitoringStore
from med_classifier.domain.capture import CaptureBuffer, CapturePolicy, capture_records
from med_classifier.domain.serving import PredictionResult
from scripts.local_stack import MotoServer, aws_client, free_port
from scripts.replay_drift import drifted_rows

BUCKET = "bench-monitoring"


def quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20, help="predictions a request (and records a batch)")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    from sklearn.datasets import load_breast_cancer

    names = [str(n) for n in load_breast_cancer().feature_names]
    predictions = [{"label": "malignant", "in_distribution": True}] * args.rows
    inputs = [dict(zip(names, row)) for row in drifted_rows(args.rows)]
    result = PredictionResult("breast-cancer", "bench", predictions, 1.0, inputs=inputs)
    server = MotoServer(port=free_port()).start()
    try:
        s3 = aws_client("s3", server.url)
        s3.create_bucket(Bucket=BUCKET)
        store = S3MonitoringStore(BUCKET, s3)
        buffered = []
        for _ in range(args.repeats):
            never_due = CaptureBuffer(store, CapturePolicy(1.0, sys.maxsize, float("inf")))  # each add starts empty
            started = time.perf_counter()
            never_due.add("bench", result)
            buffered.append((time.perf_counter() - started) * 1e3)
        batch = capture_records(result, datetime.now(UTC), lambda: True)
        written = []
        for _ in range(max(1, args.repeats // 4)):
            started = time.perf_counter()
            store.write_captures("bench", batch, datetime.now(UTC))
            written.append((time.perf_counter() - started) * 1e3)
    finally:
        server.stop()
    print(f"| step ({args.rows} predictions) | median ms | p95 ms | runs |")
    print("| --- | --- | --- | --- |")
    for name, samples in (("buffer (sample + records)", buffered), ("write one batch (PutObject, moto)", written)):
        median, p95 = quantiles(samples)
        print(f"| {name} | {median:.3f} | {p95:.3f} | {len(samples)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
