"""What an explanation costs (domain/explanations.py), against a plain prediction in the same run.

For each model, on its known example (the image models: the example image of one class, decoded and
preprocessed by serving's code; the tabular models: Wisconsin row 0), timed in turns so drift on a
shared machine hits each path alike:

  - plain: ``OnnxClassifier.predict`` on the ready tensor (what a request without "explain" runs)
  - explained: ``predict`` then the explanation serving adds (images: the occlusion grid in one batched
    ONNX run and its PNG heatmap; tabular: one batched run of every feature's variant), per image or row
  - images, for the record: the same with an 8 x 8 grid (GRID is 6: 8 x 8 took chest-ct over 50 ms)
  - tabular, per row in a request of MAX_EXPLAINED_ROWS rows (the per-request limit)

then where an explained image's time goes (cProfile). The image models and breast-cancer-lite are
trained here in smoke mode on the synthetic data (the architecture, hence the cost, is the full
run's); breast-cancer trains in full (seconds). A benchmark, not a test: it prints a table and asserts
no timing. Research and education only - NOT FOR CLINICAL USE.

    .venv/bin/python -m scripts.bench_explanations [--quick] [--markdown PATH]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from med_classifier.domain import explanations
from med_classifier.domain.inference import OnnxClassifier
from med_classifier.domain.preprocessing import tensor_from_bytes
from scripts.bench import (
    Latency,
    Profile,
    bench_main,
    fmt_ratio,
    fmt_time,
    machine_line,
    measure_in_turns,
    print_table,
    profile,
    profile_tables,
    progress,
)

PLAIN = "plain"
EXPLAINED = "explained"
EXPLAINED_8 = "explained, 8 × 8 grid"
BATCH = "explained, per row of a full request"


@dataclass(frozen=True)
class Budget:
    iterations: int
    cap_s: float
    profile_calls: int


DEFAULT_BUDGET = Budget(iterations=200, cap_s=30.0, profile_calls=30)
QUICK_BUDGET = Budget(iterations=30, cap_s=5.0, profile_calls=5)


@dataclass(frozen=True)
class Row:
    model_id: str
    item: str  # what one explained item is
    variants: str  # inferences per explained item
    timings: dict  # path -> Latency (per item)


def explained_image(classifier: OnnxClassifier, batch: np.ndarray, grid: int = explanations.GRID):
    """What serving runs for an image with explain: the prediction, the occlusion grid, the PNG."""
    predictions, _ = classifier.predict(batch)
    classes = [p["class_index"] for p in predictions]
    grids = explanations.occlusion_grids(classifier, batch, classes, grid)
    return [explanations.heatmap_png(item) for item in grids]


def explained_rows(classifier: OnnxClassifier, matrix: np.ndarray):
    predictions, _ = classifier.predict(matrix)
    return explanations.feature_contributions(classifier, matrix, [p["class_index"] for p in predictions])


def bench_image(model_id: str, candidate, example: bytes, budget: Budget) -> tuple[Row, Profile]:
    from tests.helpers.models import manifest_for

    classifier = OnnxClassifier(manifest_for(candidate), candidate.onnx)
    batch = tensor_from_bytes(example, classifier.manifest.input)[None]
    timings = measure_in_turns(
        {
            PLAIN: lambda: classifier.predict(batch),
            EXPLAINED: lambda: explained_image(classifier, batch),
            EXPLAINED_8: lambda: explained_image(classifier, batch, grid=8),
        },
        budget.iterations,
        budget.cap_s,
    )
    spec = classifier.manifest.input
    grid = explanations.GRID
    row = Row(model_id, f"image ({spec.width}×{spec.height})", f"1 + {grid}² = {grid * grid + 1}", timings)
    return row, profile(
        f"{model_id}: one image explained", lambda: explained_image(classifier, batch), budget.profile_calls
    )


def bench_tabular(model_id: str, candidate, budget: Budget) -> Row:
    from tests.helpers.models import manifest_for

    classifier = OnnxClassifier(manifest_for(candidate), candidate.onnx)
    example = np.asarray([classifier.manifest.input.example], dtype=np.float32)
    full = np.repeat(example, explanations.MAX_EXPLAINED_ROWS, axis=0)
    timings = measure_in_turns(
        {
            PLAIN: lambda: classifier.predict(example),
            EXPLAINED: lambda: explained_rows(classifier, example),
            BATCH: lambda: explained_rows(classifier, full),
        },
        budget.iterations,
        budget.cap_s,
    )
    # The full request's figures per row.
    full_request = timings[BATCH]
    timings[BATCH] = Latency(full_request.samples_us / explanations.MAX_EXPLAINED_ROWS)
    n = classifier.manifest.input.n_features
    return Row(model_id, f"row ({n} features)", f"{n} + 1 (baseline)", timings)


def report(rows: list[Row], profiles: list[Profile], quick: bool, started: datetime, load: float, elapsed_s: float):
    lines = [
        f"Explanation cost, {'quick' if quick else 'default'} run of {started:%Y-%m-%d %H:%M} UTC "
        f"({elapsed_s:.0f} s; load average {load:.2f} at the start)",
        "",
        machine_line(("onnxruntime", "numpy", "Pillow")),
        "",
        "Median (p99) per explained image or row, one onnxruntime intra-op thread (serving's options); "
        "ratio: against the plain prediction in the same run.",
        "",
        "| model | item | inferences per item | plain predict | explained | ratio | 8 × 8 grid (images) "
        "/ per row of 100 (tabular) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        plain, explained = row.timings[PLAIN], row.timings[EXPLAINED]
        extra = row.timings.get(EXPLAINED_8) or row.timings[BATCH]
        lines.append(
            f"| {row.model_id} | {row.item} | {row.variants} | {fmt_time(plain.p50)} ({fmt_time(plain.p99)}) | "
            f"{fmt_time(explained.p50)} ({fmt_time(explained.p99)}) | {fmt_ratio(explained.p50 / plain.p50)} | "
            f"{fmt_time(extra.p50)} ({fmt_time(extra.p99)}) |"
        )
    lines += ["", *profile_tables(profiles), ""]
    return "\n".join(lines)


def run(budget: Budget, quick: bool, markdown: Path | None) -> None:
    from tests.helpers.keras_models import breast_cancer_lite_candidate, chest_ct_candidate
    from tests.helpers.models import breast_cancer_candidate
    from tests.helpers.skin_lesion import skin_lesion_candidate
    from training.datasets import chest_ct, ham10000

    started_at, started, load = datetime.now(UTC), time.perf_counter(), os.getloadavg()[0]
    rows, profiles = [], []
    with tempfile.TemporaryDirectory(prefix="bench-explanations-") as workdir:
        os.environ["LOCAL_STATE_DIR"] = str(Path(workdir) / "state")  # synthetic data + MLflow stay here
        for model_id, train, data, label in (
            ("skin-lesion", skin_lesion_candidate, ham10000, "mel"),
            ("chest-ct", chest_ct_candidate, chest_ct, "adenocarcinoma"),
        ):
            progress(f"{model_id}: training (smoke), then measuring…")
            row, profiled = bench_image(model_id, train(), data.example_image(label), budget)
            rows.append(row)
            profiles.append(profiled)
        progress("breast-cancer: training, then measuring…")
        rows.append(bench_tabular("breast-cancer", breast_cancer_candidate(), budget))
        progress("breast-cancer-lite: training (smoke), then measuring…")
        rows.append(bench_tabular("breast-cancer-lite", breast_cancer_lite_candidate(), budget))
    print_table(report(rows, profiles, quick, started_at, load, time.perf_counter() - started), markdown)


def main(argv: list[str] | None = None) -> int:
    return bench_main(argv, __doc__.splitlines()[0], run, DEFAULT_BUDGET, QUICK_BUDGET)


if __name__ == "__main__":
    sys.exit(main())
