"""Mask quality without ground truth: how a SAM mask sits in the box it was prompted with.

SAM labels from boxes fail in two visible ways: the mask leaks out of its box, or fills only a part of
it. Two numbers per object catch both without ground truth:

- ``box_iou``: IoU of the mask's tight box with the prompt box (1.0: the mask spans the box exactly;
  low when it leaks out or covers a corner only);
- ``fill``: mask area / prompt box area (about 1 for a box-shaped object, lower for diagonal ships or
  planes; far above 1 when the mask leaks).

Pixel ``(x, y)`` covers ``[x, x+1) x [y, y+1)``, the convention of pycocotools' ``toBbox`` and of the
prompt boxes, so a mask filling exactly the pixels of box ``[2, 3, 6, 8]`` scores 1.0 / 1.0. An empty
mask, or a prompt box without area, scores 0.0 / 0.0 (never a division by zero).
"""

from __future__ import annotations

import numpy as np


def coco_rle(segmentation: dict) -> dict:
    """The RLE as pycocotools takes it (``bytes`` counts, int size)."""
    counts = segmentation["counts"]
    return {"size": [int(s) for s in segmentation["size"]],
            "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def mask_quality(segmentations: list[dict], boxes_xyxy) -> tuple[np.ndarray, np.ndarray]:
    """``(box_iou, fill)``, float64 arrays with one entry per object, from COCO RLEs (``str`` or
    ``bytes`` counts) and the prompt boxes (``[N, 4]`` xyxy)."""
    from pycocotools import mask as mask_utils

    n = len(segmentations)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    rles = [coco_rle(s) for s in segmentations]
    tight = np.asarray(mask_utils.toBbox(rles), dtype=np.float64).reshape(n, 4)  # xywh
    area = np.asarray(mask_utils.area(rles), dtype=np.float64).reshape(n)
    box = np.asarray(boxes_xyxy, dtype=np.float64).reshape(n, 4)
    box_area = np.clip(box[:, 2] - box[:, 0], 0, None) * np.clip(box[:, 3] - box[:, 1], 0, None)
    tight_xyxy = np.concatenate([tight[:, :2], tight[:, :2] + tight[:, 2:]], axis=1)
    lo = np.maximum(tight_xyxy[:, :2], box[:, :2])
    hi = np.minimum(tight_xyxy[:, 2:], box[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    union = tight[:, 2] * tight[:, 3] + box_area - inter
    valid = (area > 0) & (box_area > 0)
    box_iou = np.where(valid, inter / np.where(union > 0, union, 1.0), 0.0)
    fill = np.where(valid, area / np.where(box_area > 0, box_area, 1.0), 0.0)
    return box_iou, fill


def quality_of(segmentation: dict, box_xyxy) -> tuple[float, float]:
    """``(box_iou, fill)`` of one object."""
    box_iou, fill = mask_quality([segmentation], [box_xyxy])
    return float(box_iou[0]), float(fill[0])
