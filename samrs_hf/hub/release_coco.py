"""The COCO-JSON variant of the release (the authors' multi-task release of the same data).

``trainval/<subset>[_rbb]_{train,valid}_ins_segmentation.json`` hold COCO instances (compressed or
uncompressed RLE, or polygons; ``category_id`` indexes the subset's class list, whose names the file's
``categories`` give) for the images in ``trainval/images/``; ``trainval/rbbtxts/<name>.txt`` hold the
rotated boxes in DOTA's line form. Each annotation is turned into the release's own instance record
(``mask``, ``bbox`` xyxy, ``category``, ``label``, ``rbox``), so the pickle reader's checks and row
building (:mod:`.release`) make the rows: one code path, the same features.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..build.layout import png_bytes
from ..sources.classes import IGNORE_INDEX, ClassTable
from ..sources.geometry import polygon_to_hbox
from ..sources.records import GARBLED_ANNOTATION, Report, SourceError
from .release_lists import list_name

RBOX_UNMATCHED = "rbox-unmatched"
RBOX_MIN_IOU = 0.5
"""A rotated box is attached to the object of its class whose box it overlaps most, at least this much."""


@dataclass(frozen=True)
class CocoImage:
    name: str
    file_name: str
    split: str
    width: int | None
    height: int | None
    annotations: tuple
    categories: dict
    """category_id -> name (from the file's ``categories``)"""
    where: str


def read_coco_file(path: Path, split: str) -> list[CocoImage]:
    """The images of one ``*_ins_segmentation.json`` with their annotations."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        categories = {c["id"]: str(c["name"]) for c in data.get("categories", ())}
        anns: dict = {}
        for a in data.get("annotations", ()):
            anns.setdefault(a["image_id"], []).append(a)
        images = [CocoImage(list_name(im["file_name"]), str(im["file_name"]), split, im.get("width"),
                            im.get("height"), tuple(anns.get(im["id"], ())), categories, f"{path}:images[{k}]")
                  for k, im in enumerate(data["images"])]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise SourceError(f"{path}: not a COCO instances file ({exc!r})") from exc
    return images


def _rle(segmentation, h: int, w: int) -> dict:
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):  # polygons; pycocotools raises IndexError/Exception on degenerate ones
        polygons = [list(map(float, p)) for p in segmentation]
        if not polygons or any(len(p) < 6 or len(p) % 2 for p in polygons):
            raise ValueError(f"segmentation needs polygons of at least 3 x,y points, got {segmentation!r:.80}")
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))
    elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(segmentation, h, w)
    else:
        rle = segmentation
    counts = rle["counts"]
    return {"size": [int(s) for s in rle["size"]], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def release_records(image: CocoImage, size: tuple[int, int], rbbtxt: Path | None, table: ClassTable,
                    report: Report) -> list[dict] | None:
    """The image's annotations as release instance records (None: a garbled annotation, counted)."""
    w, h = size
    records = []
    for k, ann in enumerate(image.annotations):
        try:
            x, y, bw, bh = (float(v) for v in ann["bbox"])
            cat = ann["category_id"]
            records.append({"mask": _rle(ann["segmentation"], h, w), "bbox": [x, y, x + bw, y + bh],
                            "category": image.categories.get(cat), "label": int(cat)})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            report.skip(GARBLED_ANNOTATION, f"{image.where}:annotation[{k}]", f"bad COCO annotation ({exc!r})")
            return None
    if rbbtxt is not None and rbbtxt.is_file():
        try:
            attach_rboxes(records, read_rbbtxt(rbbtxt), table, str(rbbtxt), report)
        except (SourceError, OSError) as exc:  # the rotated boxes are extra: the masks still make the row
            report.note(GARBLED_ANNOTATION, str(rbbtxt), f"{exc}; this image's objects keep no rotated box")
    return records


def read_rbbtxt(path: Path) -> list[tuple[list[float], str]]:
    """``(8 corners, class name)`` per DOTA line (header lines such as ``gsd:`` are not boxes)."""
    boxes = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        parts = line.split()
        if len(parts) < 9 or ":" in parts[0]:
            continue
        try:
            boxes.append(([float(v) for v in parts[:8]], parts[8]))
        except ValueError as exc:
            raise SourceError(f"{path}:{n}: not a rotated box line ({exc})") from exc
    return boxes


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def attach_rboxes(records: list[dict], rboxes, table: ClassTable, where: str, report: Report) -> None:
    """Set each record's ``rbox``: in order when the file lists the same classes in the same order,
    else to the same-class rotated box whose horizontal extent overlaps the object's box most."""
    def class_of(name):
        return table.id_of(name)

    rec_classes = [class_of(r["category"]) if r["category"] is not None else r["label"] for r in records]
    if [class_of(c) for _, c in rboxes] == rec_classes:
        for r, (corners, _) in zip(records, rboxes):
            r["rbox"] = corners
        return
    free = list(range(len(rboxes)))
    unmatched = 0
    for r, cls in zip(records, rec_classes):
        scored = [(_iou(polygon_to_hbox(np.asarray(rboxes[i][0]).reshape(4, 2)), r["bbox"]), i)
                  for i in free if class_of(rboxes[i][1]) == cls]
        best = max(scored, default=(0.0, None))
        if best[1] is None or best[0] < RBOX_MIN_IOU:
            unmatched += 1
            continue
        r["rbox"] = rboxes[best[1]][0]
        free.remove(best[1])
    if unmatched:
        report.note(RBOX_UNMATCHED, where, f"{unmatched} of {len(records)} objects have no rotated box here")


def paint_gray(records: list[dict], size: tuple[int, int], table: ClassTable) -> bytes:
    """The semantic map when the release has no ``gray/``: masks painted in order, the last one wins."""
    from pycocotools import mask as mask_utils

    w, h = size
    gray = np.full((h, w), IGNORE_INDEX, np.uint8)
    for r in records:
        cls = table.id_of(r["category"]) if r["category"] is not None else r["label"]
        if cls is None:
            continue
        rle = dict(r["mask"], counts=r["mask"]["counts"].encode("ascii"))
        gray[mask_utils.decode(rle).astype(bool)] = cls
    return png_bytes(gray, "L")
