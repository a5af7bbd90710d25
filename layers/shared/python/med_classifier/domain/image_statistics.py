"""A few statistics of an image as it was sent (before compositing and resizing): what
out-of-distribution flags (domain/ood.py) and drift monitoring compare with the training images.

Cheap by construction: computed on a 64 x 64 nearest-neighbour sample of the image."""

from __future__ import annotations

from typing import Any

# name -> what it measures (0..1 scales), in the order reports list them.
STATISTICS = {
    "brightness": "mean gray level",
    "contrast": "standard deviation of the gray level",
    "colourfulness": "Hasler-Suesstrunk colourfulness (0 for a grayscale image)",
    "edge_density": "mean absolute difference between neighbouring pixels (high for noise)",
    "transparent_fraction": "share of pixels that are not fully opaque",
}
SAMPLE_SIDE = 64


def image_statistics(image: Any) -> dict[str, float]:
    """A Pillow image (any mode, EXIF orientation applied) -> STATISTICS' values."""
    import numpy as np
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        image = image.point(lambda v: v * (255.0 / 65535.0)).convert("L")
    sample = image.convert("RGBA").resize((SAMPLE_SIDE, SAMPLE_SIDE), Image.Resampling.NEAREST)
    pixels = np.asarray(sample, dtype=np.float32) / 255
    red, green, blue, alpha = pixels[..., 0], pixels[..., 1], pixels[..., 2], pixels[..., 3]
    gray = 0.299 * red + 0.587 * green + 0.114 * blue
    rg, yb = red - green, 0.5 * (red + green) - blue
    colourfulness = np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    edges = (np.abs(np.diff(gray, axis=0)).mean() + np.abs(np.diff(gray, axis=1)).mean()) / 2
    return {
        "brightness": float(gray.mean()),
        "contrast": float(gray.std()),
        "colourfulness": float(colourfulness),
        "edge_density": float(edges),
        "transparent_fraction": float(np.mean(alpha < 1.0)),
    }
