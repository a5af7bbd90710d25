"""The one image preprocessing implementation: bytes -> model input tensor.

Training (evaluation, calibration, parity) and serving both call these functions,
so a version sees at serving time exactly the tensor it was evaluated on:
decode (JPEG/PNG only) -> EXIF orientation -> RGB or grayscale -> resize ->
scale to [0, 1] -> (x - mean) / std -> NCHW or NHWC, all read from the manifest.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from .manifest import ImageInput

SUPPORTED_FORMATS = ("JPEG", "PNG")
# A decompression bomb is a small file that decodes to a huge bitmap. 40 MP covers
# every camera and dermatoscope we know of and bounds decode memory to ~160 MB.
DEFAULT_MAX_PIXELS = 40_000_000
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def decode_image(data: bytes, spec: ImageInput, pixel_limit: int = DEFAULT_MAX_PIXELS):
    """Decode and check an image; returns a Pillow image in the colour mode the model
    takes ("RGB" or "L"). Raises UnsupportedMediaType (not JPEG/PNG), PayloadTooLarge
    (decompression bomb) or InvalidInput (truncated or corrupt)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise InvalidInput("The image is empty.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except UnidentifiedImageError as exc:
        if data.startswith(_SIGNATURES):  # looks like one of ours, but its header is cut or broken
            raise InvalidInput("The image is truncated or corrupt (its header cannot be read).") from exc
        raise UnsupportedMediaType("Not a JPEG or PNG image.") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(f"The image decodes to more than {pixel_limit} pixels.") from exc
    except OSError as exc:
        raise InvalidInput("The image is truncated or corrupt (its header cannot be read).") from exc
    except Exception as exc:  # broken headers raise SyntaxError, ValueError, struct.error...
        raise InvalidInput(f"The image cannot be read: {type(exc).__name__}.") from exc
    width, height = image.size  # Pillow refuses images without pixels when it reads the header
    if width * height > pixel_limit:
        raise PayloadTooLarge(
            f"The image is {width}x{height} pixels; at most {pixel_limit} pixels are accepted "
            "(decompression-bomb guard). Downscale it first."
        )
    mode = "RGB" if spec.channels == 3 else "L"
    try:
        if image.format == "JPEG":
            # Let libjpeg decode at a reduced scale (never below the model's size): much
            # faster for camera-sized images, and training sees the same decode.
            image.draft(mode, (spec.width, spec.height))
        image.load()
        image = ImageOps.exif_transpose(image)
        return _to_mode(image, mode)
    except OSError as exc:  # Pillow: "image file is truncated", "broken data stream"
        raise InvalidInput(f"The image is truncated or corrupt: {exc}.") from exc
    except (ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InvalidInput(f"The image cannot be decoded: {exc}.") from exc


def _to_mode(image, mode: str):
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
    from PIL import Image

    if image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    # float32 throughout (a Python int divisor keeps it so): the tensor is float32 because every
    # operand is, not because it is cast at the end.
    pixels = np.asarray(image, dtype=np.float32) / 255
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    pixels = (pixels - mean) / std
    if spec.layout == "NCHW":
        pixels = pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels)


def tensor_from_bytes(data: bytes, spec: ImageInput, pixel_limit: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    return to_tensor(decode_image(data, spec, pixel_limit), spec)


def tensor_from_file(path: str | Path, spec: ImageInput) -> np.ndarray:
    return tensor_from_bytes(Path(path).read_bytes(), spec)


def batch_from_files(paths: Iterable[str | Path], spec: ImageInput) -> np.ndarray:
    """Stack the tensors of many files into one (N, ...) float32 batch."""
    items = [tensor_from_file(p, spec) for p in paths]
    if not items:
        shape = (
            (spec.channels, spec.height, spec.width)
            if spec.layout == "NCHW"
            else (spec.height, spec.width, spec.channels)
        )
        return np.zeros((0, *shape), dtype=np.float32)
    return np.stack(items)
