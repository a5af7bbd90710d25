"""An uploaded object is checked before it counts: its uploader, and a JPEG or PNG header (read
with the standard library: the counter's layer has no Pillow) within the byte and pixel limits.
Each refusal is pinned with its exact message, which becomes the quarantine reason. The gate
runs against an in-memory UploadStore (tests/helpers/fakes.py): no AWS."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from med_classifier.domain.image_files import ImageHeader, InvalidImageHeader, TruncatedImageHeader, image_header
from med_classifier.domain.preprocessing import DEFAULT_MAX_PIXELS
from med_classifier.domain.upload_checks import (
    ACCEPTED,
    GONE,
    HEADER_READ_BYTES,
    QUARANTINED,
    RefusedUpload,
    StoredUpload,
    UploadChecks,
    UploadGate,
    check_upload,
)
from med_classifier.domain.uploads import DEFAULT_MAX_UPLOAD_BYTES, UploadedObject
from tests.helpers.fakes import MemoryUploads
from tests.helpers.models import REPO_ROOT

SUB = "0f6e8a52-1c5d-4e0b-9d7a-2b6c3e4f5a61"  # a Cognito sub
KEY = "uploads/chest-ct/normal/a.png"
UPLOAD = UploadedObject("uploads-bucket", KEY, "chest-ct", "normal")


def saved(fmt: str, size=(37, 21), mode="RGB", **options) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, "red").save(out, fmt, **options)
    return out.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header(width: int, height: int, depth: int = 8, colour: int = 2, interlace: int = 0) -> bytes:
    """A PNG signature and IHDR chunk only: the header of an image of any size, without its pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)


def jpeg_segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def jpeg_header(width: int, height: int, marker: int = 0xC0, before: bytes = b"") -> bytes:
    """SOI, a JFIF APP0, `before`, then a frame header (SOFn) for three components."""
    app0 = jpeg_segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    frame = jpeg_segment(marker, struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01")
    return b"\xff\xd8" + app0 + before + frame


def refusal(data: bytes) -> str:
    with pytest.raises(InvalidImageHeader) as raised:
        image_header(data)
    return raised.value.message


# --- the header ---------------------------------------------------------------------------------


def test_a_png_header_gives_its_format_and_size():
    assert image_header(saved("PNG")) == ImageHeader("PNG", 37, 21)
    assert image_header(saved("PNG", (3, 5), "L")) == ImageHeader("PNG", 3, 5)


def test_a_baseline_jpeg_header_gives_its_format_and_size():
    data = saved("JPEG")
    assert b"\xff\xc0" in data  # SOF0
    assert image_header(data) == ImageHeader("JPEG", 37, 21)


def test_a_progressive_jpeg_header_gives_its_format_and_size():
    data = saved("JPEG", progressive=True)
    assert b"\xff\xc2" in data and b"\xff\xc0" not in data  # SOF2 only
    assert image_header(data) == ImageHeader("JPEG", 37, 21)


def test_the_jpeg_frame_header_is_found_after_fill_bytes_and_other_segments():
    comment = jpeg_segment(0xFE, b"made by hand")
    assert image_header(jpeg_header(640, 480, before=comment + b"\xff\xff")) == ImageHeader("JPEG", 640, 480)


def test_a_truncated_png_is_refused_as_truncated():
    data = saved("PNG")
    for cut in (12, 20, 32):  # inside the chunk's length and type, inside its fields, inside its CRC
        with pytest.raises(TruncatedImageHeader) as raised:
            image_header(data[:cut])
        assert raised.value.message == "The PNG file ends before its IHDR chunk is complete."


def test_a_truncated_jpeg_is_refused_as_truncated():
    data = saved("JPEG")
    frame = data.index(b"\xff\xc0")
    for cut in (4, frame, frame + 6):  # inside APP0, before the frame header, inside it
        with pytest.raises(TruncatedImageHeader) as raised:
            image_header(data[:cut])
        assert raised.value.message == "The JPEG file ends before its frame header (SOFn)."


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, this is text", b"\x89PNG\r\n", b"\xff\xd8", b"%PDF-1.7\n", saved("BMP")],
    ids=["empty", "text", "half-png-signature", "half-jpeg-signature", "pdf", "bmp"],
)
def test_what_is_not_a_jpeg_or_png_is_refused(data):
    assert refusal(data) == "The file is not a JPEG or PNG image."


def test_a_gif_is_refused_as_not_a_jpeg_or_png():
    data = saved("GIF")
    assert data.startswith(b"GIF89a") or data.startswith(b"GIF87a")
    assert refusal(data) == "The file is not a JPEG or PNG image."


@pytest.mark.parametrize(
    "data, size",
    [
        (png_header(0, 21), "0x21"),
        (png_header(37, 0), "37x0"),
    ],
)
def test_a_png_of_zero_width_or_height_is_refused(data, size):
    assert refusal(data) == f"The PNG header gives a size of {size} pixels; width and height must be at least 1."


def test_a_jpeg_of_zero_width_or_height_is_refused():
    assert refusal(jpeg_header(0, 480)) == (
        "The JPEG header gives a size of 0x480 pixels; width and height must be at least 1."
    )
    # Height 0 means "defined later by a DNL marker", which libjpeg does not support.
    assert refusal(jpeg_header(640, 0, marker=0xC2)) == (
        "The JPEG header gives a size of 640x0 pixels; width and height must be at least 1."
    )


def test_a_png_whose_first_chunk_is_not_a_13_byte_ihdr_is_refused():
    signature = b"\x89PNG\r\n\x1a\n"
    assert (
        refusal(signature + png_chunk(b"tEXt", b"a" * 13)) == "The PNG file does not begin with a 13-byte IHDR chunk."
    )
    assert (
        refusal(signature + png_chunk(b"IHDR", b"a" * 14)) == "The PNG file does not begin with a 13-byte IHDR chunk."
    )


def test_a_png_whose_ihdr_fails_its_crc_is_refused():
    data = bytearray(png_header(37, 21))
    data[16 + 3] ^= 0x01  # width 37 -> 36, CRC unchanged
    assert refusal(bytes(data)) == "The PNG file's IHDR chunk fails its CRC check."


@pytest.mark.parametrize(
    "fields",
    [{"depth": 3}, {"colour": 5}, {"colour": 2, "depth": 4}, {"colour": 3, "depth": 16}, {"interlace": 2}],
)
def test_a_png_ihdr_with_an_impossible_depth_colour_type_or_method_is_refused(fields):
    assert refusal(png_header(37, 21, **fields)) == (
        "The PNG file's IHDR chunk has an invalid bit depth, colour type, compression, filter or interlace method."
    )


def test_the_png_ihdr_fields_that_decoders_accept_pass():
    for colour, depths in {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}.items():
        for depth in depths:
            assert image_header(png_header(5, 7, depth, colour, interlace=1)) == ImageHeader("PNG", 5, 7)


@pytest.mark.parametrize("marker", [0xDA, 0xD9], ids=["image-data", "end-of-image"])
def test_a_jpeg_without_a_frame_header_before_its_image_data_or_end_is_refused(marker):
    data = b"\xff\xd8" + jpeg_segment(0xFE, b"no frame") + bytes([0xFF, marker]) + b"\x00\x08" + b"\x00" * 16
    assert refusal(data) == "The JPEG file has no frame header (SOFn) before its image data or end."


@pytest.mark.parametrize("length", [0, 1])
def test_a_jpeg_segment_shorter_than_its_length_field_is_refused(length):
    data = b"\xff\xd8\xff\xe0" + struct.pack(">H", length) + b"\x00" * 32
    assert refusal(data) == f"The JPEG file has a segment of length {length}; at least 2 is required."


def test_a_jpeg_frame_header_too_short_for_a_size_is_refused():
    data = b"\xff\xd8" + jpeg_segment(0xC0, b"\x08\x01\x00\x01") + b"\x00" * 16
    assert refusal(data) == "The JPEG file's frame header (SOFn) is shorter than 8 bytes."


def test_a_jpeg_with_more_segments_than_any_encoder_writes_before_its_frame_is_refused():
    comments = jpeg_segment(0xFE, b"") * 257
    assert refusal(jpeg_header(8, 8, before=comments)) == (
        "The JPEG file has more than 256 segments before its frame header; at most 256 are accepted."
    )
    assert image_header(jpeg_header(8, 8, before=jpeg_segment(0xFE, b"") * 255)) == ImageHeader("JPEG", 8, 8)


def test_the_header_reader_imports_neither_pillow_nor_numpy():
    import subprocess
    import sys

    probe = (
        "import sys; sys.modules['PIL'] = None; sys.modules['numpy'] = None\n"
        "from med_classifier.domain.upload_checks import check_upload\n"
        "from med_classifier.domain.image_files import image_header\n"
        f"print(image_header({saved('PNG')!r}).width)"
    )
    env = {"PYTHONPATH": str(REPO_ROOT / "layers" / "shared" / "python"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "37"


# --- the decision -------------------------------------------------------------------------------


def stored(data: bytes, uploader: str | None = SUB) -> tuple[StoredUpload, list[int]]:
    reads: list[int] = []

    def read(length: int) -> bytes:
        reads.append(length)
        return data[:length]

    metadata = {} if uploader is None else {"uploader": uploader}
    return StoredUpload(size=len(data), metadata=metadata), reads


def refused_because(data: bytes, uploader: str | None = SUB, checks: UploadChecks | None = None) -> str:
    info, _ = stored(data, uploader)
    with pytest.raises(RefusedUpload) as raised:
        check_upload(info, lambda n: data[:n], checks or UploadChecks())
    return raised.value.message


def test_the_default_limits_are_the_presigned_uploads_and_the_image_functions():
    assert UploadChecks() == UploadChecks(max_bytes=DEFAULT_MAX_UPLOAD_BYTES, max_pixels=DEFAULT_MAX_PIXELS)
    assert (DEFAULT_MAX_UPLOAD_BYTES, DEFAULT_MAX_PIXELS) == (10 * 1024 * 1024, 2048 * 2048)


def test_an_image_with_an_uploader_within_the_limits_passes():
    for data in (saved("PNG"), saved("JPEG"), saved("JPEG", progressive=True)):
        info, _ = stored(data)
        assert check_upload(info, lambda n, d=data: d[:n], UploadChecks()).pixels == 37 * 21


@pytest.mark.parametrize("uploader", [None, "", "   "], ids=["missing", "empty", "blank"])
def test_an_object_without_an_uploader_is_refused(uploader):
    assert refused_because(saved("PNG"), uploader) == (
        "The object has no uploader: its metadata 'uploader' is missing or empty."
    )


def test_the_uploader_is_checked_before_the_object_is_read():
    info, reads = stored(saved("PNG"), uploader=None)
    with pytest.raises(RefusedUpload):
        check_upload(info, lambda n: pytest.fail("read"), UploadChecks())


def test_an_empty_object_is_refused_without_reading_it():
    info = StoredUpload(size=0, metadata={"uploader": SUB})
    with pytest.raises(RefusedUpload) as raised:
        check_upload(info, lambda n: pytest.fail("read"), UploadChecks())
    assert raised.value.message == "The object is empty."


def test_an_object_over_the_byte_limit_is_refused_without_reading_it():
    info = StoredUpload(size=DEFAULT_MAX_UPLOAD_BYTES + 1, metadata={"uploader": SUB})
    with pytest.raises(RefusedUpload) as raised:
        check_upload(info, lambda n: pytest.fail("read"), UploadChecks())
    assert raised.value.message == "The object is 10485761 bytes; at most 10485760 are accepted."
    at_limit = saved("PNG") + b"\x00" * (1000 - len(saved("PNG")))
    assert check_upload(StoredUpload(1000, {"uploader": SUB}), lambda n: at_limit[:n], UploadChecks(max_bytes=1000))


def test_an_image_of_more_pixels_than_the_limit_is_refused():
    assert refused_because(png_header(2049, 2048)) == (
        "The image is 2049x2048 pixels (4196352); at most 4194304 pixels are accepted."
    )
    assert refused_because(jpeg_header(5000, 5000)) == (
        "The image is 5000x5000 pixels (25000000); at most 4194304 pixels are accepted."
    )
    info, _ = stored(png_header(2048, 2048))
    assert check_upload(info, lambda n: png_header(2048, 2048)[:n], UploadChecks()).pixels == DEFAULT_MAX_PIXELS


def test_header_refusals_become_the_reason():
    assert refused_because(b"GIF89a" + b"\x00" * 40) == "The file is not a JPEG or PNG image."
    assert refused_because(saved("PNG")[:20]) == "The PNG file ends before its IHDR chunk is complete."
    assert refused_because(saved("JPEG")[:30]) == "The JPEG file ends before its frame header (SOFn)."


def test_a_jpeg_frame_header_beyond_the_first_read_is_read_on_to():
    data = saved("JPEG", progressive=True, icc_profile=b"p" * 300_000)  # ICC segments come first
    assert data.index(b"\xff\xc2") > 4 * HEADER_READ_BYTES
    info, reads = stored(data)
    assert check_upload(info, lambda n: (reads.append(n), data[:n])[1], UploadChecks()) == ImageHeader("JPEG", 37, 21)
    assert reads == [HEADER_READ_BYTES, len(data)]  # 8 times more, at most the whole object
    big = saved("JPEG", icc_profile=b"p" * 600_000)
    info, reads = stored(big)
    check_upload(info, lambda n: (reads.append(n), big[:n])[1], UploadChecks())
    assert reads == [HEADER_READ_BYTES, 8 * HEADER_READ_BYTES, len(big)]


def test_a_small_object_is_read_once_whole():
    data = saved("PNG")
    info, reads = stored(data)
    check_upload(info, lambda n: (reads.append(n), data[:n])[1], UploadChecks())
    assert reads == [len(data)]


def test_a_jpeg_truncated_after_the_first_read_is_read_to_its_end_then_refused():
    data = saved("JPEG", icc_profile=b"p" * 100_000)
    cut = data[: data.index(b"\xff\xc0")]  # the whole object ends before its frame header
    info, reads = stored(cut)
    with pytest.raises(RefusedUpload) as raised:
        check_upload(info, lambda n: (reads.append(n), cut[:n])[1], UploadChecks())
    assert raised.value.message == "The JPEG file ends before its frame header (SOFn)."
    assert reads == [HEADER_READ_BYTES, len(cut)]


def test_an_object_shorter_than_it_was_said_to_be_is_judged_on_what_it_holds():
    data = saved("PNG")[:20]  # replaced by a shorter object between HeadObject and GetObject
    info = StoredUpload(size=HEADER_READ_BYTES * 2, metadata={"uploader": SUB})
    with pytest.raises(RefusedUpload) as raised:
        check_upload(info, lambda n: data[:n], UploadChecks())
    assert raised.value.message == "The PNG file ends before its IHDR chunk is complete."


# --- the gate: accepted, quarantined with the reason, or gone -------------------------------------


def test_the_gate_accepts_a_good_upload_and_leaves_it_in_place():
    store = MemoryUploads({KEY: (saved("PNG"), {"uploader": SUB})})
    admission = UploadGate(store).admit(UPLOAD)
    assert (admission.verdict, admission.reason, admission.accepted) == (ACCEPTED, None, True)
    assert list(store.objects) == [KEY]


@pytest.mark.parametrize(
    "data, metadata, reason",
    [
        (b"not an image", {"uploader": SUB}, "The file is not a JPEG or PNG image."),
        (saved("PNG"), {}, "The object has no uploader: its metadata 'uploader' is missing or empty."),
        (saved("PNG"), {"uploader": ""}, "The object has no uploader: its metadata 'uploader' is missing or empty."),
    ],
    ids=["not-an-image", "no-uploader", "empty-uploader"],
)
def test_the_gate_moves_a_refused_upload_to_quarantine_with_its_reason(data, metadata, reason):
    store = MemoryUploads({KEY: (data, metadata)})
    admission = UploadGate(store).admit(UPLOAD)
    assert (admission.verdict, admission.reason, admission.accepted) == (QUARANTINED, reason, False)
    assert store.objects == {f"quarantine/{KEY}": (data, {"quarantine-reason": reason})}


def test_the_gate_checks_against_its_limits():
    store = MemoryUploads({KEY: (saved("PNG"), {"uploader": SUB})})
    admission = UploadGate(store, UploadChecks(max_pixels=37 * 21 - 1)).admit(UPLOAD)
    assert admission.reason == "The image is 37x21 pixels (777); at most 776 pixels are accepted."


def test_an_upload_already_moved_is_gone_neither_counted_nor_an_error():
    store = MemoryUploads({KEY: (b"not an image", {"uploader": SUB})})
    gate = UploadGate(store)
    assert gate.admit(UPLOAD).verdict == QUARANTINED
    again = gate.admit(UPLOAD)  # the notification redelivered
    assert (again.verdict, again.reason, again.accepted) == (GONE, None, False)
    assert list(store.objects) == [f"quarantine/{KEY}"]


@pytest.mark.parametrize("method", ["stat", "read_prefix"])
def test_a_store_error_while_checking_propagates_and_quarantines_nothing(method):
    store = MemoryUploads({KEY: (saved("PNG"), {"uploader": SUB})})
    store.errors[method] = [TimeoutError("S3 did not answer")]
    with pytest.raises(TimeoutError):
        UploadGate(store).admit(UPLOAD)
    assert list(store.objects) == [KEY]
    assert UploadGate(store).admit(UPLOAD).accepted  # the retry


def test_a_store_error_while_moving_propagates_and_the_retry_moves_it():
    store = MemoryUploads({KEY: (b"not an image", {"uploader": SUB})})
    store.errors["quarantine"] = [TimeoutError("S3 did not answer")]
    with pytest.raises(TimeoutError):
        UploadGate(store).admit(UPLOAD)
    assert list(store.objects) == [KEY]
    assert UploadGate(store).admit(UPLOAD).verdict == QUARANTINED
    assert list(store.objects) == [f"quarantine/{KEY}"]


def test_the_counter_checks_the_size_limit_its_deployment_sets():
    # MaxUploadBytes reaches the counter as it reaches the presigned POST (template.yaml, both functions).
    from med_classifier import services
    from med_classifier.settings import UploadCounterSettings

    environ = {"UPLOAD_COUNTS_TABLE": "c", "JOBS_TABLE": "j", "UPLOADS_BUCKET": "u", "MODELS_BUCKET": "m"}
    settings = UploadCounterSettings.from_environ({**environ, "MAX_UPLOAD_BYTES": "1234"})
    assert services.upload_gate(settings).checks == UploadChecks(max_bytes=1234)
    assert services.upload_gate(UploadCounterSettings.from_environ(environ)).checks == UploadChecks()
