"""Mask quality in datasets (``objects.box_iou`` / ``objects.fill``, :mod:`samrs_hf.build.quality`):
their per-class distributions for the card and ``samrs stats``, and dropping objects below thresholds.

Two places drop objects, and they treat the semantic map differently:

- packaging (``samrs package --min-score S --min-box-iou T``) repaints the pixels of each dropped
  object's mask: they take the class of the last kept mask covering them (instance order, the order the
  build paints in), else 255, so ``semantic``/``label`` agree with the kept objects;
- the loader (``samrs_hf.load(..., min_score=, min_box_iou=)``) filters the ``objects`` columns only, with a
  ``datasets`` ``map``: the semantic map is left as stored (repainting on every load would decode all masks).
"""

from __future__ import annotations

import io
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..build.layout import png_bytes
from ..build.quality import coco_rle, mask_quality
from .features import xywh_to_xyxy

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
"""The quantiles the card and ``samrs stats`` report per class."""


def object_quality(objects: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(box_iou, fill)`` of an ``objects`` feature; computed from the masks and boxes where the dataset
    was packaged before these fields existed."""
    if objects.get("box_iou") is not None and objects.get("fill") is not None \
            and None not in objects["box_iou"] and None not in objects["fill"]:
        return np.asarray(objects["box_iou"], dtype=np.float64), np.asarray(objects["fill"], dtype=np.float64)
    return mask_quality(list(objects["segmentation"]), [xywh_to_xyxy(b) for b in objects["bbox"]])


@dataclass(frozen=True)
class QualityFilter:
    """Keep objects with ``score >= min_score`` and ``box_iou >= min_box_iou`` (None: no threshold).
    Objects without a score (some converted releases) are kept by ``min_score``: nothing to judge."""

    min_score: float | None = None
    min_box_iou: float | None = None

    def __post_init__(self):
        for name in ("min_score", "min_box_iou"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"--{name.replace('_', '-')} must be a finite number, got {value}")

    @property
    def active(self) -> bool:
        return self.min_score is not None or self.min_box_iou is not None

    def describe(self) -> str:
        """``score >= 0.5, box_iou >= 0.3``"""
        parts = [f"{k} >= {v:g}" for k, v in (("score", self.min_score), ("box_iou", self.min_box_iou)) if v is not None]
        return ", ".join(parts) or "none"

    def below(self, objects: dict) -> tuple[np.ndarray, np.ndarray]:
        """Per object: (score below ``min_score``, box_iou below ``min_box_iou``), bool arrays."""
        n = len(objects["category"])
        low_score, low_iou = np.zeros(n, bool), np.zeros(n, bool)
        if self.min_score is not None:
            low_score = np.array([s is not None and s < self.min_score for s in objects["score"]], bool).reshape(n)
        if self.min_box_iou is not None and n:
            low_iou = object_quality(objects)[0] < self.min_box_iou
        return low_score, low_iou


@dataclass
class QualityDrops:
    """Objects a :class:`QualityFilter` dropped, per class id (an object below both thresholds counts
    once in ``dropped`` and in both reasons)."""

    dropped: Counter = field(default_factory=Counter)
    low_score: Counter = field(default_factory=Counter)
    low_box_iou: Counter = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.dropped.values())

    def to_dict(self, names) -> dict:
        return {"total": self.total, "per_class": {
            names[c]: {"dropped": self.dropped[c], "low_score": self.low_score[c], "low_box_iou": self.low_box_iou[c]}
            for c in sorted(self.dropped)}}


def select_objects(objects: dict, keep: np.ndarray) -> dict:
    """The ``objects`` columns of the kept objects only (ids unchanged: an id names one object whatever
    the thresholds)."""
    return {k: [v for v, kept in zip(values, keep) if kept] for k, values in objects.items()}


def repaint(gray: np.ndarray, objects: dict, keep: np.ndarray) -> np.ndarray:
    """``gray`` with the pixels of dropped masks painted again from the kept masks, in order (last wins).

    Only kept masks whose RLE box meets the cleared region's box are decoded (a 1024² patch may hold
    hundreds of objects, few of them near a dropped one)."""
    from pycocotools import mask as mask_utils

    def decode(seg):
        return mask_utils.decode(coco_rle(seg)).astype(bool)

    cleared = np.zeros(gray.shape, bool)
    for seg, kept in zip(objects["segmentation"], keep):
        if not kept:
            cleared |= decode(seg)
    out = gray.copy()
    out[cleared] = 255
    ys, xs = np.nonzero(cleared)
    if not len(ys):
        return out
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    for seg, category, kept in zip(objects["segmentation"], objects["category"], keep):
        if not kept:
            continue
        bx, by, bw, bh = mask_utils.toBbox(coco_rle(seg))
        if bx < x1 and by < y1 and bx + bw > x0 and by + bh > y0:
            out[decode(seg) & cleared] = category
    return out


def filter_example(example: dict, filt: QualityFilter, drops: QualityDrops) -> None:
    """Drop ``example``'s objects below ``filt`` (in place, counted in ``drops``); a packaging row's
    ``semantic``/``label`` PNG bytes are repainted where dropped masks were."""
    from PIL import Image

    objects = example["objects"]
    low_score, low_iou = filt.below(objects)
    keep = ~(low_score | low_iou)
    if keep.all():
        return
    for category, s, b, kept in zip(objects["category"], low_score, low_iou, keep):
        if not kept:
            drops.dropped[category] += 1
            drops.low_score[category] += int(s)
            drops.low_box_iou[category] += int(b)
    semantic = example.get("semantic")
    if isinstance(semantic, dict) and semantic.get("bytes"):
        with Image.open(io.BytesIO(semantic["bytes"])) as im:
            gray = np.asarray(im)
        semantic = dict(semantic, bytes=png_bytes(repaint(gray, objects, keep), "L"))
        example["semantic"] = example["label"] = semantic
    example["objects"] = select_objects(objects, keep)


def filter_rows(rows, filt: QualityFilter | None, drops: QualityDrops):
    """Packaging rows with objects below ``filt`` dropped (rows pass through when no threshold is set)."""
    for row in rows:
        if filt is not None and filt.active:
            filter_example(row.example, filt, drops)
        yield row


def _filter_batch(objects_batch: list[dict], filt: QualityFilter) -> dict:
    out = []
    for objects in objects_batch:
        low_score, low_iou = filt.below(objects)
        out.append(select_objects(objects, ~(low_score | low_iou)))
    return {"objects": out}


def drop_objects(ds, filt: QualityFilter):
    """``ds`` (a Dataset, DatasetDict or their iterable forms) with objects below ``filt`` removed from
    the ``objects`` columns by a batched ``map`` per split (features kept); the semantic map is not changed."""
    if hasattr(ds, "values"):  # (Iterable)DatasetDict: its map does not take features in every form
        return type(ds)({name: drop_objects(part, filt) for name, part in ds.items()})
    return ds.map(_filter_batch, batched=True, input_columns=["objects"], fn_kwargs={"filt": filt},
                  features=ds.features)


@dataclass
class QualityTally:
    """Per-class ``box_iou`` and ``fill`` values, for their quantiles."""

    box_iou: dict[int, list[np.ndarray]] = field(default_factory=dict)
    fill: dict[int, list[np.ndarray]] = field(default_factory=dict)

    def add(self, objects: dict) -> None:
        if not len(objects["category"]):
            return
        box_iou, fill = object_quality(objects)
        categories = np.asarray(objects["category"])
        for c in np.unique(categories):
            at = categories == c
            self.box_iou.setdefault(int(c), []).append(box_iou[at].astype(np.float32))
            self.fill.setdefault(int(c), []).append(fill[at].astype(np.float32))

    def summary(self, names) -> list[dict]:
        """Per class: ``{id, name, objects, box_iou: {q: value}, fill: {q: value}}`` (None without objects)."""
        rows = []
        for c, name in enumerate(names):
            iou = np.concatenate(self.box_iou.get(c, [np.zeros(0, np.float32)]))
            fill = np.concatenate(self.fill.get(c, [np.zeros(0, np.float32)]))
            rows.append({"id": c, "name": name, "objects": int(iou.size),
                         "box_iou": _quantiles(iou), "fill": _quantiles(fill)})
        return rows


def _quantiles(values: np.ndarray) -> dict[str, float] | None:
    if not values.size:
        return None
    return {f"p{round(q * 100):02d}": round(float(v), 4) for q, v in zip(QUANTILES, np.quantile(values, QUANTILES))}


def _cell(quantiles: dict | None) -> str:
    return "-" if quantiles is None else " / ".join(f"{v:.2f}" for v in quantiles.values())


def card_lines(summary: list[dict], filt: QualityFilter | None, drops: QualityDrops | None) -> list[str]:
    """The card's "Mask quality" section: what the numbers mean, the thresholds applied and the
    per-class table of quantiles and drops."""
    q = " / ".join(f"{round(x * 100)}" for x in QUANTILES)
    lines = [
        "Without ground truth, two numbers per object show how its SAM mask sits in the box it was prompted "
        "with: `box_iou`, the IoU of the mask's tight box with the prompt box (low when the mask leaks out of "
        "the box or covers only part of it), and `fill`, mask area / prompt box area (above 1 only when the "
        "mask leaks). Both are in `objects`; an empty mask scores 0 / 0.", ""]
    if filt is not None and filt.active:
        lines += [f"Objects were dropped while packaging unless {filt.describe()}: {drops.total} in all (per class "
                  "below). The pixels of a dropped object's mask were painted again from the kept masks (the last "
                  "kept mask covering a pixel gives its class, else 255), so `semantic`/`label` agree with "
                  "`objects`.", ""]
    else:
        lines += ["No object was dropped for its quality (`samrs package --min-score S --min-box-iou T` would "
                  "drop those below; `samrs_hf.load(..., min_score=S, min_box_iou=T)` drops them from `objects` "
                  "when loading, leaving the semantic map as stored).", ""]
    lines += [f"| id | name | objects | box_iou ({q} %) | fill ({q} %) | dropped (score / box_iou) |",
              "|---|---|---|---|---|---|"]
    for r in summary:
        c = r["id"]
        dropped = "-" if drops is None or not drops.dropped[c] else \
            f"{drops.dropped[c]} ({drops.low_score[c]} / {drops.low_box_iou[c]})"
        lines.append(f"| {c} | {r['name']} | {r['objects']} | {_cell(r['box_iou'])} | {_cell(r['fill'])} | {dropped} |")
    return lines
