"""HAM10000: the public-layout loader (on a tiny hand-written fixture), lesion-grouped
splits, and the deterministic synthetic generator and example images."""

import hashlib
import io
import logging

import numpy as np
import pytest
from PIL import Image

from med_classifier.domain.manifest import ImageInput
from med_classifier.domain.preprocessing import tensor_from_bytes
from training.datasets import ham10000
from training.datasets.common import split

HEADER = "lesion_id,image_id,dx,dx_type,age,sex,localization\n"


def jpeg(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (60, 45), colour).save(buffer, "JPEG")
    return buffer.getvalue()


def write_layout(root, rows, images):
    """rows: (lesion_id, image_id, dx); images: {relative path: colour}."""
    root.mkdir(parents=True, exist_ok=True)
    lines = [f"{lesion},{image},{dx},histo,55.0,female,back\n" for lesion, image, dx in rows]
    (root / ham10000.METADATA_FILE).write_text(HEADER + "".join(lines))
    for relative, colour in images.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg(colour))
    return root


ROWS = [
    ("HAM_0000001", "ISIC_0000001", "mel"),
    ("HAM_0000001", "ISIC_0000002", "mel"),
    ("HAM_0000002", "ISIC_0000003", "nv"),
    ("HAM_0000003", "ISIC_0000004", "bcc"),
    ("HAM_0000004", "ISIC_0000005", "vasc"),
    ("HAM_0000005", "ISIC_0000006", "df"),
]
IMAGES = {
    "HAM10000_images_part_1/ISIC_0000001.jpg": (60, 30, 30),
    "HAM10000_images_part_1/ISIC_0000002.jpg": (62, 31, 30),
    "HAM10000_images_part_2/ISIC_0000003.jpg": (110, 70, 45),
    "ISIC_0000004.jpg": (214, 150, 170),  # directly in the root
    "extracted/more/ISIC_0000005.jpg": (160, 34, 70),
}  # any subfolder
# ISIC_0000006 is listed but missing.


def test_loader_reads_the_public_layout_and_skips_missing_images(tmp_path, caplog):
    root = write_layout(tmp_path / "ham", ROWS, IMAGES)
    # A stray copy elsewhere never wins over the part folder.
    (root / "copies").mkdir()
    (root / "copies" / "ISIC_0000001.jpg").write_bytes(jpeg((0, 0, 0)))
    with caplog.at_level(logging.WARNING, logger="training"):
        dataset = ham10000.load(root)
    assert dataset.name == "ham10000" and dataset.synthetic is False and dataset.classes == ham10000.CLASSES
    assert [p.relative_to(root).as_posix() for p in dataset.paths] == list(IMAGES)
    assert [ham10000.CLASSES[i] for i in dataset.labels] == ["mel", "mel", "nv", "bcc", "vasc"]
    assert dataset.labels.dtype == np.int64
    assert dataset.groups == ["HAM_0000001", "HAM_0000001", "HAM_0000002", "HAM_0000003", "HAM_0000004"]
    assert "1 of 6 listed images not found" in caplog.text and "ISIC_0000006" in caplog.text
    assert len(dataset.sha256()) == 64


def test_loader_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="HAM10000_metadata.csv not found"):
        ham10000.load(tmp_path)

    no_dx = tmp_path / "no-dx"
    no_dx.mkdir()
    (no_dx / ham10000.METADATA_FILE).write_text("lesion_id,image_id,age\nHAM_1,ISIC_1,40\n")
    with pytest.raises(ValueError, match="lacks column.*dx"):
        ham10000.load(no_dx)

    unknown = write_layout(tmp_path / "unknown", ROWS[:2] + [("HAM_9", "ISIC_9", "melanoma")], IMAGES)
    with pytest.raises(ValueError, match="unknown dx value.*'melanoma' \\(1 rows\\)"):
        ham10000.load(unknown)

    nothing = write_layout(tmp_path / "nothing", ROWS, {})
    with pytest.raises(ValueError, match="none of the 6 images"):
        ham10000.load(nothing)


def test_synthetic_generator_is_deterministic_and_marked(tmp_path):
    first = ham10000.write_synthetic(tmp_path / "a", n_per_class=4, seed=3, size=64)
    second = ham10000.write_synthetic(tmp_path / "b", n_per_class=4, seed=3, size=64)
    other = ham10000.write_synthetic(tmp_path / "c", n_per_class=4, seed=4, size=64)
    a, b, c = (ham10000.load(root) for root in (first, second, other))
    assert a.sha256() == b.sha256() != c.sha256()
    assert (first / ham10000.METADATA_FILE).read_bytes() == (second / ham10000.METADATA_FILE).read_bytes()
    assert a.synthetic and "NOT FOR CLINICAL USE" in (first / ham10000.SYNTHETIC_MARKER).read_text()
    # The public layout: both part folders, JPEGs named by image_id, nv twice as frequent.
    assert {p.parent.name for p in a.paths} == set(ham10000.IMAGE_FOLDERS)
    assert all(p.suffix == ".jpg" and p.stem.startswith("ISIC_") for p in a.paths)
    assert Image.open(a.paths[0]).format == "JPEG" and Image.open(a.paths[0]).size == (64, 64)
    counts = a.class_counts()
    assert counts["nv"] == 8 and all(counts[k] == 4 for k in ham10000.CLASSES if k != "nv")
    assert len(set(a.groups)) < len(a.paths)  # some lesions have several images

    # Same arguments again: reused, not rewritten; different ones: rewritten.
    before = {p: p.stat().st_mtime_ns for p in a.paths}
    ham10000.write_synthetic(first, n_per_class=4, seed=3, size=64)
    assert {p: p.stat().st_mtime_ns for p in a.paths} == before
    ham10000.write_synthetic(first, n_per_class=2, seed=3, size=64)
    assert len(ham10000.load(first).paths) == 16


def test_generator_refuses_a_folder_that_is_not_its_own(tmp_path):
    real = write_layout(tmp_path / "real", ROWS, IMAGES)
    with pytest.raises(ValueError, match="refusing"):
        ham10000.write_synthetic(real, n_per_class=2, seed=0)
    assert ham10000.load(real).synthetic is False


def test_lesion_groups_never_straddle_splits(tmp_path):
    dataset = ham10000.load(ham10000.write_synthetic(tmp_path / "s", n_per_class=10, seed=1, size=48))
    parts = split(dataset, seed=0)
    groups = np.asarray(dataset.groups)
    sets = [set(groups[idx]) for idx in (parts.train, parts.valid, parts.test)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sorted(np.concatenate([parts.train, parts.valid, parts.test]).tolist()) == list(range(len(groups)))
    assert len(set(dataset.labels[parts.test].tolist())) >= 5  # stratified too


def test_example_images_are_deterministic_pngs_the_shared_preprocessing_decodes():
    spec = ImageInput(
        kind="image",
        input_name="image",
        height=96,
        width=96,
        channels=3,
        layout="NCHW",
        mean=[0.485, 0.456, 0.406],
        std=[0.229, 0.224, 0.225],
    )
    digests = set()
    for name in ham10000.CLASSES:
        data = ham10000.example_image(name)
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and data == ham10000.example_image(name)
        assert Image.open(io.BytesIO(data)).size == (128, 128)
        tensor = tensor_from_bytes(data, spec)
        assert tensor.shape == (3, 96, 96) and tensor.dtype == np.float32 and np.all(np.isfinite(tensor))
        digests.add(hashlib.sha256(data).hexdigest())
    assert len(digests) == len(ham10000.CLASSES)
    assert ham10000.example_image("mel", size=64, seed=1) != ham10000.example_image("mel", size=64, seed=2)
    with pytest.raises(ValueError, match="unknown HAM10000 class"):
        ham10000.example_image("melanoma")
