"""A JPEG or PNG file walked once and rebuilt with only what decoding needs, before Pillow reads it.

Pillow reads headers in Python, part by part, inflates every compressed PNG text chunk and ICC
profile and parses every EXIF entry; libjpeg revisits every coefficient of a progressive JPEG
once per scan. Files of a few kilobytes within every size limit cost seconds that way (measured
on this project's 2-core machine: 300,000 empty PNG chunks 3.8 s, 100 iCCP chunks 0.6 s, a 41 KB
JPEG with 1,000 scans 7.2 s, 300,000 JPEG comment segments 0.7 s, one EXIF block of 5,400
entries 73 ms, per image). So each file is walked here with bounded counts and C-speed
searches, refused when it has more parts than any encoder writes, and rebuilt from:

- PNG: IHDR, PLTE, tRNS, the first run of IDAT chunks as one chunk, IEND.
- JPEG: every segment before the first scan except comments and the APP segments Pillow only
  stores (ICC profiles, Photoshop blocks, MPF, extended XMP), then the scans as they are.
- Both: the EXIF orientation as a one-entry EXIF block (the only EXIF decoding uses).

What is dropped cannot change a decoded pixel: Pillow converts without ICC profiles. A PNG's
orientation is read from its eXIf chunk only (not from XMP or ImageMagick text chunks).
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from .errors import PayloadTooLarge

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
# libpng writes 8 KiB IDAT chunks: 4096 chunks hold a 32 MiB image, 8x the largest body accepted.
MAX_PNG_CHUNKS = 4096
# A camera JPEG has about 15 segments before its first scan; an ICC profile split in 64 KiB parts adds some.
MAX_JPEG_SEGMENTS = 256
# libjpeg writes 10 scans for a progressive colour JPEG, 6 for grayscale, 1 to 3 for a baseline one.
MAX_JPEG_SCANS = 16
ORIENTATION = 0x0112
_PNG_KEPT = (b"IHDR", b"PLTE", b"tRNS")
_EXIF_HEADER = b"Exif\x00\x00"
_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_PROGRESSIVE = (0xC2, 0xC6, 0xCA, 0xCE)
_FRAMES = (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
_STANDALONE = (0x01, *range(0xD0, 0xDA))  # markers without a length: TEM, RSTn, SOI, EOI
_FILL = re.compile(rb"\xff+")  # fill bytes before a marker


@dataclass(frozen=True)
class ImageFile:
    data: bytes  # what Pillow is given
    # libjpeg keeps every coefficient of the whole image when a JPEG has several scans (progressive,
    # or components in separate scans): reduced-scale decoding saves nothing of that work.
    full_size_decode: bool = False


def rebuilt(data: bytes) -> ImageFile:
    """The file reduced to what decoding needs; anything but PNG or JPEG is returned as it is.
    Raises PayloadTooLarge for a file of more chunks, segments or scans than any encoder writes;
    a truncated or corrupt structure is left for the decoder to refuse."""
    if data.startswith(PNG_SIGNATURE):
        return ImageFile(_rebuilt_png(data))
    if data.startswith(JPEG_SIGNATURE):
        return _rebuilt_jpeg(data)
    return ImageFile(data)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _rebuilt_png(data: bytes) -> bytes:
    kept, idat, exif, pos, chunks = [PNG_SIGNATURE], [], b"", len(PNG_SIGNATURE), 0
    end_chunk = previous = b""
    while pos + 8 <= len(data):
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise PayloadTooLarge(
                f"The PNG file has more than {MAX_PNG_CHUNKS} chunks; at most {MAX_PNG_CHUNKS} are accepted. "
                "Save it again with a standard encoder."
            )
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IDAT" and (not idat or previous == b"IDAT"):
            idat.append(body)  # a cut one too: the decoder then reports the truncation
        elif len(body) < length:
            break
        elif kind in _PNG_KEPT and not idat:
            kept.append(data[pos : pos + 12 + length])  # with its CRC, which Pillow checks
        elif kind == b"eXIf" and not exif:
            exif = body
        elif kind == b"IEND":
            end_chunk = data[pos : pos + 12 + length]
            break
        previous, pos = kind, pos + 12 + length
    if (orientation := exif_orientation(exif)) is not None:
        kept.append(_png_chunk(b"eXIf", orientation_exif(orientation)))
    if idat:
        kept.append(_png_chunk(b"IDAT", b"".join(idat)))
    return b"".join(kept) + end_chunk


def _rebuilt_jpeg(data: bytes) -> ImageFile:
    kept, exif, pos, segments = [data[:2]], [], 2, 0
    progressive, components = False, 0
    while (pos := data.find(b"\xff", pos)) >= 0:  # junk between segments is skipped, as libjpeg does
        pos = _FILL.match(data, pos).end()
        if pos >= len(data):
            break
        marker, start = data[pos], pos - 1
        if marker in _STANDALONE or marker == 0x00:
            pos += 1
            continue
        if pos + 3 > len(data):
            break
        (length,) = struct.unpack_from(">H", data, pos + 1)
        body, pos = data[pos + 3 : pos + 1 + length], pos + 1 + length
        if marker == 0xDA:  # the first scan: the rest is image data
            # Inside image data a 0xFF byte is followed by 0x00: 0xFFDA there starts a scan.
            _check_scans(1 + data.count(b"\xff\xda", pos))
            multiple = progressive or (bool(body) and body[0] < components)
            segment = _exif_segment(exif)
            return ImageFile(b"".join([*kept, segment, data[start:]]), full_size_decode=multiple)
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise PayloadTooLarge(
                f"The JPEG file has more than {MAX_JPEG_SEGMENTS} segments before its image data; at most "
                f"{MAX_JPEG_SEGMENTS} are accepted. Save it again with a standard encoder."
            )
        if marker in _FRAMES and len(body) >= 6:
            progressive, components = marker in _PROGRESSIVE, body[5]
        if marker == 0xE1 and body.startswith(_EXIF_HEADER):
            exif.append(body[len(_EXIF_HEADER) :])
        elif _kept_jpeg_segment(marker, body):
            kept.append(data[start:pos])
    return ImageFile(b"".join(kept))  # no image data: the decoder refuses it as truncated


def _kept_jpeg_segment(marker: int, body: bytes) -> bool:
    """Comments and the APP segments that only Pillow's info holds are dropped; APP0 (JFIF) and
    APP14 (Adobe) tell libjpeg the colour space, XMP may hold the orientation."""
    if marker == 0xFE or 0xE2 <= marker <= 0xED or marker == 0xEF:
        return False
    return marker != 0xE1 or body.startswith(_XMP_HEADER)


def _check_scans(scans: int) -> None:
    if scans > MAX_JPEG_SCANS:
        raise PayloadTooLarge(
            f"The JPEG file has {scans} scans; at most {MAX_JPEG_SCANS} are accepted. "
            "Save it again as a baseline or standard progressive JPEG."
        )


def _exif_segment(parts: list[bytes]) -> bytes:
    # Pillow joins the EXIF of every APP1 segment into one block; the orientation is read from that.
    orientation = exif_orientation(b"".join(parts))
    if orientation is None:
        return b""
    body = _EXIF_HEADER + orientation_exif(orientation)
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def exif_orientation(tiff: bytes) -> int | None:
    """The orientation tag of an EXIF block's first directory, or None (found without decoding the
    other entries: a directory may have 65,535)."""
    import numpy as np  # here, not at the top: settings import the pixel limits of preprocessing without it

    if tiff[:4] not in (b"II*\x00", b"MM\x00*") or len(tiff) < 8:
        return None
    order = "<" if tiff[:2] == b"II" else ">"
    (offset,) = struct.unpack_from(order + "I", tiff, 4)
    if offset + 2 > len(tiff):
        return None
    (count,) = struct.unpack_from(order + "H", tiff, offset)
    count = min(count, (len(tiff) - offset - 2) // 12)
    entry = np.dtype([("tag", order + "u2"), ("type", order + "u2"), ("count", order + "u4"), ("value", "V4")])
    entries = np.frombuffer(tiff, dtype=entry, count=count, offset=offset + 2)
    found = np.flatnonzero(entries["tag"] == ORIENTATION)
    if not found.size:
        return None
    kind, value = int(entries["type"][found[0]]), entries["value"][found[0]].tobytes()
    formats = {1: "B", 3: "H", 4: "I"}  # BYTE, SHORT, LONG: the value sits in the entry itself
    return struct.unpack_from(order + formats[kind], value)[0] if kind in formats else None


def orientation_exif(orientation: int) -> bytes:
    """A little-endian EXIF block holding only the orientation."""
    return b"II*\x00" + struct.pack("<IHHHIHHI", 8, 1, ORIENTATION, 3, 1, orientation & 0xFFFF, 0, 0)
