"""The build output layout: the one contract between ``samrs build`` and everything that reads it.

::

    OUT/images/<name>.png      the (cropped) image as labelled (uncut sources may keep their bytes
                               and extension, e.g. DIOR ``.jpg``)
    OUT/gray/<name>.png        uint8 class ids, 255 unlabelled
    OUT/color/<name>.png       shared palette, white unlabelled
    OUT/ins/<name>.json        {"image", "source_image", "offset", "width", "height", "instances"}
    OUT/ins/<name>.pkl         (--pkl) SAMRS's own instance list
    OUT/build.json             the build report
    OUT/.samrs_build.*         the build's options (``.json``), lock and lock holder (see :mod:`samrs_hf.build.run`)

``<name>`` is the source image id, plus ``__<size>__<x>___<y>`` for a window; an id too long for a file
name is shortened with a hash (:func:`samrs_hf.sources.tiling.patch_name`) and kept whole in ``source_image``.
These (and ``.samrs_parts/``) are all a build writes, and all ``--overwrite`` deletes.

All writes go through :func:`atomic_write` (temp file + rename), so a killed build never leaves
a half-written file under a final name.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from ..common.files import atomic_write  # noqa: F401 -- the layout's writes, re-exported for its readers
from ..sources.records import SourceError

IMAGES, GRAY, COLOR, INS = "images", "gray", "color", "ins"
REPORT = "build.json"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def png_bytes(array: np.ndarray, mode: str | None = None, palette: list[int] | None = None,
              compress_level: int = 6) -> bytes:
    """Deterministic PNG encoding (no timestamps, fixed compression)."""
    im = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    if palette is not None:
        im = im.convert("P") if im.mode != "P" else im
        im.putpalette(palette)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=None, separators=(",", ":"), sort_keys=False) + "\n").encode()


@dataclass
class BuildItem:
    """One labelled image of a build, as packaging and statistics read it."""

    name: str
    image_path: Path
    gray_path: Path
    color_path: Path
    ins_path: Path

    def load_instances(self) -> dict:
        """The ``ins/<name>.json`` record; errors name the file."""
        try:
            with open(self.ins_path, encoding="utf-8") as f:
                record = json.load(f)
        except FileNotFoundError:
            raise SourceError(f"{self.ins_path}: missing instance file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SourceError(f"{self.ins_path}: corrupt instance file ({exc})") from None
        missing = {"image", "source_image", "offset", "width", "height", "instances"} - set(record)
        if missing:
            raise SourceError(f"{self.ins_path}: instance file lacks {sorted(missing)}")
        return record


def find_image(build_dir: Path, name: str) -> Path | None:
    base = Path(build_dir) / IMAGES
    for ext in IMAGE_EXTENSIONS:
        p = base / f"{name}{ext}"
        if p.exists():
            return p
    return None


def is_build_dir(path) -> bool:
    path = Path(path)
    return (path / REPORT).is_file() and (path / INS).is_dir()


def read_report(build_dir) -> dict:
    path = Path(build_dir) / REPORT
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SourceError(f"{path}: not a samrs build (no build.json)") from None
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: corrupt build report ({exc})") from None


def iter_build_items(build_dir) -> Iterator[BuildItem]:
    """Every finished image of a build, sorted by name (the ``ins/*.json`` files define the set).

    An item whose image, gray or color file is missing is still yielded: readers decide whether
    that is an error or a counted skip.
    """
    build_dir = Path(build_dir)
    if not (build_dir / INS).is_dir():
        raise SourceError(f"{build_dir}: not a samrs build (no ins/ folder)")
    for ins_path in sorted((build_dir / INS).glob("*.json")):
        name = ins_path.stem
        image = find_image(build_dir, name) or build_dir / IMAGES / f"{name}.png"
        yield BuildItem(
            name=name,
            image_path=image,
            gray_path=build_dir / GRAY / f"{name}.png",
            color_path=build_dir / COLOR / f"{name}.png",
            ins_path=ins_path,
        )
