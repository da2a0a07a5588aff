"""Image reading that never decodes more than asked and names the file when it fails."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from .records import SourceError

MAX_IMAGE_PIXELS = 32768 * 32768
"""Larger images are refused before any pixel is decoded: a 60000x60000 header in a few kilobytes
would otherwise ask for 10 GB. Remote-sensing scenes (DOTA up to ~29k px a side, FAIR1M 10k px)
stay below it."""
# Pillow's own guard (warning at 89 Mpx, error at twice that) would refuse DOTA's scenes: ours replaces it.
Image.MAX_IMAGE_PIXELS = None


class CorruptImageError(SourceError):
    """An image file that is missing, truncated or not an image."""


def _open(path: Path) -> Image.Image:
    """``Image.open`` that refuses images above :data:`MAX_IMAGE_PIXELS` (header only, nothing decoded)."""
    im = Image.open(path)
    w, h = im.size
    if w * h > MAX_IMAGE_PIXELS:
        im.close()
        raise CorruptImageError(f"{path}: image of {w}x{h} pixels exceeds the decompression-bomb limit of "
                                f"{MAX_IMAGE_PIXELS} pixels (samrs_hf.sources.imageio.MAX_IMAGE_PIXELS)")
    return im


@contextmanager
def _named_errors(path: Path, what: str):
    """Whatever PIL raises becomes a :class:`CorruptImageError` naming the file (and the reason, or
    the exception's type when it has no message, as ``MemoryError()``)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    except CorruptImageError:
        raise
    except FileNotFoundError:
        raise CorruptImageError(f"{path}: missing image file") from None
    except Exception as exc:  # PIL raises several types for unreadable files
        raise CorruptImageError(f"{path}: {what} ({str(exc) or type(exc).__name__})") from None


def image_size(path) -> tuple[int, int]:
    """(width, height) from the file header only (no pixel decode)."""
    path = Path(path)
    with _named_errors(path, "not a readable image"), _open(path) as im:
        return im.size


def verify_image(path) -> None:
    """Decode every pixel (no conversion, nothing kept): truncated or corrupt pixel data, which a
    header read does not see, raises :class:`CorruptImageError` naming the file."""
    path = Path(path)
    with _named_errors(path, "cannot decode image"), _open(path) as im:
        im.load()


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
    with _named_errors(path, "cannot decode image"), _open(path) as im:
        if box is not None:
            w, h = im.size
            x0, y0, x1, y1 = box
            crop = (max(0, x0), max(0, y0), min(w, x1), min(h, y1))
            im = im.crop(crop)
        im.load()
        return np.asarray(to_rgb(im))
