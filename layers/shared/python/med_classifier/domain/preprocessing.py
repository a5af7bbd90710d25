"""The one image preprocessing implementation: bytes -> model input tensor.

Training (evaluation, calibration, parity) and serving both call these functions,
so a version sees at serving time exactly the tensor it was evaluated on:
decode (JPEG/PNG only) -> EXIF orientation -> RGB or grayscale -> resize ->
scale to [0, 1] -> (x - mean) / std -> NCHW or NHWC, all read from the manifest.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ClassifierError, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from .image_files import JPEG_SIGNATURE, PNG_SIGNATURE, rebuilt
from .manifest import ImageInput

if TYPE_CHECKING:  # numpy is imported where pixels are: settings read the limits below without it
    import numpy as np

SUPPORTED_FORMATS = ("JPEG", "PNG")
# The models take 96x96 and 128x128 pixels: 2048x2048 is 16 times their side, more than any
# downscaling needs, and bounds one image's decode to ~0.2 s and ~64 MB on the image function
# (a PNG decodes at full size; a JPEG at libjpeg's reduced scale, which is what counts here).
DEFAULT_MAX_PIXELS = 2048 * 2048
# Decoded pixels in one request: three images of the largest size, or 16 of 886x886 (16 dermoscopy
# images of 600x450 take a third of it). At 16 MP the dearest request measured 0.97 s on the 2-core
# development machine; at 12 MP it stays under 0.8 s (scripts/bench_request_cost.py, README).
DEFAULT_MAX_REQUEST_PIXELS = 3 * DEFAULT_MAX_PIXELS
_SIGNATURES = (PNG_SIGNATURE, JPEG_SIGNATURE)
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


@dataclass(frozen=True)
class PixelLimits:
    per_image: int = DEFAULT_MAX_PIXELS
    per_request: int = DEFAULT_MAX_REQUEST_PIXELS


DEFAULT_PIXEL_LIMITS = PixelLimits()


@dataclass
class OpenedImage:
    """An image whose header has been read and whose pixels have not been decoded yet."""

    image: Any  # a Pillow image
    size: tuple[int, int]  # as stored
    decoded_size: tuple[int, int]  # what decoding produces and costs

    @property
    def decoded_pixels(self) -> int:
        return self.decoded_size[0] * self.decoded_size[1]


def open_image(data: bytes, spec: ImageInput, pixel_limit: int = DEFAULT_MAX_PIXELS) -> OpenedImage:
    """Read an image's header (no pixel is decoded) and refuse it if it decodes to more than
    `pixel_limit` pixels. Raises UnsupportedMediaType (not JPEG/PNG), PayloadTooLarge or
    InvalidInput (truncated or corrupt header)."""
    if not data:
        raise InvalidInput("The image is empty.")
    file = rebuilt(data)
    image = _open(file.data, data.startswith(_SIGNATURES), pixel_limit)
    size = image.size  # Pillow refuses images without pixels when it reads the header
    if image.format == "JPEG":
        # Let libjpeg decode at a reduced scale (never below the model's size): much faster
        # for camera-sized images, and training sees the same decode. Header-only: it sets the size.
        image.draft("RGB" if spec.channels == 3 else "L", (spec.width, spec.height))
    opened = OpenedImage(image, size, size if file.full_size_decode else image.size)
    if opened.decoded_pixels > pixel_limit:
        raise PayloadTooLarge(_too_many_pixels(opened, pixel_limit, file.full_size_decode))
    return opened


def _open(data: bytes, looks_like_ours: bool, pixel_limit: int):
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except UnidentifiedImageError as exc:
        if looks_like_ours:  # one of ours, but its header is cut or broken
            raise InvalidInput("The image is truncated or corrupt (its header cannot be read).") from exc
        raise UnsupportedMediaType("Not a JPEG or PNG image.") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(f"The image decodes to more than {pixel_limit} pixels.") from exc
    except OSError as exc:
        raise InvalidInput("The image is truncated or corrupt (its header cannot be read).") from exc
    except Exception as exc:  # broken headers raise SyntaxError, ValueError, struct.error...
        raise InvalidInput(f"The image cannot be read: {type(exc).__name__}.") from exc


def _too_many_pixels(opened: OpenedImage, pixel_limit: int, full_size_jpeg: bool) -> str:
    (width, height), (decoded_width, decoded_height) = opened.size, opened.decoded_size
    if opened.size == opened.decoded_size:
        why = " A progressive JPEG is decoded at its full size." if full_size_jpeg else ""
        return (
            f"The image is {width}x{height} pixels; at most {pixel_limit} pixels are accepted "
            f"(decompression-bomb guard).{why} Downscale it first."
        )
    return (
        f"The image is {width}x{height} pixels and decodes to {decoded_width}x{decoded_height}; at most "
        f"{pixel_limit} decoded pixels are accepted (decompression-bomb guard). Downscale it first."
    )


def decode_opened(opened: OpenedImage, spec: ImageInput):
    """Decode an opened image; returns a Pillow image in the colour mode the model takes ("RGB"
    or "L"). Raises InvalidInput (truncated or corrupt pixel data)."""
    return _to_mode(_decoded_as_sent(opened), "RGB" if spec.channels == 3 else "L")


def _decoded_as_sent(opened: OpenedImage):
    """The decoded image in its own mode, EXIF orientation applied."""
    from PIL import Image, ImageOps

    try:
        opened.image.load()
        return ImageOps.exif_transpose(opened.image)
    except OSError as exc:  # Pillow: "image file is truncated", "broken data stream"
        raise InvalidInput(f"The image is truncated or corrupt: {exc}.") from exc
    except (ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InvalidInput(f"The image cannot be decoded: {exc}.") from exc


def decode_image(data: bytes, spec: ImageInput, pixel_limit: int = DEFAULT_MAX_PIXELS):
    """Decode and check an image; returns a Pillow image in the colour mode the model takes ("RGB"
    or "L"). Raises UnsupportedMediaType (not JPEG/PNG), PayloadTooLarge (decompression bomb) or
    InvalidInput (truncated or corrupt)."""
    return decode_opened(open_image(data, spec, pixel_limit), spec)


def _to_mode(image, mode: str):
    import numpy as np
    from PIL import Image

    if image.mode in _SIXTEEN_BIT_MODES:
        # 16-bit grayscale (common for CT exports): scale to 8 bits, do not clip.
        pixels = np.asarray(image) * (255.0 / 65535.0)
        image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))  # uint8, 2-D: mode "L"
    if image.mode in ("RGBA", "LA") or "transparency" in image.info:
        # Transparent pixels (an alpha channel, or a PNG's transparent palette entry or colour key)
        # are composited on white rather than taking arbitrary colours.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, "white")
        image = Image.alpha_composite(background, rgba)
    return image if image.mode == mode else image.convert(mode)


def to_tensor(image, spec: ImageInput) -> np.ndarray:
    """A decoded image -> one float32 item in the manifest's layout (no batch axis)."""
    import numpy as np
    from PIL import Image

    if image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    # float32 throughout (a Python int divisor keeps it so): the tensor is float32 because every
    # operand is, not because it is cast at the end.
    pixels = np.asarray(image, dtype=np.float32) / 255
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    # Normalised plane by plane (CHW): broadcasting over a last axis of 3 runs numpy's inner loop
    # 3 elements at a time, 4x slower for a 96x96 RGB image. The same float32 operations on the
    # same values, so the tensor is bit-identical (tests/unit/test_preprocessing.py).
    planes = np.ascontiguousarray(pixels.transpose(2, 0, 1))
    planes -= np.asarray(spec.mean, dtype=np.float32)[:, None, None]
    planes /= np.asarray(spec.std, dtype=np.float32)[:, None, None]
    return planes if spec.layout == "NCHW" else np.ascontiguousarray(planes.transpose(1, 2, 0))


def tensor_from_bytes(data: bytes, spec: ImageInput, pixel_limit: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    return to_tensor(decode_image(data, spec, pixel_limit), spec)


def batch_from_bytes(
    images: Sequence[bytes], spec: ImageInput, limits: PixelLimits = DEFAULT_PIXEL_LIMITS
) -> np.ndarray:
    """One request's images -> an (N, ...) float32 batch (decode_batch without the statistics)."""
    return decode_batch(images, spec, limits, statistics=False)[0]


def decode_batch(
    images: Sequence[bytes], spec: ImageInput, limits: PixelLimits = DEFAULT_PIXEL_LIMITS, *, statistics: bool = True
) -> tuple[np.ndarray, list[dict[str, float]]]:
    """One request's images -> an (N, ...) float32 batch and each image's statistics as sent
    (domain.image_statistics; empty when not asked for). Every header is read and checked against
    both limits before any image is decoded, so a refused request costs no decoding. In a batch
    an error names the image (images[i]); its class, hence its status, is the image's own."""
    import numpy as np

    from .image_statistics import image_statistics

    opened, total = [], 0
    for index, data in enumerate(images):
        opened.append(_for_item(index, len(images), open_image, data, spec, limits.per_image))
        total += opened[-1].decoded_pixels
        if total > limits.per_request:
            raise PayloadTooLarge(
                f"images[{index}] brings the request to {total} decoded pixels; at most {limits.per_request} "
                "are accepted per request. Send fewer or smaller images.",
                details=[{"max_request_pixels": limits.per_request, "max_image_pixels": limits.per_image}],
            )
    tensors, summaries = [], []
    mode = "RGB" if spec.channels == 3 else "L"
    for index, item in enumerate(opened):
        as_sent = _for_item(index, len(opened), _decoded_as_sent, item)
        if statistics:
            summaries.append(image_statistics(as_sent))
        tensors.append(to_tensor(_to_mode(as_sent, mode), spec))
    return np.stack(tensors), summaries


def _for_item(index: int, count: int, step, *args):
    try:
        return step(*args)
    except ClassifierError as exc:
        if count == 1:
            raise
        raise type(exc)(f"images[{index}]: {exc.message}", details=exc.details) from exc


def tensor_from_file(path: str | Path, spec: ImageInput) -> np.ndarray:
    return tensor_from_bytes(Path(path).read_bytes(), spec)


def batch_from_files(paths: Iterable[str | Path], spec: ImageInput) -> np.ndarray:
    """Stack the tensors of many files into one (N, ...) float32 batch."""
    import numpy as np

    items = [tensor_from_file(p, spec) for p in paths]
    if not items:
        shape = (
            (spec.channels, spec.height, spec.width)
            if spec.layout == "NCHW"
            else (spec.height, spec.width, spec.channels)
        )
        return np.zeros((0, *shape), dtype=np.float32)
    return np.stack(items)
