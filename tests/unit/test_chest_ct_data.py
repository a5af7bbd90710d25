"""Chest CT data: the public layout's loader, the synthetic generator, example images."""

import io
import logging

import numpy as np
import pytest

from med_classifier.domain.preprocessing import tensor_from_bytes
from training import chest_ct as trainer
from training.datasets import chest_ct, common

ADENO_LONG = "adenocarcinoma_left.lower.lobe_T2_N0_M0_Ib"
LARGE_CELL = "large.cell.carcinoma_left.hilum_T2_N2_M0_IIIa"
SQUAMOUS = "squamous.cell.carcinoma_left.hilum_T1_N2_M0_IIIa"


def _image(path, fmt="PNG", mode="L", size=(20, 16)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.new(mode, size, 90).save(buffer, fmt)
    path.write_bytes(buffer.getvalue())


def test_flat_layout_maps_long_folder_names_and_skips_other_classes(tmp_path, caplog):
    _image(tmp_path / "normal" / "n1.png")
    _image(tmp_path / "normal" / "n2.JPG", fmt="JPEG", mode="RGB")
    _image(tmp_path / ADENO_LONG / "a1.jpeg", fmt="JPEG")
    _image(tmp_path / ADENO_LONG / "a2.PNG", mode="RGB")
    _image(tmp_path / LARGE_CELL / "l1.png")
    (tmp_path / "normal" / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.INFO, logger="training"):
        dataset = chest_ct.load(tmp_path)
    assert dataset.classes == ["normal", "adenocarcinoma"] and dataset.name == "chest-ct"
    names = {p.name: dataset.classes[label] for p, label in zip(dataset.paths, dataset.labels)}
    assert names == {"n1.png": "normal", "n2.JPG": "normal", "a1.jpeg": "adenocarcinoma", "a2.PNG": "adenocarcinoma"}
    assert dataset.splits is None and not dataset.synthetic
    assert LARGE_CELL in caplog.text  # the skipped class is reported


def test_split_folders_valid_or_val_and_short_test_names(tmp_path):
    root = tmp_path / "Data"  # the Kaggle archive wraps the layout in Data/
    for i in range(3):
        _image(root / "train" / ADENO_LONG / f"a{i}.png")
        _image(root / "train" / "normal" / f"n{i}.png")
    _image(root / "train" / SQUAMOUS / "s0.png")
    _image(root / "val" / ADENO_LONG / "va.png")
    _image(root / "val" / "normal" / "vn.png")
    _image(root / "test" / "adenocarcinoma" / "ta.png")
    _image(root / "test" / "normal" / "tn.png")
    _image(root / "test" / "large.cell.carcinoma" / "tl.png")

    dataset = chest_ct.load(tmp_path)
    assert len(dataset.paths) == 10
    by_name = {
        p.name: (split, dataset.classes[label])
        for p, split, label in zip(dataset.paths, dataset.splits, dataset.labels)
    }
    assert by_name["a0.png"] == ("train", "adenocarcinoma")
    assert by_name["va.png"] == ("valid", "adenocarcinoma") and by_name["vn.png"] == ("valid", "normal")
    assert by_name["ta.png"] == ("test", "adenocarcinoma") and by_name["tn.png"] == ("test", "normal")
    parts = common.split(dataset, seed=0)  # the layout's own splits are used as they are
    assert sorted(dataset.paths[i].name for i in parts.test) == ["ta.png", "tn.png"]
    assert sorted(dataset.paths[i].name for i in parts.valid) == ["va.png", "vn.png"]


def test_empty_or_missing_layout_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        chest_ct.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="no normal or adenocarcinoma images"):
        chest_ct.load(tmp_path)
    _image(tmp_path / "train" / LARGE_CELL / "l.png")
    (tmp_path / "train" / "normal").mkdir()
    with pytest.raises(ValueError, match="no normal or adenocarcinoma images"):
        chest_ct.load(tmp_path)


def test_synthetic_set_is_deterministic_in_the_public_layout(tmp_path):
    first = chest_ct.write_synthetic(tmp_path / "a", n_per_class=8, seed=7, size=64)
    second = chest_ct.write_synthetic(tmp_path / "b", n_per_class=8, seed=7, size=64)
    other = chest_ct.write_synthetic(tmp_path / "c", n_per_class=8, seed=8, size=64)
    a, b, c = (chest_ct.load(root) for root in (first, second, other))
    assert a.sha256() == b.sha256() != c.sha256()
    assert all(pa.read_bytes() == pb.read_bytes() for pa, pb in zip(a.paths, b.paths))
    assert a.synthetic and "NOT FOR CLINICAL USE" in (first / "SYNTHETIC.txt").read_text()
    assert sorted(p.name for p in first.iterdir()) == ["SYNTHETIC.txt", "test", "train", "valid"]
    assert sorted(p.name for p in (first / "train").iterdir()) == [ADENO_LONG, "normal"]
    assert a.class_counts() == {"normal": 8, "adenocarcinoma": 8}
    assert {s: a.splits.count(s) for s in ("train", "valid", "test")} == {"train": 10, "valid": 2, "test": 4}

    stamp = {p: p.stat().st_mtime_ns for p in a.paths}
    assert chest_ct.write_synthetic(first, n_per_class=8, seed=7, size=64) == first  # complete: reused
    assert {p: p.stat().st_mtime_ns for p in a.paths} == stamp
    (first / "SYNTHETIC.txt").unlink()  # incomplete -> regenerated, identical
    (first / "SYNTHETIC.txt").write_text("interrupted")
    chest_ct.write_synthetic(first, n_per_class=8, seed=7, size=64)
    assert chest_ct.load(first).sha256() == a.sha256()


def test_synthetic_writer_never_overwrites_other_data(tmp_path):
    _image(tmp_path / "normal" / "mine.png")
    with pytest.raises(ValueError, match="refusing"):
        chest_ct.write_synthetic(tmp_path, n_per_class=8, seed=0, size=64)
    assert (tmp_path / "normal" / "mine.png").exists()


def test_example_images_decode_with_the_shared_preprocessing():
    spec = trainer.image_input()
    tensors = {name: tensor_from_bytes(chest_ct.example_image(name), spec) for name in chest_ct.CLASSES}
    for tensor in tensors.values():
        assert tensor.shape == (128, 128, 1) and tensor.dtype == np.float32 and np.all(np.isfinite(tensor))
    assert not np.array_equal(tensors["normal"], tensors["adenocarcinoma"])
    assert chest_ct.example_image("normal") == chest_ct.example_image("normal")
    assert chest_ct.example_image("normal", seed=1) != chest_ct.example_image("normal")
    small = tensor_from_bytes(chest_ct.example_image("adenocarcinoma", size=64), spec)  # resized on decode
    assert small.shape == (128, 128, 1)
    with pytest.raises(ValueError, match="unknown class"):
        chest_ct.example_image("squamous")
