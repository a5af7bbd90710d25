"""The one preprocessing implementation: layouts, colour modes, and refusal of bad files."""

import io

import numpy as np
import pytest
from PIL import Image

from med_classifier.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from med_classifier.manifest import ImageInput
from med_classifier.preprocessing import batch_from_files, decode_image, tensor_from_bytes

RGB_NCHW = ImageInput(input_name="image", height=8, width=6, channels=3, layout="NCHW",
                      mean=[0.5, 0.25, 0.0], std=[0.5, 0.25, 1.0])
GRAY_NHWC = ImageInput(input_name="image", height=8, width=8, channels=1, layout="NHWC", mean=[0.5], std=[0.25])


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_rgb_image_becomes_normalised_nchw_tensor():
    tensor = tensor_from_bytes(encode(Image.new("RGB", (30, 40), (255, 64, 0))), RGB_NCHW)
    assert tensor.shape == (3, 8, 6) and tensor.dtype == np.float32 and tensor.flags.c_contiguous
    # (x/255 - mean) / std per channel
    np.testing.assert_allclose(tensor[:, 0, 0], [(1.0 - 0.5) / 0.5, (64 / 255 - 0.25) / 0.25, 0.0], atol=1e-6)


def test_grayscale_nhwc_and_colour_input_converted_to_one_channel():
    tensor = tensor_from_bytes(encode(Image.new("RGB", (8, 8), (100, 100, 100))), GRAY_NHWC)
    assert tensor.shape == (8, 8, 1)
    np.testing.assert_allclose(tensor[0, 0, 0], (100 / 255 - 0.5) / 0.25, atol=1e-5)


def test_sixteen_bit_png_is_scaled_not_clipped():
    bright = Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))
    dim = Image.fromarray(np.full((8, 8), 32896, dtype=np.uint16))  # ~ half scale
    assert tensor_from_bytes(encode(bright), GRAY_NHWC)[0, 0, 0] == pytest.approx((1.0 - 0.5) / 0.25)
    assert tensor_from_bytes(encode(dim), GRAY_NHWC)[0, 0, 0] == pytest.approx((128 / 255 - 0.5) / 0.25, abs=0.02)


def test_transparent_pixels_are_white_and_exif_rotation_applied():
    clear = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert np.allclose(tensor_from_bytes(encode(clear), RGB_NCHW)[0], (1.0 - 0.5) / 0.5)
    wide = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° on display
    decoded = decode_image(encode(wide, "JPEG", exif=exif.tobytes()), RGB_NCHW)
    assert decoded.size[1] == 2 * decoded.size[0]  # portrait now (JPEG draft mode may downscale)


def test_not_an_image_is_unsupported_media_type():
    with pytest.raises(UnsupportedMediaType):
        tensor_from_bytes(b"%PDF-1.7 not an image", RGB_NCHW)
    with pytest.raises(UnsupportedMediaType):  # a real image, but not JPEG or PNG
        tensor_from_bytes(encode(Image.new("RGB", (8, 8)), "GIF"), RGB_NCHW)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files_are_invalid_input(fmt):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = encode(noise, fmt)
    for cut in (len(data) // 2, 40):
        with pytest.raises(InvalidInput, match="truncated|corrupt|cannot"):
            tensor_from_bytes(data[:cut], RGB_NCHW)
    with pytest.raises(InvalidInput):
        tensor_from_bytes(b"", RGB_NCHW)


def test_decompression_bomb_is_refused_before_decoding(monkeypatch):
    # 8000 x 6000 = 48 MP of zeros compresses to a few hundred KB.
    bomb = encode(Image.new("L", (8000, 6000)), "PNG", optimize=True)
    assert len(bomb) < 1_000_000
    with pytest.raises(PayloadTooLarge, match="pixels"):
        tensor_from_bytes(bomb, GRAY_NHWC)
    monkeypatch.setenv("MAX_IMAGE_PIXELS", "100")
    with pytest.raises(PayloadTooLarge):
        tensor_from_bytes(encode(Image.new("RGB", (11, 10))), RGB_NCHW)


def test_batch_from_files_stacks_items(tmp_path):
    paths = []
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0)]):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(encode(Image.new("RGB", (12, 12), colour)))
    batch = batch_from_files(paths, RGB_NCHW)
    assert batch.shape == (2, 3, 8, 6)
    np.testing.assert_array_equal(batch[1], tensor_from_bytes(paths[1].read_bytes(), RGB_NCHW))
    assert batch_from_files([], RGB_NCHW).shape == (0, 3, 8, 6)


# --- each step on its own, against a hand computation ---------------------------------------

def noise(size=(30, 20), mode="RGB", seed=1):
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8), mode=mode)


def test_resizing_is_bilinear_then_scaled_normalised_and_transposed():
    image = noise()
    expected = np.asarray(image.resize((6, 8), Image.Resampling.BILINEAR), dtype=np.float32) / np.float32(255)
    expected = ((expected - np.float32([0.5, 0.25, 0.0])) / np.float32([0.5, 0.25, 1.0])).transpose(2, 0, 1)
    tensor = tensor_from_bytes(encode(image), RGB_NCHW)
    np.testing.assert_allclose(tensor, expected, rtol=0, atol=1e-6)
    assert tensor.dtype == np.float32


def test_an_image_of_the_models_size_is_not_resampled():
    image = noise(size=(8, 8), mode="L")
    tensor = tensor_from_bytes(encode(image), GRAY_NHWC)
    np.testing.assert_allclose(tensor[:, :, 0], (np.asarray(image) / 255 - 0.5) / 0.25, rtol=0, atol=1e-6)


def test_an_empty_batch_has_the_models_item_shape_in_either_layout():
    for spec, shape in ((RGB_NCHW, (0, 3, 8, 6)), (GRAY_NHWC, (0, 8, 8, 1))):
        batch = batch_from_files([], spec)
        assert batch.shape == shape and batch.dtype == np.float32
