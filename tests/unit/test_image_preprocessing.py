"""The one preprocessing implementation: layouts, colour modes, and refusal of bad files."""

import inspect
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from med_classifier.domain.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from med_classifier.domain.manifest import ImageInput
from med_classifier.domain.preprocessing import (
    DEFAULT_MAX_PIXELS,
    batch_from_files,
    decode_image,
    tensor_from_bytes,
    tensor_from_file,
)

RGB_NCHW = ImageInput(
    input_name="image", height=8, width=6, channels=3, layout="NCHW", mean=[0.5, 0.25, 0.0], std=[0.5, 0.25, 1.0]
)
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


def test_decompression_bomb_is_refused_before_decoding():
    # 8000 x 6000 = 48 MP of zeros compresses to a few hundred KB.
    bomb = encode(Image.new("L", (8000, 6000)), "PNG", optimize=True)
    assert len(bomb) < 1_000_000
    with pytest.raises(PayloadTooLarge, match="pixels"):
        tensor_from_bytes(bomb, GRAY_NHWC)
    with pytest.raises(PayloadTooLarge):
        tensor_from_bytes(encode(Image.new("RGB", (11, 10))), RGB_NCHW, pixel_limit=100)


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


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_the_tensor_is_bit_identical_to_normalising_the_pixels_as_they_are_stored(layout, mode):
    # to_tensor normalises plane by plane for speed; a model evaluated on the HWC formula must
    # see exactly the same float32 values, in a C-contiguous array.
    channels = 3 if mode == "RGB" else 1
    spec = ImageInput(
        input_name="image", height=8, width=6, channels=channels, layout=layout,
        mean=[0.485, 0.456, 0.406][:channels], std=[0.229, 0.224, 0.225][:channels],
    )  # fmt: skip
    image = noise(size=(6, 8), mode=mode, seed=7)
    pixels = np.asarray(image, dtype=np.float32).reshape(8, 6, channels) / 255
    expected = (pixels - np.float32(spec.mean)) / np.float32(spec.std)
    expected = expected.transpose(2, 0, 1) if layout == "NCHW" else expected
    tensor = tensor_from_bytes(encode(image), spec)
    assert tensor.dtype == np.float32 and tensor.flags.c_contiguous
    assert tensor.shape == expected.shape and tensor.tobytes() == np.ascontiguousarray(expected).tobytes()


def test_an_image_of_the_models_size_is_not_resampled():
    image = noise(size=(8, 8), mode="L")
    tensor = tensor_from_bytes(encode(image), GRAY_NHWC)
    np.testing.assert_allclose(tensor[:, :, 0], (np.asarray(image) / 255 - 0.5) / 0.25, rtol=0, atol=1e-6)


def test_an_empty_batch_has_the_models_item_shape_in_either_layout():
    for spec, shape in ((RGB_NCHW, (0, 3, 8, 6)), (GRAY_NHWC, (0, 8, 8, 1))):
        batch = batch_from_files([], spec)
        assert batch.shape == shape and batch.dtype == np.float32


def test_sixteen_bit_values_map_to_eight_bits_by_rounding():
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    decoded = decode_image(encode(Image.fromarray(values)), GRAY_NHWC)
    assert decoded.mode == "L"
    np.testing.assert_array_equal(np.asarray(decoded), [[0, 1, 128, 255]])


@pytest.mark.parametrize(
    "image",
    [
        Image.new("LA", (4, 4), (0, 0)),
        Image.new("RGBA", (4, 4), (10, 20, 30, 0)),
    ],
    ids=["LA", "RGBA"],
)
def test_fully_transparent_pixels_become_white(image):
    np.testing.assert_array_equal(np.asarray(decode_image(encode(image), RGB_NCHW)), np.full((4, 4, 3), 255))


def test_a_palette_image_with_a_transparent_colour_is_composited_on_white():
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    image.putpixel((0, 0), 1)
    data = encode(image, transparency=0)
    pixels = np.asarray(decode_image(data, RGB_NCHW))
    assert tuple(pixels[0, 0]) == (200, 10, 10) and tuple(pixels[3, 3]) == (255, 255, 255)
    opaque = np.asarray(decode_image(encode(image), RGB_NCHW))  # no transparency: black stays black
    assert tuple(opaque[3, 3]) == (0, 0, 0)


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_never_below_the_models_size():
    decoded = decode_image(encode(noise(size=(800, 640)), "JPEG"), RGB_NCHW)  # model: 6 x 8
    assert decoded.size == (100, 80)  # libjpeg's 1/8 scale
    png = decode_image(encode(noise(size=(800, 640))), RGB_NCHW)
    assert png.size == (800, 640)


@pytest.mark.parametrize(
    "data, error, message",
    [
        (b"", InvalidInput, "The image is empty."),
        (b"%PDF-1.7 not an image", UnsupportedMediaType, "Not a JPEG or PNG image."),
        (
            b"\x89PNG\r\n\x1a\n" + b"\x00" * 10,
            InvalidInput,
            "The image is truncated or corrupt (its header cannot be read).",
        ),
        (
            b"\xff\xd8\xff" + b"\x00" * 10,
            InvalidInput,
            "The image is truncated or corrupt (its header cannot be read).",
        ),
    ],
    ids=["empty", "not an image", "cut PNG header", "cut JPEG header"],
)
def test_unreadable_bytes_get_exact_messages(data, error, message):
    with pytest.raises(error) as info:
        decode_image(data, RGB_NCHW)
    assert info.value.message == message


def test_the_pixel_limit_message_names_the_size_and_the_limit():
    with pytest.raises(PayloadTooLarge) as info:
        decode_image(encode(Image.new("RGB", (11, 10))), RGB_NCHW, pixel_limit=109)
    assert info.value.message == (
        "The image is 11x10 pixels; at most 109 pixels are accepted (decompression-bomb guard). Downscale it first."
    )
    assert decode_image(encode(Image.new("RGB", (11, 10))), RGB_NCHW, pixel_limit=110).size == (11, 10)


def test_the_default_pixel_limit_is_2048_squared():
    assert DEFAULT_MAX_PIXELS == 2048 * 2048
    assert inspect.signature(decode_image).parameters["pixel_limit"].default == DEFAULT_MAX_PIXELS
    assert inspect.signature(tensor_from_bytes).parameters["pixel_limit"].default == DEFAULT_MAX_PIXELS


def test_a_file_cut_inside_its_pixel_data_names_the_decoders_complaint():
    data = encode(noise(size=(64, 64)))
    with pytest.raises(InvalidInput) as info:
        decode_image(data[: len(data) // 2], RGB_NCHW)
    assert info.value.message.startswith("The image is truncated or corrupt: ")
    assert info.value.message != "The image is truncated or corrupt: ."


def test_tensors_and_batches_read_files(tmp_path):
    path = tmp_path / "one.png"
    path.write_bytes(encode(noise()))
    np.testing.assert_array_equal(tensor_from_file(path, RGB_NCHW), tensor_from_bytes(path.read_bytes(), RGB_NCHW))
    np.testing.assert_array_equal(tensor_from_file(str(path), RGB_NCHW), batch_from_files([path], RGB_NCHW)[0])


def png_with_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("width, height", [(0, 5), (5, 0)])
def test_an_image_without_pixels_is_refused_at_its_header(width, height):
    with pytest.raises(InvalidInput) as info:
        decode_image(png_with_header(width, height), RGB_NCHW)
    assert info.value.message == "The image is truncated or corrupt (its header cannot be read)."


def test_a_one_pixel_image_is_an_image():
    assert tensor_from_bytes(encode(Image.new("RGB", (1, 1), (255, 255, 255))), RGB_NCHW).shape == (3, 8, 6)


def test_a_header_the_decoder_chokes_on_is_named_by_its_error(monkeypatch):
    def broken_open(*args, **kwargs):
        raise struct.error("unpack requires a buffer of 4 bytes")

    monkeypatch.setattr(Image, "open", broken_open)
    with pytest.raises(InvalidInput) as info:
        decode_image(encode(Image.new("RGB", (2, 2))), RGB_NCHW)
    assert info.value.message == "The image cannot be read: error."


def test_sixteen_bit_values_round_to_the_nearest_eight_bit_level():
    values = np.array([[128, 129, 32767, 32768, 65407, 65535]], dtype=np.uint16)
    decoded = decode_image(encode(Image.fromarray(values)), GRAY_NHWC)
    np.testing.assert_array_equal(np.asarray(decoded), [[0, 1, 127, 128, 255, 255]])


def test_wide_integer_images_are_clipped_not_wrapped():
    from med_classifier.domain.preprocessing import _to_mode

    image = Image.fromarray(np.array([[-1000, 0, 70000, 65535]], dtype=np.int32), mode="I")
    np.testing.assert_array_equal(np.asarray(_to_mode(image, "L")), [[0, 0, 255, 255]])


def test_a_colour_jpeg_for_a_grayscale_model_is_decoded_at_libjpegs_draft_scale():
    data = encode(noise(size=(320, 320)), "JPEG")
    reference = Image.open(io.BytesIO(data))
    reference.draft("L", (8, 8))
    np.testing.assert_array_equal(np.asarray(decode_image(data, GRAY_NHWC)), np.asarray(reference.convert("L")))


def test_an_rgb_png_with_a_transparent_colour_key_is_composited_on_white():
    image = Image.new("RGB", (4, 4), (0, 0, 0))
    image.putpixel((0, 0), (200, 10, 10))
    pixels = np.asarray(decode_image(encode(image, transparency=(0, 0, 0)), RGB_NCHW))
    assert tuple(pixels[0, 0]) == (200, 10, 10) and tuple(pixels[3, 3]) == (255, 255, 255)
    grey = np.asarray(decode_image(encode(Image.new("L", (2, 2), 7), transparency=7), GRAY_NHWC))
    np.testing.assert_array_equal(grey, np.full((2, 2), 255))


@pytest.mark.parametrize("size", [(40, 40), (50, 50)], ids=["Pillow's warning", "Pillow's error"])
def test_pillows_own_decompression_bomb_checks_become_413(monkeypatch, size):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # warns above 1,000 pixels, refuses above 2,000
    with pytest.raises(PayloadTooLarge) as info:
        decode_image(encode(Image.new("L", size)), GRAY_NHWC, pixel_limit=10_000)
    assert info.value.message == "The image decodes to more than 10000 pixels."


def test_an_os_error_while_reading_the_header_is_invalid_input(monkeypatch):
    def failing_open(*args, **kwargs):
        raise OSError("broken data stream when reading image file")

    monkeypatch.setattr(Image, "open", failing_open)
    with pytest.raises(InvalidInput) as info:
        decode_image(encode(Image.new("RGB", (2, 2))), RGB_NCHW)
    assert info.value.message == "The image is truncated or corrupt (its header cannot be read)."


def test_a_value_error_while_decoding_is_invalid_input_naming_it(monkeypatch):
    from PIL import ImageOps

    def failing_transpose(image):
        raise ValueError("EXIF orientation out of range")

    monkeypatch.setattr(ImageOps, "exif_transpose", failing_transpose)
    with pytest.raises(InvalidInput) as info:
        decode_image(encode(Image.new("RGB", (2, 2))), RGB_NCHW)
    assert info.value.message == "The image cannot be decoded: EXIF orientation out of range."
