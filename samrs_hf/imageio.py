"""Image reading that never decodes more than asked and names the file when it fails."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from .records import SourceError

# Remote-sensing scenes (DOTA up to ~20k px, FAIR1M 10k px) exceed Pillow's bomb guard.
Image.MAX_IMAGE_PIXELS = None


class CorruptImageError(SourceError):
    """An image file that is missing, truncated or not an image."""


def image_size(path) -> tuple[int, int]:
    """(width, height) from the file header only (no pixel decode)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError:
        raise CorruptImageError(f"{path}: missing image file") from None
    except Exception as exc:  # PIL raises several types for unreadable headers
        raise CorruptImageError(f"{path}: not a readable image ({exc})") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Grayscale, palette, RGBA and 16-bit images become 8-bit RGB (SAMRS fed SAM 3 channels)."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        hi = arr.max() or 1.0
        im = Image.fromarray((arr * (255.0 / hi)).clip(0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        return im.convert("RGBA").convert("RGB")
    return im.convert("RGB")


def open_rgb(path, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Decode an image (or the ``box`` = (x0, y0, x1, y1) region of it) as HxWx3 uint8 RGB.

    Regions reaching past the image edge are not padded here: the caller pads (tiling knows the
    padding value). Truncated files raise :class:`CorruptImageError` naming the file.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                if box is not None:
                    w, h = im.size
                    x0, y0, x1, y1 = box
                    crop = (max(0, x0), max(0, y0), min(w, x1), min(h, y1))
                    im = im.crop(crop)
                im.load()
                return np.asarray(to_rgb(im))
    except FileNotFoundError:
        raise CorruptImageError(f"{path}: missing image file") from None
    except Exception as exc:
        raise CorruptImageError(f"{path}: cannot decode image ({exc})") from None
