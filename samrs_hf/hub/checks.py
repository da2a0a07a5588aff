"""What packaging verifies before anything is published: each image's bytes, each object's class,
RLE and numbers. A failed check is a counted skip (an error under ``strict``) of that image or object.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from ..build.quality import quality_of
from ..common.errors import SamrsError
from ..sam.rle import check_rle
from ..sources import imageio as _pillow_limit  # noqa: F401  (lifts Pillow's pixel limit for remote-sensing scenes)
from ..sources.classes import ClassTable
from ..sources.records import (
    CORRUPT_IMAGE,
    DEGENERATE_BOX,
    MISSING_ANNOTATION,
    MISSING_IMAGE,
    NON_FINITE,
    SIZE_MISMATCH,
    UNKNOWN_CLASS,
    Report,
)

# Problem kinds of packaging (records.py has the ones shared with the readers).
CORRUPT_MASK = "corrupt-mask"
"""RLE counts that are not a mask of the image's size (garbage characters, runs past h x w)."""
LABEL_MISMATCH = "label-mismatch"
"""An instance whose ``label`` is not the class id of its ``category``."""


class PackagingError(SamrsError, ValueError):
    """Inputs that cannot become one dataset (mixed subsets, nothing to package, a folder not ours...)."""


def make_object(obj_id: int, class_id: int, bbox_xyxy, rbox, segmentation: dict, area, score, truncated,
                box_iou=None, fill=None) -> dict:
    """One entry of the ``objects`` feature (COCO ``[x, y, w, h]`` box). ``box_iou`` and ``fill`` are
    computed from the mask and the prompt box when not given (builds before them, the official release)."""
    x0, y0, x1, y1 = (float(v) for v in bbox_xyxy)
    if box_iou is None or fill is None:
        box_iou, fill = quality_of(segmentation, (x0, y0, x1, y1))
    return {
        "id": int(obj_id),
        "category": int(class_id),
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "rbox": None if rbox is None else [float(v) for v in rbox],
        "segmentation": {"size": [int(s) for s in segmentation["size"]], "counts": _counts_str(segmentation["counts"])},
        "area": int(area),
        "score": None if score is None else float(score),
        "truncated": None if truncated is None else bool(truncated),
        "box_iou": float(box_iou),
        "fill": float(fill),
    }


def _counts_str(counts) -> str:
    if isinstance(counts, bytes):
        return counts.decode("ascii")
    if not isinstance(counts, str):
        raise ValueError("segmentation counts must be a compressed RLE string")
    return counts


def read_bytes(path: Path, what: str, report: Report, where: str) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        report.skip(MISSING_IMAGE if what == "image" else MISSING_ANNOTATION, where, f"missing {what} file {path}")
    except OSError as exc:
        report.skip(CORRUPT_IMAGE, where, f"unreadable {what} file {path}: {exc}")
    return None


def _size_ok(size, expected: tuple[int, int], what: str, path: Path, report: Report, where: str) -> bool:
    if tuple(size) != tuple(expected):
        report.skip(SIZE_MISMATCH, where, f"{what} {path} is {size[0]}x{size[1]}, instances say {expected[0]}x{expected[1]}")
        return False
    return True


def image_ok(data: bytes, path: Path, expected: tuple[int, int], report: Report, where: str) -> bool:
    """The stored pixels are complete and uncorrupted, and of the instances' size.

    PNG: every chunk's CRC up to IEND, so a truncated or bit-flipped file fails (~0.5 ms; inflating
    an 800x800 patch costs ~8 ms). Other formats (DIOR's JPEGs): a decode, JPEG at 1/8 scale, which
    still reads the entropy-coded data to its end.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                size = im.size
                if im.format == "PNG":
                    im.verify()
                else:
                    im.draft(im.mode, (max(1, size[0] // 8), max(1, size[1] // 8)))
                    im.load()
    except Exception as exc:  # PIL raises many types for broken files
        report.skip(CORRUPT_IMAGE, where, f"corrupt image file {path}: {exc}")
        return False
    return _size_ok(size, expected, "image", path, report, where)


def gray_ok(data: bytes, path: Path, expected: tuple[int, int], report: Report, where: str) -> bool:
    """An uncorrupted PNG (chunk CRCs up to IEND) of the instances' size in a uint8 mode.

    Not decoded: that would cost ~1.5 ms per 800x800 map; class ids outside the table are found
    by ``samrs stats``, which packaging runs unless ``--no-stats``.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            mode, size = im.mode, im.size
            im.verify()
    except Exception as exc:  # PIL raises many types for broken files
        report.skip(CORRUPT_IMAGE, where, f"corrupt gray file {path}: {exc}")
        return False
    if not _size_ok(size, expected, "gray", path, report, where):
        return False
    if mode not in ("L", "P"):
        report.skip(CORRUPT_IMAGE, where, f"gray file {path} has mode {mode}, expected L (uint8 class ids)")
        return False
    return True


def instance_ok(table: ClassTable, class_id, category, segmentation: dict, size: tuple[int, int], at: str,
                report: Report) -> bool:
    """The per-instance rules shared by builds and releases: a known class, an RLE of the image's size
    whose runs cover exactly that size (pycocotools decodes longer runs past its buffer)."""
    if class_id is None or not 0 <= class_id < len(table):
        report.skip(UNKNOWN_CLASS, at, f"category {category!r} is not in the {table.subset} class table")
        return False
    w, h = size
    if [int(s) for s in segmentation["size"]] != [h, w]:
        report.skip(SIZE_MISMATCH, at, f"RLE size {list(segmentation['size'])} != image size [{h}, {w}]")
        return False
    try:
        check_rle(segmentation)
    except (ValueError, TypeError) as exc:
        report.skip(CORRUPT_MASK, at, f"segmentation counts are not a {h}x{w} mask: {exc}")
        return False
    return True


def values_ok(obj: dict, at: str, report: Report) -> bool:
    """Finite numbers and a box of non-negative extent: a NaN passes parquet but breaks every user."""
    numbers = [*obj["bbox"], *(obj["rbox"] or ()), *(() if obj["score"] is None else (obj["score"],)),
               obj["box_iou"], obj["fill"]]
    if not np.isfinite(numbers).all():
        report.skip(NON_FINITE, at, f"non-finite value in bbox {obj['bbox']}, rbox {obj['rbox']}, score {obj['score']}, "
                                    f"box_iou {obj['box_iou']} or fill {obj['fill']}")
        return False
    if obj["bbox"][2] < 0 or obj["bbox"][3] < 0:
        report.skip(DEGENERATE_BOX, at, f"box has negative extent: COCO [x, y, w, h] = {obj['bbox']}")
        return False
    return True
