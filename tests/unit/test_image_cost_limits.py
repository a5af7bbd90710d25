"""What one image request may cost, decided from the files' headers and structure before any pixel
is decoded: pixels per image and per request (a JPEG counts at libjpeg's reduced scale unless it
is progressive), and parts per file (PNG chunks, JPEG segments and scans), with the files rebuilt
to what decoding needs (domain/image_files.py)."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from med_classifier.domain.errors import InvalidInput, PayloadTooLarge
from med_classifier.domain.image_files import (
    MAX_JPEG_SCANS,
    MAX_JPEG_SEGMENTS,
    MAX_PNG_CHUNKS,
    exif_orientation,
    orientation_exif,
    rebuilt,
)
from med_classifier.domain.manifest import ImageInput
from med_classifier.domain.preprocessing import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_REQUEST_PIXELS,
    PixelLimits,
    batch_from_bytes,
    decode_image,
    open_image,
    tensor_from_bytes,
)

RGB = ImageInput(input_name="image", height=8, width=6, channels=3, layout="NCHW", mean=[0.5] * 3, std=[0.5] * 3)
BOMB_GUARD = "(decompression-bomb guard)"


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares a size and whose pixel data is not zlib: decoding it would fail."""
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", b"not zlib") + chunk(b"IEND", b"")


def pixels(data: bytes, spec: ImageInput = RGB) -> np.ndarray:
    return np.asarray(decode_image(data, spec))


# --- the limits' defaults ----------------------------------------------------------------------------------


def test_the_defaults_are_2048_squared_per_image_and_three_times_that_per_request():
    assert DEFAULT_MAX_PIXELS == 2048 * 2048
    assert DEFAULT_MAX_REQUEST_PIXELS == 3 * 2048 * 2048
    assert PixelLimits() == PixelLimits(DEFAULT_MAX_PIXELS, DEFAULT_MAX_REQUEST_PIXELS)


# --- per image, from the header --------------------------------------------------------------------------


def test_the_pixel_limit_is_checked_on_the_header_before_decoding():
    # Decoding this file would fail (no pixel data): a 413 rather than a 422 shows nothing was decoded.
    with pytest.raises(PayloadTooLarge) as refused:
        open_image(png_header_only(3000, 2000), RGB, pixel_limit=5_999_999)
    assert refused.value.message == (
        f"The image is 3000x2000 pixels; at most 5999999 pixels are accepted {BOMB_GUARD}. Downscale it first."
    )


def test_a_baseline_jpeg_counts_the_pixels_it_decodes_to_at_reduced_scale():
    data = encode(noise(800, 640), "JPEG")  # decoded at 1/8 scale for a 6x8 model: 100x80
    assert open_image(data, RGB, pixel_limit=8000).decoded_size == (100, 80)
    with pytest.raises(PayloadTooLarge) as refused:
        open_image(data, RGB, pixel_limit=7999)
    assert refused.value.message == (
        f"The image is 800x640 pixels and decodes to 100x80; at most 7999 decoded pixels are accepted {BOMB_GUARD}. "
        "Downscale it first."
    )


def test_a_progressive_jpeg_counts_at_its_full_size():
    # libjpeg keeps every coefficient of a multi-scan JPEG, whatever the output scale.
    data = encode(noise(800, 640), "JPEG", progressive=True)
    with pytest.raises(PayloadTooLarge) as refused:
        open_image(data, RGB, pixel_limit=800 * 640 - 1)
    assert refused.value.message == (
        f"The image is 800x640 pixels; at most 511999 pixels are accepted {BOMB_GUARD}. "
        "A progressive JPEG is decoded at its full size. Downscale it first."
    )
    opened = open_image(data, RGB, pixel_limit=800 * 640)
    assert (opened.size, opened.decoded_size, opened.image.size) == ((800, 640), (800, 640), (100, 80))


def test_a_jpeg_whose_components_come_in_separate_scans_counts_at_full_size_too():
    first = encode(noise(64, 64), "JPEG", subsampling=0)
    body_at = first.index(b"\xff\xda") + 4
    assert first[body_at] == 3  # one interleaved scan of the 3 components
    assert rebuilt(first).full_size_decode is False
    separate = first[:body_at] + b"\x01" + first[body_at + 1 :]  # as if the first scan held one component
    assert rebuilt(separate).full_size_decode is True


# --- per request -----------------------------------------------------------------------------------------


def test_the_request_budget_is_checked_on_every_header_before_any_image_is_decoded():
    truncated = encode(noise(64, 64))[:300]  # would be a 422 if it were decoded first
    images = [truncated, png_header_only(100, 100), png_header_only(100, 100)]
    with pytest.raises(PayloadTooLarge) as refused:
        batch_from_bytes(images, RGB, PixelLimits(per_image=10_000, per_request=19_999 + 4096))
    assert refused.value.message == (
        "images[2] brings the request to 24096 decoded pixels; at most 24095 are accepted per request. "
        "Send fewer or smaller images."
    )
    assert refused.value.details == [{"max_request_pixels": 24095, "max_image_pixels": 10_000}]


def test_in_a_batch_the_per_image_limit_names_the_image():
    images = [encode(noise(10, 10)), encode(noise(30, 20))]
    with pytest.raises(PayloadTooLarge) as refused:
        batch_from_bytes(images, RGB, PixelLimits(per_image=599, per_request=10_000))
    assert refused.value.message == (
        f"images[1]: The image is 30x20 pixels; at most 599 pixels are accepted {BOMB_GUARD}. Downscale it first."
    )


def test_a_batch_within_both_limits_is_the_stack_of_its_tensors():
    images = [encode(noise(30, 20, seed)) for seed in range(3)]
    batch = batch_from_bytes(images, RGB, PixelLimits(per_image=600, per_request=1800))
    np.testing.assert_array_equal(batch, np.stack([tensor_from_bytes(d, RGB) for d in images]))


def test_a_single_image_error_is_not_prefixed():
    with pytest.raises(InvalidInput) as refused:
        batch_from_bytes([b"\x89PNG\r\n\x1a\n"], RGB)
    assert refused.value.message == "The image is truncated or corrupt (its header cannot be read)."


# --- PNG structure ---------------------------------------------------------------------------------------


def split_idat(data: bytes, parts: int) -> bytes:
    start = data.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", data[start : start + 4])
    body, bounds = data[start + 8 : start + 8 + length], [length * i // parts for i in range(parts + 1)]
    chunks = b"".join(chunk(b"IDAT", body[a:b]) for a, b in zip(bounds, bounds[1:]))
    return data[:start] + chunks + data[start + 12 + length :]


def test_a_png_of_more_chunks_than_any_encoder_writes_is_refused():
    data = encode(noise(120, 120))
    too_many = split_idat(data, MAX_PNG_CHUNKS - 1)  # + IHDR + IEND: one chunk over
    with pytest.raises(PayloadTooLarge) as refused:
        decode_image(too_many, RGB)
    assert refused.value.message == (
        "The PNG file has more than 4096 chunks; at most 4096 are accepted. Save it again with a standard encoder."
    )
    np.testing.assert_array_equal(pixels(split_idat(data, MAX_PNG_CHUNKS - 2)), pixels(data))


def test_a_png_keeps_only_what_decoding_needs_and_decodes_to_the_same_pixels():
    image = Image.new("P", (20, 10), 0)
    image.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    image.putpixel((3, 3), 1)
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "x" * 5000, zip=True)  # a compressed text chunk: Pillow would inflate it
    plain = encode(image, transparency=0)
    data = encode(image, transparency=0, pnginfo=info, icc_profile=b"\0" * 3000)
    kept = rebuilt(split_idat(data, 3)).data
    assert chunk_kinds(kept) == [b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"]
    np.testing.assert_array_equal(pixels(data), pixels(plain))


def chunk_kinds(data: bytes) -> list[bytes]:
    kinds, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kinds.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return kinds


def test_a_png_keeps_its_exif_orientation_and_nothing_else_of_its_exif():
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "Camera maker"
    data = encode(noise(40, 20), exif=exif.tobytes())
    kept = rebuilt(data).data
    assert b"Camera maker" not in kept and chunk_kinds(kept)[1] == b"eXIf"
    assert decode_image(data, RGB).size == (20, 40)  # rotated, as before


def test_a_png_cut_inside_its_pixel_data_still_names_the_decoders_complaint():
    data = encode(noise(64, 64))
    with pytest.raises(InvalidInput) as refused:
        decode_image(split_idat(data, 4)[: len(data) // 2], RGB)
    assert refused.value.message.startswith("The image is truncated or corrupt: ")


# --- JPEG structure --------------------------------------------------------------------------------------


def repeated_first_scan(data: bytes, scans: int) -> bytes:
    """A progressive JPEG whose first scan is repeated until it has `scans` (libjpeg decodes each again)."""
    first = data.index(b"\xff\xda")
    second = data.index(b"\xff\xda", first + 2)
    return data[:second] + data[first:second] * (scans - data.count(b"\xff\xda")) + data[second:]


def test_a_jpeg_of_more_scans_than_any_encoder_writes_is_refused():
    data = encode(noise(64, 64), "JPEG", progressive=True)
    with pytest.raises(PayloadTooLarge) as refused:
        decode_image(repeated_first_scan(data, MAX_JPEG_SCANS + 1), RGB)
    assert refused.value.message == (
        "The JPEG file has 17 scans; at most 16 are accepted. Save it again as a baseline or standard progressive JPEG."
    )
    assert decode_image(repeated_first_scan(data, MAX_JPEG_SCANS), RGB).size == (8, 8)  # 1/8 scale


def comments(count: int) -> bytes:
    return b"\xff\xfe\x00\x05abc" * count


def test_a_jpeg_of_more_segments_than_any_encoder_writes_is_refused():
    data = encode(noise(64, 64), "JPEG")  # SOI, APP0, 2 DQT, SOF, 4 DHT, then SOS: 8 segments before it
    with pytest.raises(PayloadTooLarge) as refused:
        decode_image(data[:2] + comments(MAX_JPEG_SEGMENTS - 7) + data[2:], RGB)
    assert refused.value.message == (
        "The JPEG file has more than 256 segments before its image data; at most 256 are accepted. "
        "Save it again with a standard encoder."
    )
    np.testing.assert_array_equal(pixels(data[:2] + comments(MAX_JPEG_SEGMENTS - 8) + data[2:]), pixels(data))


def test_a_jpeg_loses_comments_and_stored_only_app_segments_but_not_a_pixel():
    data = encode(noise(64, 64), "JPEG", icc_profile=b"\0" * 3000, comment=b"a comment")
    kept = rebuilt(b"\xff\xd8\xff\xff\xff" + data[2:]).data  # fill bytes before a marker are skipped too
    assert b"ICC_PROFILE" not in kept and b"a comment" not in kept
    np.testing.assert_array_equal(pixels(kept), pixels(data))


def test_the_jpeg_orientation_is_found_among_thousands_of_exif_entries_and_applied():
    count = 5000
    entries = struct.pack("<HHIHH", 0x9000, 3, 1, 1, 0) * (count - 1) + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0)
    exif = b"II*\x00" + struct.pack("<IH", 8, count) + entries + struct.pack("<I", 0)
    assert exif_orientation(exif) == 6
    data = encode(noise(40, 20), "JPEG")
    app1 = b"Exif\x00\x00" + exif
    with_exif = data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]
    kept = rebuilt(with_exif).data
    assert len(kept) < len(data) + 64  # one entry left
    assert decode_image(with_exif, RGB).size == decode_image(encode(noise(40, 20), "JPEG", exif=minimal(6)), RGB).size


def minimal(orientation: int) -> bytes:
    return b"Exif\x00\x00" + orientation_exif(orientation)


@pytest.mark.parametrize(
    "exif, orientation",
    [
        (b"MM\x00*" + struct.pack(">IHHHIHHI", 8, 1, 0x0112, 3, 1, 8, 0, 0), 8),  # big-endian
        (b"II*\x00" + struct.pack("<IHHHIII", 8, 1, 0x0112, 4, 1, 3, 0), 3),  # LONG
        (b"II*\x00" + struct.pack("<IHHHIHHI", 8, 1, 0x0110, 3, 1, 8, 0, 0), None),  # no orientation tag
        (b"II*\x00" + struct.pack("<IH", 8, 60000), None),  # a count the block cannot hold
        (b"II*\x00" + struct.pack("<I", 4000), None),  # a directory past the end
        (b"not exif", None),
        (b"", None),
    ],
)
def test_exif_orientation_reads_the_first_directory_only(exif, orientation):
    assert exif_orientation(exif) == orientation


def test_the_xmp_orientation_of_a_jpeg_still_applies():
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    assert decode_image(encode(noise(40, 20), "JPEG", xmp=xmp), RGB).size == (10, 20)
