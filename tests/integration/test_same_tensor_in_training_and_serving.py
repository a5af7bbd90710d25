"""Training and serving must compute the same tensor from the same image file: the
tensor training evaluates (datasets.common.tensors) is bit-identical to the one the
serving path feeds to ONNX Runtime (serving.predict_images)."""

import numpy as np
import pytest
from PIL import Image

from med_classifier.domain.manifest import ImageInput
from med_classifier.domain.serving import ModelCache, predict_images
from tests.helpers.image_models import colour_candidate
from tests.helpers.models import publish
from training.datasets.common import ImageDataset, tensors

pytestmark = pytest.mark.slow


def write_images(folder) -> list:
    rng = np.random.default_rng(7)
    paths = []
    for i, (fmt, size, mode) in enumerate(
        [("JPEG", (600, 450), "RGB"), ("PNG", (33, 47), "RGBA"), ("PNG", (64, 64), "L"), ("JPEG", (120, 90), "L")]
    ):
        channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
        pixels = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8).squeeze()
        path = folder / f"image{i}.{fmt.lower()}"
        Image.fromarray(pixels, mode=mode).save(path, fmt)
        paths.append(path)
    return paths


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_training_tensors_equal_serving_tensors(tmp_path, store, layout):
    candidate = colour_candidate(f"colour-{layout.lower()}", layout=layout)
    publish(store, candidate)
    spec = ImageInput(**candidate.input_spec)
    paths = write_images(tmp_path)
    dataset = ImageDataset(
        name="t",
        source=str(tmp_path),
        classes=candidate.classes,
        paths=paths,
        labels=np.zeros(len(paths), dtype=np.int64),
    )
    training_batch = tensors(dataset, np.arange(len(paths)), spec)

    cache = ModelCache(store, refresh_seconds=60)
    loaded = cache.get(candidate.model_id)
    fed = []
    original = loaded.classifier.predict
    loaded.classifier.predict = lambda batch: (fed.append(batch.copy()), original(batch))[1]
    predict_images(cache, candidate.model_id, [p.read_bytes() for p in paths])

    (serving_batch,) = fed
    assert serving_batch.dtype == training_batch.dtype == np.float32
    assert (
        serving_batch.shape == training_batch.shape == (len(paths), *((3, 32, 32) if layout == "NCHW" else (32, 32, 3)))
    )
    np.testing.assert_array_equal(serving_batch, training_batch)
