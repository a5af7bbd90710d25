"""Chest CT scans, normal vs adenocarcinoma: the public layout's loader and a
deterministic synthetic stand-in with the same layout. NOT FOR CLINICAL USE.

The public "Chest CT-Scan images" set (Kaggle) ships one folder per class, under
train/, valid/ and test/ split folders:

    Data/train/adenocarcinoma_left.lower.lobe_T2_N0_M0_Ib/*.png
    Data/train/normal/*.png
    Data/train/large.cell.carcinoma_left.hilum_T2_N2_M0_IIIa/...   (ignored here)
    Data/valid/...   Data/test/adenocarcinoma/...   Data/test/normal/...

A folder whose name starts with "adenocarcinoma" holds adenocarcinoma images, one
starting with "normal" normal ones; the other carcinoma classes are not part of this
model and are skipped (logged).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from training.datasets.common import SYNTHETIC_MARKER, ImageDataset, write_synthetic_set

log = logging.getLogger("training")

NAME = "chest-ct"
CLASSES = ["normal", "adenocarcinoma"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
# Split folder name (lower case) -> the split it holds.
SPLIT_FOLDERS = {"train": "train", "valid": "valid", "val": "valid", "test": "test"}
SPLITS = ("train", "valid", "test")
# The synthetic set uses the public set's folder names.
SYNTHETIC_FOLDERS = {"normal": "normal", "adenocarcinoma": "adenocarcinoma_left.lower.lobe_T2_N0_M0_Ib"}
SYNTHETIC_FRACTIONS = {"valid": 0.15, "test": 0.25}  # of each class; the rest is train


def class_of(folder_name: str) -> str | None:
    """The class a class folder holds, or None for classes this model does not cover."""
    name = folder_name.strip().lower()
    for class_name in CLASSES:
        if name.startswith(class_name):
            return class_name
    return None


def _images(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _split_folders(root: Path) -> list[tuple[str, Path]]:
    return [(SPLIT_FOLDERS[d.name.lower()], d) for d in _subdirs(root) if d.name.lower() in SPLIT_FOLDERS]


def _layout_root(root: Path) -> Path:
    """root itself, or the single folder it wraps (e.g. the Kaggle archive's Data/)."""
    subdirs = _subdirs(root)
    recognised = _split_folders(root) or [d for d in subdirs if class_of(d.name)]
    if not recognised and len(subdirs) == 1 and _subdirs(subdirs[0]):
        return _layout_root(subdirs[0])
    return root


def load(root: Path) -> ImageDataset:
    """Read the public layout: class folders directly under root, or under train/,
    valid/ (or val/) and test/ split folders (then `splits` says which is which)."""
    root = Path(root)
    expected = (
        "expected one folder per class (normal*, adenocarcinoma*), optionally under "
        "train/, valid/ (or val/) and test/, holding .png/.jpg/.jpeg images"
    )
    if not root.is_dir():
        raise ValueError(f"{NAME}: {root} is not a directory; {expected}")
    base = _layout_root(root)
    split_folders = _split_folders(base)
    sources = split_folders or [(None, base)]
    paths: list[Path] = []
    labels: list[int] = []
    splits: list[str] = []
    ignored: set[str] = set()
    for split_name, split_root in sources:
        for folder in _subdirs(split_root):
            class_name = class_of(folder.name)
            if class_name is None:
                ignored.add(folder.name)
                continue
            for path in _images(folder):
                paths.append(path)
                labels.append(CLASSES.index(class_name))
                splits.append(split_name)
    if ignored:
        log.info("%s: ignoring class folder(s) not in %s: %s", NAME, CLASSES, ", ".join(sorted(ignored)))
    if not paths:
        raise ValueError(f"{NAME}: no normal or adenocarcinoma images found in {root}; {expected}")
    dataset = ImageDataset(
        name=NAME,
        source=str(root),
        classes=list(CLASSES),
        paths=paths,
        labels=np.asarray(labels, dtype=np.int64),
        splits=splits if split_folders else None,
        synthetic=(root / SYNTHETIC_MARKER).is_file() or (base / SYNTHETIC_MARKER).is_file(),
    )
    counts = dataset.class_counts()
    if split_folders:
        per_split = {s: int(sum(1 for x in splits if x == s)) for s in SPLITS}
        log.info("%s: %d images %s from %s, splits %s", NAME, len(paths), counts, root, per_split)
    else:
        log.info("%s: %d images %s from %s (no split folders)", NAME, len(paths), counts, root)
    return dataset


# --- synthetic data -------------------------------------------------------------------


def _soft_ellipse(xx, yy, cx, cy, ax, ay, edge):
    """1 inside the ellipse, 0 outside, a smooth edge about `edge` (normalised units) wide."""
    r = np.sqrt(((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2)
    return 1.0 / (1.0 + np.exp((r - 1.0) * min(ax, ay) / edge))


def _smooth_noise(rng, size: int, cells: int) -> np.ndarray:
    """Low-frequency texture in [-1, 1]: coarse random grid, bilinearly upsampled."""
    grid = rng.uniform(-1.0, 1.0, (cells + 1, cells + 1))
    t = np.linspace(0.0, cells, size)
    i = np.minimum(t.astype(int), cells - 1)
    f = t - i
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def _render(rng: np.random.Generator, size: int, adenocarcinoma: bool, prototypical: bool = False) -> np.ndarray:
    """One CT-like axial slice as uint8: air, body ellipse with a fat rim, two dark
    lungs with small vessels, heart, spine; adenocarcinoma adds a bright irregular nodule
    in one lung (either side, upper or lower: the class survives flips)."""
    j = (lambda scale: 0.0) if prototypical else (lambda scale: rng.uniform(-scale, scale))
    pixel = 2.0 / size
    coords = (np.arange(size) + 0.5) * pixel - 1.0
    xx, yy = np.meshgrid(coords, coords)
    image = np.full((size, size), 0.02)
    body_ax, body_ay, body_cy = 0.86 + j(0.06), 0.66 + j(0.06), 0.04 + j(0.04)
    body = _soft_ellipse(xx, yy, j(0.04), body_cy, body_ax, body_ay, pixel)
    inner = _soft_ellipse(xx, yy, 0.0, body_cy, body_ax - 0.07, body_ay - 0.07, pixel)
    tissue = 0.55 + j(0.05) + 0.03 * _smooth_noise(rng, size, 8)
    image = image * (1 - body) + body * (0.42 * (1 - inner) + tissue * inner)
    lung_mask = np.zeros_like(image)
    lungs = []
    for side in (-1.0, 1.0):
        cx, cy = side * (0.38 + j(0.03)), -0.02 + j(0.04)
        ax, ay = 0.25 + j(0.03), 0.40 + j(0.04)
        lungs.append((cx, cy, ax, ay))
        lung = _soft_ellipse(xx, yy, cx, cy, ax, ay, pixel)
        lung_mask = np.maximum(lung_mask, lung)
    parenchyma = 0.09 + 0.025 * _smooth_noise(rng, size, 16)
    image = image * (1 - lung_mask) + parenchyma * lung_mask
    heart = _soft_ellipse(xx, yy, 0.06 + j(0.03), 0.12 + j(0.03), 0.17 + j(0.02), 0.2 + j(0.02), pixel)
    image = image * (1 - heart) + 0.62 * heart
    spine = _soft_ellipse(xx, yy, j(0.02), body_cy + body_ay - 0.2, 0.11, 0.1, pixel)
    canal = _soft_ellipse(xx, yy, j(0.0), body_cy + body_ay - 0.2, 0.035, 0.035, pixel)
    image = image * (1 - spine) + spine * (0.95 * (1 - canal) + 0.5 * canal)
    # Vessels: small, dimmer dots in both classes, so "anything bright in a lung" is not enough.
    n_vessels = 6 if prototypical else int(rng.integers(6, 16))
    for _ in range(n_vessels):
        cx, cy, ax, ay = lungs[int(rng.integers(0, 2))]
        angle, radius = rng.uniform(0, 2 * np.pi), np.sqrt(rng.uniform(0, 0.7))
        vx, vy = cx + ax * radius * np.cos(angle), cy + ay * radius * np.sin(angle)
        r = rng.uniform(0.012, 0.022)
        dot = _soft_ellipse(xx, yy, vx, vy, r, r, pixel) * lung_mask
        image = image * (1 - dot) + dot * rng.uniform(0.3, 0.45)
    if adenocarcinoma:
        if prototypical:  # patient's left lower lobe: image right, lower half
            (cx, cy, ax, ay), angle, radius = lungs[1], np.pi / 2, 0.45
        else:
            cx, cy, ax, ay = lungs[int(rng.integers(0, 2))]
            angle, radius = rng.uniform(0, 2 * np.pi), np.sqrt(rng.uniform(0, 0.35))
        nx, ny = cx + ax * radius * np.cos(angle), cy + ay * radius * np.sin(angle)
        size_n = 0.075 if prototypical else rng.uniform(0.055, 0.095)
        brightness = 0.8 if prototypical else rng.uniform(0.7, 0.88)
        nodule = np.zeros_like(image)
        for k in range(5):  # irregular: a core and lobules around it
            if k == 0:
                ox = oy = 0.0
                r = size_n
            else:
                theta = (k * 2 * np.pi / 4) + (0.0 if prototypical else rng.uniform(-0.5, 0.5))
                ox, oy = 0.8 * size_n * np.cos(theta), 0.8 * size_n * np.sin(theta)
                r = size_n * (0.55 if prototypical else rng.uniform(0.35, 0.7))
            nodule = np.maximum(nodule, _soft_ellipse(xx, yy, nx + ox, ny + oy, r, r * 0.9, pixel))
        image = image * (1 - nodule) + nodule * brightness
    image = image + rng.normal(0.0, 0.03, image.shape)
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _synthetic_plan(n_per_class: int) -> dict[str, int]:
    n_valid = max(1, round(n_per_class * SYNTHETIC_FRACTIONS["valid"]))
    n_test = max(1, round(n_per_class * SYNTHETIC_FRACTIONS["test"]))
    return {"train": n_per_class - n_valid - n_test, "valid": n_valid, "test": n_test}


def write_synthetic(root: Path, n_per_class: int, seed: int, size: int = 128) -> Path:
    """Write a deterministic synthetic set in the public layout:
    root/{train,valid,test}/{normal,adenocarcinoma_left.lower.lobe_T2_N0_M0_Ib}/*.png.
    Same arguments -> byte-identical files. A complete earlier set (marker file present
    and matching) is reused as it is. Returns root."""
    root = Path(root)
    if n_per_class < 5:
        raise ValueError("write_synthetic needs at least 5 images per class (train, valid and test each get some)")
    plan = _synthetic_plan(n_per_class)
    files = [
        (split, class_index, i, Path(split) / SYNTHETIC_FOLDERS[class_name] / f"{class_name}_{split}_{i:04d}.png")
        for split in SPLITS
        for class_index, class_name in enumerate(CLASSES)
        for i in range(plan[split])
    ]

    def write(folder: Path) -> dict:
        for split, class_index, i, relative in files:
            rng = np.random.default_rng([seed, class_index, SPLITS.index(split), i])
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(_png(_render(rng, size, adenocarcinoma=CLASSES[class_index] == "adenocarcinoma")))
        return {"files": len(files)}

    wrote = write_synthetic_set(
        root,
        "SYNTHETIC chest CT-like images generated by training.datasets.chest_ct.write_synthetic. Not real scans.",
        {"n_per_class": n_per_class, "seed": seed, "size": size},
        write,
        intact=lambda root: all((root / f[3]).is_file() for f in files),
    )
    if wrote:
        log.info("%s: wrote %d synthetic images (%s per class) to %s", NAME, len(files), plan, root)
    else:
        log.info("%s: reusing synthetic data set in %s", NAME, root)
    return root


def example_image(class_name: str, size: int = 128, seed: int = 0) -> bytes:
    """A prototypical synthetic slice of `class_name` as PNG bytes (documentation, web
    page and end-to-end tests; a model trained on the synthetic set gets it right)."""
    if class_name not in CLASSES:
        raise ValueError(f"unknown class {class_name!r}; expected one of {CLASSES}")
    rng = np.random.default_rng([seed, 1_000_003, CLASSES.index(class_name)])
    return _png(_render(rng, size, adenocarcinoma=class_name == "adenocarcinoma", prototypical=True))
