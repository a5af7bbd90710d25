"""python -m training.retrain [train] — the retraining job (SageMaker training job or
AWS Batch, same image; see training/job_contract.py). NOT FOR CLINICAL USE.

Fine-tunes the production version's native weights (verified against its manifest) with
the trainer's fine-tuning schedule, on the model's data set (channel `original`, else the
deterministic synthetic set) plus the labelled uploads (channel `uploads`, <label>/<file>),
built by the same preprocessing; without production weights (nothing in production, a
version published before they were kept, other classes or input, or fine_tune=false) it
trains from scratch, and says so in its log. Then the shared pipeline: parity, INT8, the
promotion gate, and a comparison with the production version on the same test tensors.
Publishes only a candidate that passes both. Writes model/outcome.json (and the published
model.onnx + manifest.json) and records the outcome, with the per-metric deltas against
production, in the jobs table. Exit 0 when the job decided (promoted or rejected), 1 when
it failed (output/failure says why; nothing is half-published).

Hyperparameters (strings, as SageMaker passes them): model (required), models_bucket
(required), job_id, jobs_table, smoke (tests: a smaller data set and fewer epochs), seed,
epochs, batch_size, quantize, fine_tune, max_regression, gate_min_<metric>, gate_max_<metric>.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from med_classifier.adapters.aws_clients import aws_client
from med_classifier.adapters.jobs_table import JobsTable
from med_classifier.adapters.model_store import ModelStore
from med_classifier.domain.jobs import FAILED, IN_PROGRESS, PROMOTED, REJECTED, public_failure
from training.gate import PromotionGate
from training.job_contract import JobPaths, stage_from_environment
from training.settings import training_settings

log = logging.getLogger("training")

UPLOAD_SUFFIXES = {".jpg", ".jpeg", ".png"}


@dataclass(frozen=True)
class JobSettings:
    model: str
    models_bucket: str
    gate: PromotionGate
    job_id: str | None = None
    jobs_table: str | None = None
    smoke: bool = False
    seed: int = 42
    epochs: int | None = None
    batch_size: int | None = None
    quantize: bool = True
    max_regression: float = 0.0  # how far below production a metric with a gate minimum may fall
    fine_tune: bool = True  # from production's native weights when it has them; false: from scratch


@dataclass(frozen=True)
class StartingPoint:
    """What the job fine-tunes: a production version's native weights, verified and on disk."""

    version: str
    weights: Path


@dataclass(frozen=True)
class Uploads:
    images: tuple[tuple[Path, str], ...]  # (file, class name), sorted: training is reproducible
    skipped: int


def _bool(name: str, text: str) -> bool:
    if text.strip().lower() not in ("true", "false"):
        raise ValueError(f"hyperparameter {name}={text!r}: expected true or false")
    return text.strip().lower() == "true"


def _number(kind: type, minimum: float):
    def parse(name: str, text: str):
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"hyperparameter {name}={text!r}: expected {kind.__name__}") from None
        if not math.isfinite(value) or value < minimum:
            raise ValueError(f"hyperparameter {name}={text!r}: expected a finite number >= {minimum}")
        return value

    return parse


# Optional hyperparameters -> parser; absent ones keep JobSettings' defaults.
_OPTIONAL = {
    "job_id": lambda name, text: text,
    "jobs_table": lambda name, text: text,
    "smoke": _bool,
    "seed": _number(int, 0),
    "epochs": _number(int, 1),
    "batch_size": _number(int, 1),
    "quantize": _bool,
    "max_regression": _number(float, 0.0),
    "fine_tune": _bool,
}
_REQUIRED = ("model", "models_bucket")
_GATE_PREFIXES = ("gate_min_", "gate_max_")


def tightened_gate(default: PromotionGate, hyperparameters: Mapping[str, str]) -> PromotionGate:
    """The model's gate, with gate_min_<metric> / gate_max_<metric> applied only where
    they are stricter: a job can raise the bar, never lower it (looser values are
    ignored, with a warning). A metric the gate does not bound yet is added."""
    minimums, maximums = dict(default.minimums), dict(default.maximums)
    for key, text in hyperparameters.items():
        if not key.startswith(_GATE_PREFIXES):
            continue
        bounds, stricter = (minimums, max) if key.startswith("gate_min_") else (maximums, min)
        metric, value = key.split("_", 2)[2], _number(float, -math.inf)(key, text)
        kept = stricter(bounds.get(metric, value), value)
        if kept != value:
            log.warning("ignoring %s=%s: looser than the model's gate (%s)", key, text, kept)
        bounds[metric] = kept
    return PromotionGate(minimums=minimums, maximums=maximums)


def image_trainer(model: str) -> ModuleType:
    """The model's trainer module; only image models learn from labelled uploads."""
    from training.trainers import TRAINERS, trainer

    if model not in TRAINERS:
        raise ValueError(f"unknown model {model!r}; expected one of {sorted(TRAINERS)}")
    module = trainer(model)
    if not hasattr(module, "image_input"):
        raise ValueError(f"{model} is a tabular model: retraining jobs train image models from labelled uploads")
    return module


def parse_hyperparameters(hyperparameters: Mapping[str, str]) -> JobSettings:
    h = hyperparameters
    unknown = sorted(k for k in h if k not in _OPTIONAL and k not in _REQUIRED and not k.startswith(_GATE_PREFIXES))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s): {', '.join(unknown)}")
    missing = [name for name in _REQUIRED if not h.get(name)]
    if missing:
        raise ValueError(f"hyperparameter(s) required: {', '.join(missing)}")
    if h.get("jobs_table") and not h.get("job_id"):
        raise ValueError("hyperparameter job_id is required with jobs_table")
    return JobSettings(
        model=h["model"],
        models_bucket=h["models_bucket"],
        gate=tightened_gate(image_trainer(h["model"]).DEFAULT_GATE, h),
        **{name: parse(name, h[name]) for name, parse in _OPTIONAL.items() if h.get(name)},
    )


def collect_uploads(channel: Path, classes: list[str], spec) -> Uploads:
    """Every <label>/<file>.jpg|jpeg|png under the channel whose label is a class and
    that the shared preprocessing decodes; anything else is skipped, counted and logged."""
    from med_classifier.domain.errors import ClassifierError
    from med_classifier.domain.preprocessing import decode_image

    images, skipped = [], 0
    files = sorted(p for p in channel.rglob("*") if p.is_file()) if channel.is_dir() else []
    for path in files:
        relative = path.relative_to(channel)
        label = relative.parts[0] if len(relative.parts) == 2 else None
        if label not in classes or path.suffix.lower() not in UPLOAD_SUFFIXES:
            problem = "not <label>/<image>.jpg|jpeg|png with a label in " + ", ".join(classes)
        else:
            try:
                decode_image(path.read_bytes(), spec)
                images.append((path, label))
                continue
            except ClassifierError as exc:
                problem = exc.message
        skipped += 1
        log.warning("skipping upload %s: %s", relative, problem)
    return Uploads(tuple(images), skipped)


def run(paths: JobPaths, settings: JobSettings) -> dict:
    """Train, compare, gate and (maybe) publish; returns what outcome.json holds."""
    from training.champion import compare_with_production
    from training.pipeline import finish

    endpoint = training_settings().endpoint_url
    jobs = JobsTable(settings.jobs_table, endpoint_url=endpoint) if settings.jobs_table else None
    if jobs is not None and not jobs.set_state(settings.job_id, IN_PROGRESS):
        log.warning("job %s: the jobs table did not accept InProgress (unknown or already finished)", settings.job_id)
    paths.model_dir.mkdir(parents=True, exist_ok=True)
    module = image_trainer(settings.model)
    uploads = collect_uploads(paths.channel("uploads"), list(module.CLASSES), module.image_input())
    store = ModelStore(settings.models_bucket, endpoint_url=endpoint)
    with tempfile.TemporaryDirectory(prefix="production-weights-") as folder:
        start = starting_point(store, module, settings, Path(folder))
        candidate = module.train(_train_options(paths, settings, uploads, start))
    outcome = finish(
        candidate,
        settings.gate,
        store,
        quantize=settings.quantize,
        champion=lambda c: compare_with_production(c, settings.gate, store, settings.max_regression),
    )
    result = {
        "job_id": settings.job_id,
        "model": settings.model,
        "outcome": PROMOTED if outcome.published else REJECTED,
        "version": outcome.version,
        "reasons": outcome.gate.reasons,
        "metrics": dict(outcome.manifest.metrics),
        "production_version": outcome.champion.production_version,
        "fine_tuned_from": start.version if start else None,
        "deltas": outcome.champion.deltas,
        "n_uploads": len(uploads.images),
        "skipped_uploads": uploads.skipped,
    }
    _write_model_dir(paths, store, result)
    if jobs is not None and not jobs.record_outcome(
        settings.job_id,
        outcome=result["outcome"],
        version=result["version"],
        metrics=result["metrics"],
        reasons=result["reasons"],
        production_version=result["production_version"],
        deltas=result["deltas"],
        fine_tuned_from=result["fine_tuned_from"],
    ):
        log.warning("job %s: the jobs table did not accept the outcome (unknown or already finished)", settings.job_id)
    return result


def starting_point(store: ModelStore, module: ModuleType, settings: JobSettings, folder: Path) -> StartingPoint | None:
    """Production's native weights, checked against its manifest's sha256 (a mismatch fails
    the job: IntegrityError) and written to `folder`; None, logged, when the job trains from
    scratch instead."""
    model = settings.model
    pointer = store.read_pointer_or_none(model) if settings.fine_tune else None
    manifest = store.read_manifest(model, pointer.version) if pointer is not None else None
    if not settings.fine_tune:
        why = "fine_tune=false"
    elif manifest is None:
        why = "nothing in production"
    elif manifest.native_weights is None:
        why = f"production {manifest.version} has no native weights (published before they were kept)"
    elif manifest.classes != list(module.CLASSES) or manifest.input != module.image_input():
        why = f"production {manifest.version} takes other classes or input"
    else:
        path = folder / manifest.native_weights.file
        path.write_bytes(store.read_native_weights(manifest))
        log.info(
            "%s: fine-tuning production %s's native weights (%s, sha256 %s…, verified against its manifest)",
            model,
            manifest.version,
            manifest.native_weights.file,
            manifest.native_weights.sha256[:12],
        )
        return StartingPoint(manifest.version, path)
    log.warning("%s: %s: training from scratch", model, why)
    return None


def _train_options(paths: JobPaths, settings: JobSettings, uploads: Uploads, start: StartingPoint | None):
    """The trainer's options: the job's settings, the `original` channel as the data set
    when it holds anything (else the synthetic set), the uploads for the training split, and
    production's weights with the fine-tuning schedule when the job starts from them."""
    from training.candidate import TrainOptions

    original = paths.channel("original")
    data_dir = original if original.is_dir() and any(original.iterdir()) else None
    log.info(
        "%s: %d uploads (%d skipped); data: %s; gate %s; max regression vs production %s",
        settings.model,
        len(uploads.images),
        uploads.skipped,
        data_dir or "synthetic",
        settings.gate.thresholds(),
        settings.max_regression,
    )
    return TrainOptions(
        smoke=settings.smoke,
        seed=settings.seed,
        data_dir=data_dir,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        quantize=settings.quantize,
        extra_train=uploads.images,
        pretrained=start.weights if start else None,
        fine_tune=start is not None,
    )


def _write_model_dir(paths: JobPaths, store: ModelStore, result: dict) -> None:
    """outcome.json; with a promoted version, also its model.onnx and manifest.json as
    published (read back: the bytes that serve)."""
    if result["outcome"] == PROMOTED:
        published = store.read_version(result["model"], result["version"])
        (paths.model_dir / "model.onnx").write_bytes(published.onnx)
        (paths.model_dir / "manifest.json").write_text(published.manifest.model_dump_json(indent=2))
    (paths.model_dir / "outcome.json").write_text(json.dumps(result, indent=2))


def keep_mlflow_with_artefacts(paths: JobPaths, environ: MutableMapping[str, str] = os.environ) -> None:
    """In a container with no tracking server, the MLflow run goes with the model artefacts
    that SageMaker uploads (model.tar.gz), not into a folder that dies with the container.
    Sets MLFLOW_LOCAL_DIR, which training.settings reads when MLflow is configured."""
    settings = training_settings(environ)
    if not settings.mlflow_tracking_uri and "local_state_dir" not in settings.model_fields_set:
        environ["MLFLOW_LOCAL_DIR"] = str(paths.model_dir / "mlflow")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.retrain",
        description="Retraining job (SageMaker/Batch container). NOT FOR CLINICAL USE.",
    )
    parser.add_argument("command", nargs="?", choices=("train",), help="SageMaker passes 'train'; ignored")
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    log.info("retraining job starting — NOT FOR CLINICAL USE")
    paths = JobPaths.from_environment()
    keep_mlflow_with_artefacts(paths)
    hyperparameters: dict[str, str] = {}
    try:
        staged = stage_from_environment(paths, aws_client("s3", training_settings().endpoint_url))
        if staged is not None:
            log.info("staged from the environment (Batch): files per channel %s", staged)
        hyperparameters = paths.read_hyperparameters()
        result = run(paths, parse_hyperparameters(hyperparameters))
    except Exception as exc:
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line
        log.exception("retraining job FAILED: %s", reason)
        paths.write_failure(reason)
        job_id, table = hyperparameters.get("job_id"), hyperparameters.get("jobs_table")
        if job_id and table:
            try:
                # Callers see a code and a sentence; the reason is in the job's logs and failure file.
                JobsTable(table, endpoint_url=training_settings().endpoint_url).set_state(
                    job_id, FAILED, failure_code="job_error", failure_reason=public_failure("job_error")
                )
            except Exception:  # the failure file still reports it; the service's event marks it Failed too
                log.exception("could not mark job %s Failed in %s", job_id, table)
        return 1
    log.info(
        "job %s: %s version %s%s",
        result["job_id"],
        result["outcome"],
        result["version"],
        "".join(f"; {reason}" for reason in result["reasons"]),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
