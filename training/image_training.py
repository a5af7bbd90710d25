"""The steps both image trainers share (skin-lesion in PyTorch, chest-ct in Keras).

Data set (the public one under --data-dir, else a deterministic synthetic one) → split
→ tensors built by the shared preprocessing, exactly as serving builds them → labelled
uploads joined to the training split → the Candidate's image fields, with a
calibration sample for static INT8 quantisation. Each framework module supplies only
what differs: its smoke subset, model, fit, export and parity check. NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from med_classifier.domain.manifest import ImageInput
from training import tracking
from training.candidate import Candidate, TrainOptions
from training.datasets.common import ImageDataset, Split, add_uploads, split, tensors

log = logging.getLogger("training")

CALIBRATION_SIZE = 128  # training tensors the INT8 quantiser calibrates on
PARITY_LIMITS = {"label_mismatches": 0, "max_abs_prob_diff": 1e-4}

# (data set, its split, seed) -> the part of that split a smoke run keeps.
SmokeSubset = Callable[[ImageDataset, Split, int], Split]


@dataclass(frozen=True)
class RunLength:
    epochs: int  # at most; early stopping may end the run sooner
    patience: int  # epochs without a val-loss improvement before stopping
    batch_size: int
    learning_rate: float  # the optimiser's (peak) rate


@dataclass(frozen=True)
class FineTuning:
    """A trainer's fine-tuning schedule (TrainOptions.fine_tune). It starts from a production
    version's weights, which fit the data already: fewer epochs and a learning rate a tenth of
    the from-scratch one, so the new images adjust the model instead of relearning it (and
    early stopping keeps the epoch with the lowest validation loss)."""

    epochs: int
    smoke_epochs: int  # tests: still from the production weights, fewer epochs
    patience: int
    learning_rate: float


def run_length(
    options: TrainOptions,
    *,
    epochs: int,
    smoke_epochs: int,
    patience: int,
    smoke_patience: int,
    batch_size: int,
    learning_rate: float,
    fine_tuning: FineTuning,
) -> RunLength:
    """--epochs and --batch-size when given, else the trainer's defaults: from scratch (smoke
    runs: fewer epochs, less patience) or, with options.fine_tune, its fine-tuning schedule."""
    if options.fine_tune and options.pretrained is None:
        raise ValueError("fine-tuning starts from a model's weights: TrainOptions.pretrained is required")
    if options.fine_tune:
        default_epochs = fine_tuning.smoke_epochs if options.smoke else fine_tuning.epochs
        patience, learning_rate = fine_tuning.patience, fine_tuning.learning_rate
    else:
        default_epochs = smoke_epochs if options.smoke else epochs
        patience = smoke_patience if options.smoke else patience
    return RunLength(
        epochs=options.epochs or default_epochs,
        patience=patience,
        batch_size=options.batch_size or batch_size,
        learning_rate=learning_rate,
    )


@dataclass(frozen=True)
class ImageData:
    """One run's data: the data set, its split, and the tensors of each split."""

    dataset: ImageDataset
    parts: Split
    x_train: np.ndarray  # the training split, then the labelled uploads
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def synthetic_root(name: str, seed: int, per_class: int) -> Path:
    """The synthetic set's folder: one per data set, seed and size, reused by later runs."""
    return tracking.state_dir() / "data" / f"{name}-synthetic-{seed}-{per_class}"


def load_dataset(options: TrainOptions, source: ModuleType, per_class: int, **synthetic: Any) -> ImageDataset:
    """The public data set under options.data_dir, else the deterministic synthetic set of
    `source` (a training.datasets module) with `per_class` images per class."""
    if options.data_dir is not None:
        return source.load(Path(options.data_dir))
    root = synthetic_root(source.NAME, options.seed, per_class)
    return source.load(source.write_synthetic(root, per_class, options.seed, **synthetic))


def image_data(options: TrainOptions, dataset: ImageDataset, spec: ImageInput, smoke_subset: SmokeSubset) -> ImageData:
    """Split the data set (a smoke run on a real one keeps `smoke_subset` of each split; the
    synthetic smoke set is small already), build every split's tensors with serving's
    preprocessing and append the labelled uploads to the training split only."""
    parts = split(dataset, options.seed)
    if options.smoke and options.data_dir is not None:
        parts = smoke_subset(dataset, parts, options.seed)
    started = time.perf_counter()
    x_train, x_valid, x_test = (tensors(dataset, indices, spec) for indices in (parts.train, parts.valid, parts.test))
    y_train, y_valid, y_test = (dataset.labels[indices] for indices in (parts.train, parts.valid, parts.test))
    x_train, y_train = add_uploads(dataset, x_train, y_train, options.extra_train, spec)
    log.info(
        "tensors (shared preprocessing, %dx%dx%d %s): %d train %s / %d valid / %d test %s in %.1f s",
        spec.height,
        spec.width,
        spec.channels,
        spec.layout,
        len(y_train),
        dataset.class_counts(parts.train),
        len(y_valid),
        len(y_test),
        dataset.class_counts(parts.test),
        time.perf_counter() - started,
    )
    return ImageData(dataset, parts, x_train, y_train, x_valid, y_valid, x_test, y_test)


def calibration_sample(x_train: np.ndarray, seed: int) -> np.ndarray:
    """Up to CALIBRATION_SIZE training tensors, drawn at random."""
    return x_train[np.random.default_rng(seed).permutation(len(x_train))[:CALIBRATION_SIZE]]


def image_reference_of(data: ImageData, spec: ImageInput, options: TrainOptions, classes: list[str]) -> dict:
    """training.ood_reference's material for this run: the training files (uploads too), the
    validation and test files with their tensors."""
    from training.ood_reference import image_reference

    paths = data.dataset.paths
    return image_reference(
        classes,
        spec,
        [paths[i] for i in data.parts.train] + [path for path, _ in options.extra_train],
        data.y_train,
        ([paths[i] for i in data.parts.valid], data.x_valid),
        ([paths[i] for i in data.parts.test], data.x_test),
    )


def image_candidate(
    options: TrainOptions,
    data: ImageData,
    spec: ImageInput,
    *,
    output_name: str,
    proba: np.ndarray,
    history: list[dict],
    native_model: object,
    **model_fields: Any,
) -> Candidate:
    """The Candidate of an image model: the fields every image trainer fills alike, plus
    `model_fields`, the model's own (model_id, description, task, classes, onnx, metrics,
    parity, estimator, params, framework, converter). `proba` is the native model's on
    the test tensors; `native_model` (tensor in, probabilities out) stays in memory for
    the benchmarks, never serialised."""
    return Candidate(
        input_spec=spec.model_dump(),
        outputs={"probabilities": output_name, "probability_format": "probabilities"},
        parity_limits=dict(PARITY_LIMITS),
        training_data=data.dataset.training_data(len(data.y_train), len(data.y_test), options.extra_train),
        evaluation={
            "y_true": data.y_test,
            "proba": proba,
            "x_eval": data.x_test,
            "x_calibration": calibration_sample(data.x_train, options.seed),
            "history": history,
            "native_model": native_model,
        },
        ood=image_reference_of(data, spec, options, model_fields["classes"]),
        **model_fields,
    )
