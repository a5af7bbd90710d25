"""HAM10000 (dermatoscopic images, 7 diagnoses): the public layout's loader and a
deterministic synthetic stand-in written in that same layout.

The public data set (Tschandl et al., 2018, https://doi.org/10.7910/DVN/DBW86T) ships
``HAM10000_metadata.csv`` (lesion_id, image_id, dx, dx_type, age, sex, localization)
and the images ``{image_id}.jpg`` in ``HAM10000_images_part_1/`` and
``HAM10000_images_part_2/``. Several images may show the same lesion: the lesion_id is
the split group, so one lesion never straddles train and test.

The synthetic generator draws skin-toned, noisy, vignetted backgrounds with one lesion
whose colour, border and texture follow a per-class recipe loosely inspired by each
diagnosis. It only exists so the whole pipeline runs offline and deterministically: it
says nothing about real lesions. NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.datasets.common import SYNTHETIC_MARKER, ImageDataset, write_synthetic_set

log = logging.getLogger("training")

NAME = "ham10000"
# Model output order: actinic keratosis / intraepithelial carcinoma, basal cell carcinoma,
# benign keratosis-like lesion, dermatofibroma, melanoma, melanocytic nevus, vascular lesion.
CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
METADATA_FILE = "HAM10000_metadata.csv"
IMAGE_FOLDERS = ("HAM10000_images_part_1", "HAM10000_images_part_2")
COLUMNS = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization")
REQUIRED_COLUMNS = ("lesion_id", "image_id", "dx")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
GENERATOR_VERSION = 1


# --------------------------------------------------------------------------- loader


def load(root: Path) -> ImageDataset:
    """Read the public HAM10000 layout under ``root``.

    Images are found by image_id anywhere under root (the two part folders, root
    itself or any subfolder). Raises ValueError for a missing metadata file, missing
    columns, an unknown diagnosis or when no listed image exists; listed images that
    are missing are skipped with a warning.
    """
    root = Path(root)
    metadata = _metadata_file(root)
    rows = _read_metadata(metadata)
    _check_diagnoses(rows, metadata)
    paths, labels, groups = _listed_images(rows, _image_index(root), metadata, root)
    dataset = ImageDataset(
        name=NAME,
        source=str(root),
        classes=list(CLASSES),
        paths=paths,
        labels=np.asarray(labels, dtype=np.int64),
        groups=groups,
        synthetic=(root / SYNTHETIC_MARKER).is_file(),
    )
    log.info(
        "data: %s%s, %d images of %d lesions from %s; per class %s",
        NAME,
        " (SYNTHETIC)" if dataset.synthetic else "",
        len(paths),
        len(set(groups)),
        root,
        dataset.class_counts(),
    )
    return dataset


def _metadata_file(root: Path) -> Path:
    if not root.is_dir():
        raise ValueError(f"HAM10000: {root} is not a directory")
    metadata = root / METADATA_FILE
    if not metadata.is_file():
        raise ValueError(
            f"HAM10000: {METADATA_FILE} not found in {root} (expected the public layout: "
            f"{METADATA_FILE} plus {IMAGE_FOLDERS[0]}/ and {IMAGE_FOLDERS[1]}/)"
        )
    return metadata


def _read_metadata(metadata: Path) -> list[dict[str, str]]:
    """The metadata rows, names and values stripped; refuses a file without the required columns or rows."""
    with metadata.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ValueError(
                f"HAM10000: {metadata} lacks column(s) {', '.join(missing)} "
                f"(has {', '.join(columns) or 'none'}; expected {', '.join(COLUMNS)})"
            )
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    if not rows:
        raise ValueError(f"HAM10000: {metadata} has no rows")
    return rows


def _check_diagnoses(rows: list[dict[str, str]], metadata: Path) -> None:
    unknown: dict[str, int] = {}
    for row in rows:
        if row["dx"] not in CLASSES:
            unknown[row["dx"]] = unknown.get(row["dx"], 0) + 1
    if unknown:
        listed = ", ".join(f"{dx!r} ({n} rows)" for dx, n in sorted(unknown.items()))
        raise ValueError(f"HAM10000: {metadata} has unknown dx value(s) {listed}; expected one of {CLASSES}")


def _listed_images(rows: list[dict[str, str]], index: dict[str, Path], metadata: Path, root: Path):
    """(paths, labels, lesion ids) of the listed images found in `index`, each image once
    (the first row that lists it); warns about duplicate rows and missing images."""
    paths, labels, groups, seen = [], [], [], set()
    missing_images, duplicates = [], 0
    for row in rows:
        image_id, lesion_id = row["image_id"], row["lesion_id"]
        if not image_id or not lesion_id:
            raise ValueError(f"HAM10000: {metadata} has a row without image_id or lesion_id: {row}")
        if image_id in seen:
            duplicates += 1
            continue
        seen.add(image_id)
        path = index.get(image_id)
        if path is None:
            missing_images.append(image_id)
            continue
        paths.append(path)
        labels.append(CLASSES.index(row["dx"]))
        groups.append(lesion_id)
    if duplicates:
        log.warning("HAM10000: %d duplicate image_id row(s) in %s ignored (first one kept)", duplicates, metadata)
    if missing_images:
        _report_missing(missing_images, len(paths), metadata, root)
    return paths, labels, groups


def _report_missing(missing_images: list[str], n_found: int, metadata: Path, root: Path) -> None:
    """Refuses a layout where no listed image exists; otherwise warns about the missing ones."""
    if not n_found:
        raise ValueError(
            f"HAM10000: none of the {len(missing_images)} images listed in {metadata} was found "
            f"under {root} (looked for {{image_id}}.jpg in {IMAGE_FOLDERS[0]}/, "
            f"{IMAGE_FOLDERS[1]}/, the root and its subfolders)"
        )
    log.warning(
        "HAM10000: %d of %d listed images not found under %s; skipped (e.g. %s)",
        len(missing_images),
        len(missing_images) + n_found,
        root,
        ", ".join(missing_images[:3]),
    )


def _image_index(root: Path) -> dict[str, Path]:
    """image_id -> file. The public part folders win over copies elsewhere; otherwise
    the first path in sorted order, so the choice is deterministic."""

    def rank(path: Path) -> tuple:
        relative = path.relative_to(root)
        in_part_folder = len(relative.parts) == 2 and relative.parts[0] in IMAGE_FOLDERS
        return (0 if in_part_folder else 1, len(relative.parts), str(relative))

    candidates = [p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    index: dict[str, Path] = {}
    for path in sorted(candidates, key=rank):
        index.setdefault(path.stem, path)
    return index


# --------------------------------------------------------------- synthetic generator

_LIGHT_SKIN = np.array([238.0, 206.0, 184.0])
_DARK_SKIN = np.array([196.0, 148.0, 116.0])

# Per-class recipe: base colour (RGB), radius range (fraction of the image side),
# border irregularity (amplitude of the angular harmonics), edge softness and texture.
_STYLES = {
    "akiec": {"colour": (192, 98, 88), "radius": (0.20, 0.30), "irregularity": 0.16, "soft": 0.035, "texture": "scaly"},
    "bcc": {
        "colour": (214, 150, 170),
        "radius": (0.18, 0.28),
        "irregularity": 0.08,
        "soft": 0.02,
        "texture": "vessels",
    },
    "bkl": {"colour": (172, 130, 86), "radius": (0.22, 0.32), "irregularity": 0.10, "soft": 0.02, "texture": "mottled"},
    "df": {"colour": (134, 88, 62), "radius": (0.16, 0.24), "irregularity": 0.05, "soft": 0.03, "texture": "ring"},
    "mel": {
        "colour": (58, 36, 36),
        "radius": (0.22, 0.34),
        "irregularity": 0.32,
        "soft": 0.015,
        "texture": "multicolour",
    },
    "nv": {"colour": (108, 70, 46), "radius": (0.14, 0.24), "irregularity": 0.04, "soft": 0.04, "texture": "uniform"},
    "vasc": {
        "colour": (160, 34, 70),
        "radius": (0.14, 0.22),
        "irregularity": 0.05,
        "soft": 0.012,
        "texture": "lobules",
    },
}
_LOCALIZATIONS = (
    "back",
    "lower extremity",
    "trunk",
    "upper extremity",
    "abdomen",
    "face",
    "chest",
    "foot",
    "neck",
    "scalp",
    "hand",
    "ear",
)
_DX_TYPES = ("histo", "follow_up", "consensus", "confocal")


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean, roughly unit-variance noise with features about size/cells wide."""
    from PIL import Image

    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.asarray(
        Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32
    )


def _blend(field: np.ndarray, colour, weight: np.ndarray) -> np.ndarray:
    weight = np.clip(weight, 0.0, 1.0)[..., None]
    return field * (1.0 - weight) + np.asarray(colour, dtype=np.float32) * weight


def _lines_mask(size: int, strokes: list[list[tuple[float, float]]], width: int):
    from PIL import Image, ImageDraw

    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    for points in strokes:
        draw.line(points, fill=255, width=width)
    return np.asarray(mask, dtype=np.float32) / 255.0


def _lesion(class_name: str, rng: np.random.Generator, prototypical: bool) -> dict:
    """What one lesion looks like; every image of that lesion shares it."""
    style = _STYLES[class_name]
    low, high = style["radius"]
    jitter = np.zeros(3) if prototypical else rng.normal(0.0, 7.0, 3)
    harmonics = [(rng.normal(0.0, style["irregularity"] / k), rng.uniform(0.0, 2 * np.pi)) for k in range(2, 7)]
    if prototypical:  # a typical border: harmonics at their expected size
        harmonics = [(style["irregularity"] / k * 0.8, phase) for k, (_, phase) in zip(range(2, 7), harmonics)]
    return {
        "class": class_name,
        "colour": np.asarray(style["colour"], dtype=np.float32) + jitter,
        "radius": (low + high) / 2 if prototypical else rng.uniform(low, high),
        "harmonics": harmonics,
        "texture_seed": int(rng.integers(0, 2**31 - 1)),
    }


@dataclass(frozen=True)
class _Outline:
    """Where the lesion lies in one image of it."""

    xx: np.ndarray  # pixel-centre coordinates
    yy: np.ndarray
    cx: float
    cy: float
    radius: float
    alpha: np.ndarray  # how much of each pixel the lesion covers: 1 inside, a soft edge, 0 outside
    relative: np.ndarray  # distance from the centre: 0 at the centre, 1 on the border


def _render(lesion: dict, size: int, rng: np.random.Generator, prototypical: bool) -> np.ndarray:
    """One image of a lesion: HxWx3 uint8. `rng` draws, in this order: skin, placement,
    hairs, dermatoscope; the lesion's texture has a generator of its own."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    background = _skin(size, rng, prototypical)
    outline = _outline(lesion, size, rng, prototypical, xx, yy)
    style = _STYLES[lesion["class"]]
    field = np.broadcast_to(lesion["colour"], (size, size, 3)).astype(np.float32).copy()
    field = _TEXTURES[style["texture"]](field, np.random.default_rng(lesion["texture_seed"]), size, outline)
    image = background * (1.0 - outline.alpha[..., None]) + field * outline.alpha[..., None]
    if not prototypical and rng.random() < 0.3:  # a few hairs, as on real dermatoscopy
        image = _blend(image, (48, 36, 30), _hairs(size, rng) * 0.7)
    return _through_dermatoscope(image, xx, yy, size, rng, prototypical)


def _skin(size: int, rng: np.random.Generator, prototypical: bool) -> np.ndarray:
    """A skin tone between light and darker, with low-frequency mottling."""
    tone = 0.45 if prototypical else rng.uniform(0.0, 1.0)
    skin = (_LIGHT_SKIN * (1 - tone) + _DARK_SKIN * tone).astype(np.float32)
    background = np.broadcast_to(skin, (size, size, 3)).copy()
    background += _smooth_noise(rng, size, 6)[..., None] * 6.0
    return background


def _outline(lesion: dict, size: int, rng: np.random.Generator, prototypical: bool, xx, yy) -> _Outline:
    """Where the lesion sits and how it is turned in this picture of it; its border
    wobbles by the lesion's harmonics."""
    if prototypical:
        cx = cy = size / 2
        turn = 0.0
    else:
        cx, cy = size * (0.5 + rng.uniform(-0.1, 0.1, 2))
        turn = rng.uniform(0.0, 2 * np.pi)
    radius = lesion["radius"] * size * (1.0 if prototypical else rng.uniform(0.92, 1.08))
    dx, dy = xx - cx, yy - cy
    distance = np.hypot(dx, dy)
    angle = np.arctan2(dy, dx) + turn
    wobble = sum(a * np.cos(k * angle + phase) for k, (a, phase) in zip(range(2, 7), lesion["harmonics"]))
    border = radius * np.clip(1.0 + wobble, 0.45, 1.8)
    alpha = np.clip((border - distance) / (_STYLES[lesion["class"]]["soft"] * size) + 0.5, 0.0, 1.0)
    return _Outline(xx, yy, cx, cy, radius, alpha, relative=distance / np.maximum(border, 1e-3))


def _stroke(rng: np.random.Generator, start: np.ndarray, steps: int, step_length: float, turn: float) -> list:
    """A random walk from `start` in a random direction, turning by N(0, turn) at each step."""
    heading = rng.uniform(0, 2 * np.pi)
    point = start
    points = [tuple(point)]
    for _ in range(steps):
        heading += rng.normal(0, turn)
        point = point + step_length * np.array([np.cos(heading), np.sin(heading)])
        points.append(tuple(point))
    return points


def _hairs(size: int, rng: np.random.Generator) -> np.ndarray:
    strokes = [_stroke(rng, rng.uniform(0, size, 2), 6, size * 0.12, 0.15) for _ in range(int(rng.integers(1, 4)))]
    return _lines_mask(size, strokes, width=1)


def _through_dermatoscope(image: np.ndarray, xx, yy, size: int, rng: np.random.Generator, prototypical: bool):
    """Dermatoscope vignette, then sensor noise; as uint8."""
    corner = np.hypot(xx - size / 2, yy - size / 2) / (size / np.sqrt(2))
    image *= (1.0 - (0.12 if prototypical else rng.uniform(0.05, 0.3)) * corner**2)[..., None]
    if not prototypical:
        image += rng.normal(0.0, 4.0, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


# Textures: (lesion colour field, the lesion's generator, size, outline) -> the field.


def _scaly(field, texture, size, outline):
    """Rough red patch with whitish scale."""
    field += _smooth_noise(texture, size, max(4, size // 16))[..., None] * 10.0
    scale = _smooth_noise(texture, size, max(6, size // 6))
    return _blend(field, (238, 224, 214), (scale - 0.5) * 1.2)


def _vessels(field, texture, size, outline):
    """Pearly pink with arborising red vessels."""
    field += _smooth_noise(texture, size, 5)[..., None] * 6.0
    centre, radius = np.array([outline.cx, outline.cy]), outline.radius
    strokes = [
        _stroke(texture, centre + texture.normal(0, radius * 0.3, 2), 7, radius * 0.16, 0.6)
        for _ in range(int(texture.integers(3, 6)))
    ]
    vessels = _lines_mask(size, strokes, width=max(1, size // 56))
    return _blend(field, (176, 22, 38), vessels * 0.9)


def _mottled(field, texture, size, outline):
    """Waxy tan with cerebriform light and dark patches."""
    field *= (1.0 + 0.16 * _smooth_noise(texture, size, max(6, size // 10)))[..., None]
    return field


def _ring(field, texture, size, outline):
    """Brown ring around a pale scar-like centre."""
    centre = np.clip((0.55 - outline.relative) / 0.15, 0.0, 1.0)
    return _blend(field, (230, 210, 194), centre)


def _multicolour(field, texture, size, outline):
    """Dark, with blue-grey veil and black blotches."""
    blotches = _smooth_noise(texture, size, 4)
    field = _blend(field, (96, 106, 136), (blotches - 0.2) * 1.5)
    field = _blend(field, (22, 14, 14), (-blotches - 0.6) * 1.5)
    field += _smooth_noise(texture, size, max(6, size // 8))[..., None] * 8.0
    return field


def _uniform(field, texture, size, outline):
    """Even brown, a little darker in the middle."""
    field *= (1.0 - 0.12 * np.clip(1.0 - outline.relative, 0.0, 1.0))[..., None]
    return field


def _lobules(field, texture, size, outline):
    """Red-purple with darker lacunae."""
    o = outline
    lacunae = np.zeros((size, size), dtype=np.float32)
    for _ in range(int(texture.integers(4, 8))):
        r = texture.uniform(0.0, 0.6) * o.radius
        theta = texture.uniform(0.0, 2 * np.pi)
        spot = np.hypot(o.xx - o.cx - r * np.cos(theta), o.yy - o.cy - r * np.sin(theta))
        lacunae = np.maximum(lacunae, np.clip((o.radius * texture.uniform(0.15, 0.28) - spot) / 2.0, 0, 1))
    return _blend(field, (104, 12, 46), lacunae * 0.8)


_TEXTURES = {
    "scaly": _scaly,
    "vessels": _vessels,
    "mottled": _mottled,
    "ring": _ring,
    "multicolour": _multicolour,
    "uniform": _uniform,
    "lobules": _lobules,
}


def _encode(pixels: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    if fmt == "JPEG":
        Image.fromarray(pixels, mode="RGB").save(buffer, "JPEG", quality=90)
    else:
        Image.fromarray(pixels, mode="RGB").save(buffer, "PNG")
    return buffer.getvalue()


def example_image(class_name: str, size: int = 128, seed: int = 0) -> bytes:
    """A prototypical synthetic image of ``class_name`` as PNG bytes: centred lesion,
    typical size and colour, no hair, mid skin tone."""
    if class_name not in CLASSES:
        raise ValueError(f"unknown HAM10000 class {class_name!r}; expected one of {CLASSES}")
    rng = np.random.default_rng([seed, CLASSES.index(class_name), 7_777_777])
    lesion = _lesion(class_name, rng, prototypical=True)
    return _encode(_render(lesion, size, rng, prototypical=True), "PNG")


def write_synthetic(root: Path, n_per_class: int, seed: int, size: int = 128) -> Path:
    """Write a deterministic synthetic data set in the public HAM10000 layout under
    ``root`` and return root: ``HAM10000_metadata.csv`` plus JPEGs split over the two
    part folders, 1-3 images per lesion, ``n_per_class`` images per class (nv twice as
    many: a mild imbalance) and the marker file ``SYNTHETIC.txt``. The same arguments
    give byte-identical files; a complete set written with the same arguments is reused.
    """
    if n_per_class < 1:
        raise ValueError("n_per_class must be at least 1")
    if size < 32:
        raise ValueError("size must be at least 32 pixels")
    root = Path(root)
    settings = {
        "generator_version": GENERATOR_VERSION,
        "n_per_class": int(n_per_class),
        "seed": int(seed),
        "size": int(size),
    }
    wrote = write_synthetic_set(
        root,
        "SYNTHETIC HAM10000-layout data written by training.datasets.ham10000.write_synthetic. These images "
        "are drawn by a program; they are not dermatoscopy and say nothing about real lesions.",
        settings,
        lambda folder: _write_images(folder, n_per_class, seed, size),
        intact=lambda root: (root / METADATA_FILE).is_file(),
    )
    if not wrote:
        log.info("data: reusing synthetic HAM10000 set in %s", root)
    return root


def _write_images(root: Path, n_per_class: int, seed: int, size: int) -> dict:
    """The images and metadata of one synthetic set, into `root` (a staging folder)."""
    rows = []  # (lesion_id, class, lesion index, image index within the lesion)
    lesion_number = 0
    for class_index, class_name in enumerate(CLASSES):
        wanted = n_per_class * (2 if class_name == "nv" else 1)
        sizes = np.random.default_rng([seed, class_index, 1])
        lesion_index = 0
        while wanted > 0:
            count = min(wanted, int(sizes.choice([1, 1, 1, 2, 2, 3])))
            lesion_id = f"HAM_{lesion_number:07d}"
            rows += [(lesion_id, class_name, lesion_index, i) for i in range(count)]
            wanted -= count
            lesion_index += 1
            lesion_number += 1
    order = np.random.default_rng([seed, 2]).permutation(len(rows))
    rows = [rows[i] for i in order]
    people = np.random.default_rng([seed, 3])
    half = (len(rows) + 1) // 2
    for folder in IMAGE_FOLDERS:
        (root / folder).mkdir()
    lesions: dict[str, dict] = {}
    records = []
    for number, (lesion_id, class_name, lesion_index, image_index) in enumerate(rows):
        class_index = CLASSES.index(class_name)
        if lesion_id not in lesions:
            lesions[lesion_id] = _lesion(
                class_name, np.random.default_rng([seed, class_index, lesion_index]), prototypical=False
            )
        image_rng = np.random.default_rng([seed, class_index, lesion_index, image_index + 1])
        pixels = _render(lesions[lesion_id], size, image_rng, prototypical=False)
        image_id = f"ISIC_{24306 + number:07d}"
        folder = IMAGE_FOLDERS[0] if number < half else IMAGE_FOLDERS[1]
        (root / folder / f"{image_id}.jpg").write_bytes(_encode(pixels, "JPEG"))
        records.append(
            {
                "lesion_id": lesion_id,
                "image_id": image_id,
                "dx": class_name,
                "dx_type": _DX_TYPES[int(people.integers(0, len(_DX_TYPES)))],
                "age": f"{5 * int(people.integers(4, 17)):.1f}",
                "sex": ("male", "female")[int(people.integers(0, 2))],
                "localization": _LOCALIZATIONS[int(people.integers(0, len(_LOCALIZATIONS)))],
            }
        )
    with (root / METADATA_FILE).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    log.info("data: wrote %d synthetic HAM10000 images (%d lesions, %dx%d)", len(records), len(lesions), size, size)
    return {"images": len(records), "lesions": len(lesions)}
