"""Out-of-distribution flags, measured: for each model, the share of inputs it never saw that its
manifest's reference flags (detection rate), and the share of its own held-out test inputs it flags
(false-flag rate; the target is at most 5 %).

Each model is trained here (smoke schedules on the synthetic image sets unless --full; breast-cancer
always on its full schedule, a few seconds), its manifest built as the pipeline builds it (the
reference finished with the served model), and every input goes through the code serving runs:
the shared decoding and image statistics, the served probabilities, domain.ood. A measurement, not
a test: it prints a table. Research and education only - NOT FOR CLINICAL USE.

    PYTHONPATH=layers/shared/python:. .venv/bin/python -m scripts.measure_ood [--full] [--seed 42] [--markdown PATH]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from med_classifier.domain.inference import OnnxClassifier
from med_classifier.domain.manifest import Manifest, new_version
from med_classifier.domain.ood import assess, assess_summaries
from med_classifier.domain.preprocessing import decode_batch
from training.candidate import Candidate, TrainOptions
from training.gate import PromotionGate
from training.pipeline import build_manifest

IMAGES_PER_KIND = 20


@dataclass(frozen=True)
class Row:
    model: str
    inputs: str
    in_distribution: bool  # True: the model's own test inputs (flags are false flags)
    count: int
    flagged: int
    example: str  # the first flagged input's first reason

    @property
    def rate(self) -> float:
        return self.flagged / self.count if self.count else 0.0


@dataclass(frozen=True)
class Served:
    manifest: Manifest
    classifier: OnnxClassifier


def served(candidate: Candidate) -> Served:
    """The manifest the pipeline would publish (the gate does not matter here) and its classifier."""
    gate = PromotionGate(minimums={"test_accuracy": 0.0}).evaluate(candidate.metrics)
    manifest = build_manifest(candidate, new_version(), gate, "measure-ood", "none", None)
    return Served(manifest, OnnxClassifier(manifest, candidate.onnx))


def row(model: str, inputs: str, verdicts: list, in_distribution: bool = False) -> Row:
    flagged = [reasons for ok, reasons in verdicts if ok is False]
    return Row(model, inputs, in_distribution, len(verdicts), len(flagged), flagged[0][0] if flagged else "")


# --------------------------------------------------------------------------------- tabular


def tabular_verdicts(model: Served, rows: np.ndarray) -> list:
    matrix = np.asarray(rows, dtype=np.float32)
    names = model.manifest.input.feature_names
    return assess(model.manifest.ood, names, matrix, model.classifier.predict_proba(matrix))


def tabular_rows(model: Served, candidate: Candidate) -> list[Row]:
    """The model's test rows, then rows it never saw: -3e38 as the first feature (mean radius), each
    feature in turn at 10 x its training maximum, and at minus its maximum, and every feature at 10 x."""
    name = model.manifest.model_id
    test = np.asarray(candidate.ood["test"]["values"])
    high = np.asarray([f.high for f in model.manifest.ood.features])
    base = np.median(test, axis=0)

    def one_feature_at(values: np.ndarray) -> np.ndarray:
        rows = np.tile(base, (len(values), 1))
        rows[np.arange(len(values)), np.arange(len(values))] = values
        return rows

    absurd = base.copy()
    absurd[0] = -3e38
    return [
        row(name, "its test rows", tabular_verdicts(model, test), in_distribution=True),
        row(name, "-3e38 as mean radius", tabular_verdicts(model, absurd[None, :])),
        row(name, "one feature at 10 x its training max", tabular_verdicts(model, one_feature_at(10 * high))),
        row(name, "one feature at minus its training max", tabular_verdicts(model, one_feature_at(-high))),
        row(name, "every feature at 10 x its training max", tabular_verdicts(model, (10 * high)[None, :])),
    ]


# ---------------------------------------------------------------------------------- images


def image_verdicts(model: Served, images: list[bytes]) -> list:
    """Each image as serving takes it: decoded, its statistics, the served probabilities, domain.ood."""
    verdicts = []
    for data in images:
        batch, statistics = decode_batch([data], model.manifest.input)
        verdicts += assess_summaries(model.manifest.ood, statistics, model.classifier.predict_proba(batch))
    return verdicts


def png(pixels: np.ndarray, mode: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def converted(data: bytes, mode: str, alpha: int | None = None) -> bytes:
    """An image file in another colour mode (alpha: an RGBA copy with this alpha everywhere)."""
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    if alpha is not None:
        image = image.convert("RGBA")
        image.putalpha(alpha)
        return png(np.asarray(image), "RGBA")
    return png(np.asarray(image.convert(mode)), mode)


def mostly_transparent(data: bytes, share: float = 0.9) -> bytes:
    """An RGBA copy whose left `share` of columns is fully transparent."""
    from PIL import Image

    pixels = np.array(Image.open(io.BytesIO(data)).convert("RGBA"))
    pixels[:, : int(share * pixels.shape[1]), 3] = 0
    return png(pixels, "RGBA")


def synthetic_inputs(side: int, seed: int) -> dict[str, list[bytes]]:
    """Inputs no image model was trained on."""
    rng = np.random.default_rng(seed)
    n = IMAGES_PER_KIND
    return {
        "uniform noise, colour": [png(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), "RGB") for _ in range(n)],
        "uniform noise, gray": [png(rng.integers(0, 256, (side, side), dtype=np.uint8), "L") for _ in range(n)],
        "blank (one gray level)": [
            png(np.full((side, side), level, dtype=np.uint8), "L") for level in np.linspace(0, 255, n).astype(np.uint8)
        ],
        "blank (one colour)": [
            png(np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (side, side, 3)).copy(), "RGB")
            for _ in range(n)
        ],
    }


def image_rows(name: str, model: Served, own: list[bytes], other_name: str, other: list[bytes], seed: int) -> list[Row]:
    side = model.manifest.input.width
    rows = [
        row(name, "its test images", image_verdicts(model, own), in_distribution=True),
        row(name, f"{other_name} test images", image_verdicts(model, other)),
    ]
    rows += [row(name, kind, image_verdicts(model, images)) for kind, images in synthetic_inputs(side, seed).items()]
    rows.append(
        row(name, "its test images, fully transparent", image_verdicts(model, [converted(d, "RGBA", 0) for d in own]))
    )
    rows.append(
        row(name, "its test images, 90 % transparent", image_verdicts(model, [mostly_transparent(d) for d in own]))
    )
    if model.manifest.input.channels == 3:
        rows.append(row(name, "its test images in grayscale", image_verdicts(model, [converted(d, "L") for d in own])))
    return rows


def test_files(module, options: TrainOptions) -> list[bytes]:
    """The image files of a trainer's test split (the synthetic set it wrote, same seed and size)."""
    from training.datasets.common import split

    dataset = module.load_data(options)
    return [Path(dataset.paths[i]).read_bytes() for i in split(dataset, options.seed).test]


# ----------------------------------------------------------------------------------- main


def measure(full: bool, seed: int) -> tuple[list[Row], list[Manifest]]:
    from training import breast_cancer, breast_cancer_lite, chest_ct, skin_lesion

    smoke = TrainOptions(smoke=not full, seed=seed)
    rows: list[Row] = []
    manifests: list[Manifest] = []
    for module, options in ((breast_cancer, TrainOptions(seed=seed)), (breast_cancer_lite, smoke)):
        candidate = module.train(options)
        model = served(candidate)
        rows += tabular_rows(model, candidate)
        manifests.append(model.manifest)
    models = {module.MODEL_ID: (module, served(module.train(smoke))) for module in (chest_ct, skin_lesion)}
    files = {name: test_files(module, smoke) for name, (module, _) in models.items()}
    for name, (_, model) in models.items():
        other = next(n for n in models if n != name)
        rows += image_rows(name, model, files[name], other, files[other], seed)
        manifests.append(model.manifest)
    return rows, manifests


def references(manifests: list[Manifest]) -> str:
    """How each reference was chosen, and what the pipeline measured on the test split."""
    lines = ["| model | score threshold | test inputs flagged | how chosen |", "| --- | ---: | ---: | --- |"]
    for manifest in manifests:
        ood = manifest.ood
        threshold = f"{ood.score} < {ood.score_threshold:.4f}" if ood.score_threshold is not None else "none"
        lines.append(f"| {manifest.model_id} | {threshold} | {ood.false_flag_rate:.1%} | {ood.chosen_on} |")
    return "\n".join(lines)


def table(rows: list[Row]) -> str:
    lines = [
        "| model | inputs | n | flagged | rate | first reason |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        kind = f"**{r.inputs}** (false flags)" if r.in_distribution else r.inputs
        lines.append(f"| {r.model} | {kind} | {r.count} | {r.flagged} | {r.rate:.0%} | {r.example} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--full", action="store_true", help="default (not smoke) schedules for the image and lite models"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)  # training's progress
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="measure-ood-") as state:
        os.environ["LOCAL_STATE_DIR"] = state  # synthetic data sets and nothing else go here
        rows, manifests = measure(args.full, args.seed)
    text = table(rows) + "\n\n" + references(manifests)
    print(text)
    print(
        f"\n{'default' if args.full else 'smoke'} schedules, seed {args.seed}; {time.perf_counter() - started:.0f} s. "
        "NOT FOR CLINICAL USE."
    )
    if args.markdown:
        args.markdown.write_text(text + "\n")
    worst = max((r.rate for r in rows if r.in_distribution), default=0.0)
    return 0 if worst <= 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
