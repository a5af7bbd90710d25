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

from .errors import InvalidInput, PayloadTooLarge

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
    while (found := _next_marker(data, pos)) is not None:
        marker, pos = found
        start = pos - 1
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


def _next_marker(data: bytes, pos: int) -> tuple[int, int] | None:
    """The next JPEG marker at or after `pos`: its byte and that byte's position, junk and fill bytes
    before it skipped as libjpeg skips them; None at the end of the data."""
    pos = data.find(b"\xff", pos)
    if pos < 0:
        return None
    pos = _FILL.match(data, pos).end()
    return (data[pos], pos) if pos < len(data) else None


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


# --- the header alone: format and size from a file's first bytes, without Pillow -----------------


class InvalidImageHeader(InvalidInput):
    """A file whose first bytes are not the header of a JPEG or PNG image of some size."""


class TruncatedImageHeader(InvalidImageHeader):
    """The bytes end before the header does: more of the file may complete it."""


@dataclass(frozen=True)
class ImageHeader:
    format: str  # "PNG" or "JPEG"
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


# PNG bit depths allowed for each colour type (PNG specification, 11.2.2).
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_IHDR_END = len(PNG_SIGNATURE) + 8 + 13 + 4  # signature, length and type, 13 bytes of fields, CRC


def image_header(data: bytes) -> ImageHeader:
    """The format and stored size of the JPEG or PNG file `data` begins (PNG: signature and IHDR;
    JPEG: its segments up to the first frame header, SOFn). Reads no pixel data. Raises
    TruncatedImageHeader when `data` ends before the header does, InvalidImageHeader otherwise."""
    if data.startswith(PNG_SIGNATURE):
        header = _png_header(data)
    elif data.startswith(JPEG_SIGNATURE):
        header = _jpeg_header(data)
    else:
        raise InvalidImageHeader("The file is not a JPEG or PNG image.")
    if header.width < 1 or header.height < 1:
        raise InvalidImageHeader(
            f"The {header.format} header gives a size of {header.width}x{header.height} pixels; "
            "width and height must be at least 1."
        )
    return header


def _png_header(data: bytes) -> ImageHeader:
    truncated = "The PNG file ends before its IHDR chunk is complete."
    if len(data) < len(PNG_SIGNATURE) + 8:
        raise TruncatedImageHeader(truncated)
    length, kind = struct.unpack_from(">I4s", data, len(PNG_SIGNATURE))
    if (length, kind) != (13, b"IHDR"):
        raise InvalidImageHeader("The PNG file does not begin with a 13-byte IHDR chunk.")
    if len(data) < _IHDR_END:
        raise TruncatedImageHeader(truncated)
    fields = data[len(PNG_SIGNATURE) + 4 : _IHDR_END - 4]  # the type and the fields, which the CRC covers
    if zlib.crc32(fields) != struct.unpack_from(">I", data, _IHDR_END - 4)[0]:
        raise InvalidImageHeader("The PNG file's IHDR chunk fails its CRC check.")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack_from(">IIBBBBB", fields, 4)
    if depth not in _PNG_DEPTHS.get(colour, ()) or (compression, filtering) != (0, 0) or interlace > 1:
        raise InvalidImageHeader(
            "The PNG file's IHDR chunk has an invalid bit depth, colour type, compression, filter or interlace method."
        )
    return ImageHeader("PNG", width, height)


def _jpeg_header(data: bytes) -> ImageHeader:
    truncated = "The JPEG file ends before its frame header (SOFn)."
    pos, segments = 2, 0
    while (found := _next_marker(data, pos)) is not None:
        marker, pos = found
        if marker == 0xD9 or marker == 0xDA:
            raise InvalidImageHeader("The JPEG file has no frame header (SOFn) before its image data or end.")
        if marker in _STANDALONE or marker == 0x00:
            pos += 1
            continue
        if pos + 3 > len(data):
            break
        (length,) = struct.unpack_from(">H", data, pos + 1)
        if length < 2:
            raise InvalidImageHeader(f"The JPEG file has a segment of length {length}; at least 2 is required.")
        if marker in _FRAMES:
            if length < 8:
                raise InvalidImageHeader("The JPEG file's frame header (SOFn) is shorter than 8 bytes.")
            if pos + 9 > len(data):
                break
            height, width = struct.unpack_from(">HH", data, pos + 4)
            return ImageHeader("JPEG", width, height)
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise InvalidImageHeader(
                f"The JPEG file has more than {MAX_JPEG_SEGMENTS} segments before its frame header; "
                f"at most {MAX_JPEG_SEGMENTS} are accepted."
            )
        pos += 1 + length
    raise TruncatedImageHeader(truncated)
