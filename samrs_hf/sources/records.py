"""The record types every source reader yields, and the problem report they fill.

One record type for all formats keeps the rest of the pipeline (tiling, prompts, the SAM engine,
the build) independent of where the boxes came from.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..common.errors import SamrsError

logger = logging.getLogger("samrs_hf")


@dataclass
class SourceObject:
    """One annotated object, in source-image pixels (origin top-left, x right, y down)."""

    category: str
    """Canonical class name from the subset's class table."""
    label: int
    """Class id in the subset's table."""
    hbox: tuple[float, float, float, float]
    """Horizontal box xyxy. For polygon sources: the per-axis min/max of the corners (= RH-Box)."""
    polygon: np.ndarray | None = None
    """(4, 2) float64 corners where the format has an oriented box, else None."""
    rbox: tuple[float, float, float, float, float] | None = None
    """(cx, cy, w, h, angle radians) where the format gives it (HRSC2016)."""
    difficult: bool = False
    truncated: bool = False
    where: str = ""
    """``file:line`` (text formats) or ``file:object[i]`` (XML/JSON) for error messages."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Format-specific fields (HRSC ``seg_color``, bow point, source ids ...)."""


@dataclass
class SourceImage:
    """One source image with all its objects, in annotation order."""

    image_id: str
    image_path: Path
    width: int
    height: int
    objects: list[SourceObject] = field(default_factory=list)
    annotation_path: Path | None = None
    split: str | None = None
    """Source split (``trainval``/``test``/``train``/``val``/``validation``) where known."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Format-specific fields (HRSC2016 ``segmentation_path`` ...)."""


class SourceError(SamrsError, ValueError):
    """Bad input that stops a read; the message names the file and line or element."""


# Problem kinds. Skips lose data and become errors with --strict; notes record a correction.
CORRUPT_IMAGE = "corrupt-image"
GARBLED_ANNOTATION = "garbled-annotation"
NON_FINITE = "non-finite-coordinate"
DEGENERATE_BOX = "degenerate-box"
OUT_OF_IMAGE = "out-of-image"
UNKNOWN_CLASS = "unknown-class"
MISSING_IMAGE = "missing-image"
MISSING_ANNOTATION = "missing-annotation"
EMPTY_ANNOTATION = "empty-annotation"
SIZE_MISMATCH = "size-mismatch"
DEGENERATE_WIDENED = "degenerate-box-widened"
NO_OBJECTS = "image-without-objects"
UNREADABLE_FILE = "unreadable-file"
"""An annotation file or folder the operating system refuses to read (permissions, I/O error)."""
UNSAFE_FILE = "unsafe-file"
"""A pickled file refused by :mod:`samrs_hf.common.safe_load` (code or memory it does not hold)."""
OUTSIDE_SOURCE = "outside-source"
"""An annotation naming a file outside the source (absolute path or ``..``)."""
ABSURD_COORDINATE = "absurd-coordinate"
"""A box coordinate beyond :data:`ABSURD_FACTOR` image sizes (see :func:`check_box`)."""


@dataclass
class Problem:
    kind: str
    where: str
    message: str
    skipped: bool = True
    """True when data was dropped (a skip); False for a note about a correction."""

    def __str__(self) -> str:
        return f"{self.where}: {self.kind}: {self.message}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "where": self.where, "message": self.message, "skipped": self.skipped}


@dataclass
class Report:
    """Collects every skip and correction so that nothing is dropped silently.

    With ``strict=True`` every skip raises :class:`SourceError` instead. ``log=False`` when the
    caller shows the problems itself (``samrs inspect`` prints its report): each is shown once.
    """

    strict: bool = False
    problems: list[Problem] = field(default_factory=list)
    log: bool = True

    def skip(self, kind: str, where: str, message: str) -> None:
        if self.strict:
            raise SourceError(f"{where}: {kind}: {message}")
        self.problems.append(Problem(kind, where, message, skipped=True))
        if self.log:
            logger.warning("skipped %s: %s: %s", where, kind, message)

    def note(self, kind: str, where: str, message: str) -> None:
        self.problems.append(Problem(kind, where, message, skipped=False))
        if self.log:
            logger.info("%s: %s: %s", where, kind, message)

    def extend(self, other: "Report") -> None:
        self.problems.extend(other.problems)

    @property
    def skips(self) -> list[Problem]:
        return [p for p in self.problems if p.skipped]

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(p.kind for p in self.problems).items()))

    def by_kind(self) -> dict[str, list[Problem]]:
        out: dict[str, list[Problem]] = {}
        for p in self.problems:
            out.setdefault(p.kind, []).append(p)
        return dict(sorted(out.items()))

    def to_dict(self) -> dict:
        return {
            "counts": self.counts(),
            "skipped": sum(p.skipped for p in self.problems),
            "problems": [p.to_dict() for p in self.problems],
        }


ABSURD_FACTOR = 10
"""Coordinates more than this many image sizes beyond an edge are ``absurd-coordinate`` skips."""
UNKNOWN_SIZE_LIMIT = 100_000
"""The image side (px) that :func:`check_box` assumes when the size is unknown (label-only reads)."""


def _absurd(value: float, size: float) -> bool:
    size = size if math.isfinite(size) else UNKNOWN_SIZE_LIMIT
    return value < -ABSURD_FACTOR * size or value > (ABSURD_FACTOR + 1) * size


def check_box(hbox, width: int, height: int, where: str, report: Report):
    """The one rule for box validity shared by all readers.

    * non-finite coordinates: skipped (``non-finite-coordinate``);
    * absurd coordinates: an x outside ``[-ABSURD_FACTOR * width, (ABSURD_FACTOR + 1) * width]``
      or a y outside the same range of ``height`` (with ``ABSURD_FACTOR`` = 10: more than ten image
      sizes beyond an edge; ``UNKNOWN_SIZE_LIMIT`` px stands for a size that is unknown, as in
      label-only reads) are skipped (``absurd-coordinate``): no annotation tool writes them, and
      SAM, the package and the COCO export would carry them on;
    * ``x1 < x0`` / ``y1 < y0``: skipped (``degenerate-box``);
    * zero width or height (DIOR has six such boxes): widened to one pixel
      (``x1 = x0 + 1``), noted as ``degenerate-box-widened``: SAM still gets a usable box;
    * entirely outside the image: skipped (``out-of-image``);
    * partly outside: kept unclipped, as SAMRS did.

    Returns the (possibly widened) xyxy tuple, or None when skipped.
    """
    x0, y0, x1, y1 = (float(v) for v in hbox)
    if not all(np.isfinite([x0, y0, x1, y1])):
        report.skip(NON_FINITE, where, f"non-finite coordinate in box {hbox!r}")
        return None
    if _absurd(x0, width) or _absurd(x1, width) or _absurd(y0, height) or _absurd(y1, height):
        size = f"{width}x{height}" if math.isfinite(width) and math.isfinite(height) else "unknown-size"
        report.skip(ABSURD_COORDINATE, where,
                    f"box {(x0, y0, x1, y1)} reaches more than {ABSURD_FACTOR} image sizes beyond the {size} image")
        return None
    if x1 < x0 or y1 < y0:
        report.skip(DEGENERATE_BOX, where, f"box has negative extent: {(x0, y0, x1, y1)}")
        return None
    if x1 == x0 or y1 == y0:
        report.note(DEGENERATE_WIDENED, where, f"zero width/height box {(x0, y0, x1, y1)} widened to 1 px")
        if x1 == x0:
            x1 = x0 + 1.0
        if y1 == y0:
            y1 = y0 + 1.0
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        report.skip(OUT_OF_IMAGE, where, f"box {(x0, y0, x1, y1)} lies outside the {width}x{height} image")
        return None
    return (x0, y0, x1, y1)


def relpath(path: Path, root: Path | None) -> str:
    """Short path for messages: relative to the source root when possible."""
    path = Path(path)
    if root is not None:
        try:
            return str(path.relative_to(root))
        except ValueError:
            pass
    return str(path)
