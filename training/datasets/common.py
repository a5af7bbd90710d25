"""What every image data set loader returns, and the split and tensor helpers."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from med_classifier.domain.manifest import ImageInput
from med_classifier.domain.preprocessing import batch_from_files

log = logging.getLogger("training")

SYNTHETIC_MARKER = "SYNTHETIC.txt"


@dataclass(frozen=True)
class ImageDataset:
    name: str  # e.g. "ham10000", "chest-ct"
    source: str  # where it was read from
    classes: list[str]  # output order of the model
    paths: list[Path]
    labels: np.ndarray  # int64 indices into classes
    groups: list[str] | None = None  # e.g. HAM10000 lesion_id: images of one lesion never straddle splits
    splits: list[str] | None = None  # "train"/"valid"/"test" when the layout ships them
    synthetic: bool = False

    def __post_init__(self):
        if len(self.paths) != len(self.labels):
            raise ValueError("paths and labels differ in length")
        if len(self.paths) == 0:
            raise ValueError(f"{self.name}: no images found in {self.source}")

    def sha256(self, uploads: Sequence[tuple[Path, str]] = ()) -> str:
        """Content hash of the data set (relative path, label and bytes of every image),
        and of the uploads added to its training split: the data version recorded in
        MLflow and the manifest."""
        digest = hashlib.sha256()
        digest.update("\n".join(self.classes).encode())
        for path, label in sorted(zip((str(p) for p in self.paths), self.labels.tolist())):
            digest.update(f"{Path(path).name}:{label}\n".encode())
            digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
        for path, name in sorted((str(p), n) for p, n in uploads):
            digest.update(f"upload:{Path(path).name}:{name}\n".encode())
            digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
        return digest.hexdigest()

    def class_counts(self, indices: Sequence[int] | None = None) -> dict[str, int]:
        labels = self.labels if indices is None else self.labels[np.asarray(indices, dtype=np.int64)]
        return {name: int(np.sum(labels == i)) for i, name in enumerate(self.classes)}

    def training_data(self, n_train: int, n_test: int, uploads: Sequence[tuple[Path, str]] = ()) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "sha256": self.sha256(uploads),
            "n_train": int(n_train),
            "n_test": int(n_test),
            "synthetic": self.synthetic,
            "n_uploads": len(uploads),
        }


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray


def split(dataset: ImageDataset, seed: int, test_fraction: float = 0.2, valid_fraction: float = 0.15) -> Split:
    """The layout's own train/valid/test folders when present; otherwise a stratified
    split, grouped when the data set has groups (no lesion in two splits)."""
    n = len(dataset.labels)
    if dataset.splits is not None:
        names = np.asarray(dataset.splits)
        train, valid, test = (np.flatnonzero(names == s) for s in ("train", "valid", "test"))
        if len(train) and len(test):
            if not len(valid):
                train, valid = _stratified(dataset, train, valid_fraction, seed)
            return Split(train, valid, test)
        log.warning("%s: layout has no usable train/test folders; splitting it instead", dataset.name)
    rest, test = _stratified(dataset, np.arange(n), test_fraction, seed)
    train, valid = _stratified(dataset, rest, valid_fraction / (1 - test_fraction), seed + 1)
    return Split(train, valid, test)


def _stratified(dataset: ImageDataset, indices: np.ndarray, fraction: float, seed: int):
    """Split indices into (keep, held_out) with about `fraction` held out, by class and group."""
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    labels = dataset.labels[indices]
    if dataset.groups is not None:
        groups = np.asarray(dataset.groups)[indices]
        n_splits = max(2, round(1 / fraction))
        folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        keep, held_out = next(folds.split(indices, labels, groups))
        return indices[keep], indices[held_out]
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 else None
    keep, held_out = train_test_split(indices, test_size=fraction, stratify=stratify, random_state=seed)
    return np.sort(keep), np.sort(held_out)


def tensors(dataset: ImageDataset, indices: np.ndarray, spec: ImageInput) -> np.ndarray:
    """Preprocess images exactly as serving does (med_classifier.domain.preprocessing)."""
    return batch_from_files([dataset.paths[i] for i in indices], spec)


def add_uploads(
    dataset: ImageDataset,
    x_train: np.ndarray,
    y_train: np.ndarray,
    uploads: Sequence[tuple[Path, str]],
    spec: ImageInput,
) -> tuple[np.ndarray, np.ndarray]:
    """Labelled uploads (path, class name) join the training split only: valid and test
    stay the data set's own, so a retrained version is measured as its predecessor was."""
    if not uploads:
        return x_train, y_train
    paths, names = zip(*uploads)
    y = np.asarray([dataset.classes.index(name) for name in names], dtype=np.int64)
    log.info(
        "%s: %d labelled uploads join the training split %s",
        dataset.name,
        len(y),
        {name: int(np.sum(y == i)) for i, name in enumerate(dataset.classes)},
    )
    return np.concatenate([x_train, batch_from_files(paths, spec)]), np.concatenate([y_train, y])


def write_synthetic_set(
    root: Path,
    notice: str,
    settings: dict,
    write: Callable[[Path], dict],
    intact: Callable[[Path], bool] = lambda root: True,
) -> bool:
    """The safe, idempotent part every synthetic generator shares. Reuses a complete set
    written with the same `settings` (and still `intact`); refuses a non-empty folder
    without our marker (it may be the real data set); otherwise `write`s the set into a
    staging folder, adds the marker last (its presence means complete) and puts the set
    in place. `write(folder)` returns figures for the marker. True if it wrote."""
    root = Path(root)
    marker = root / SYNTHETIC_MARKER
    try:
        recorded = json.loads(marker.read_text().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        recorded = None
    if isinstance(recorded, dict) and all(recorded.get(k) == v for k, v in settings.items()) and intact(root):
        return False
    if root.exists() and any(root.iterdir()) and not marker.is_file():
        raise ValueError(
            f"{root} is not empty and holds no {SYNTHETIC_MARKER}: refusing to write a synthetic set "
            "over what may be the real data set"
        )
    staging = root.with_name(f"{root.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    figures = write(staging)
    (staging / SYNTHETIC_MARKER).write_text(
        notice.rstrip() + " NOT FOR CLINICAL USE.\n" + json.dumps({**settings, **figures}, sort_keys=True) + "\n"
    )
    if root.exists():
        shutil.rmtree(root)  # an incomplete or different synthetic set of ours
    staging.rename(root)
    return True
