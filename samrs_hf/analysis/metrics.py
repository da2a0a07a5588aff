"""Segmentation metrics shared by the prompt ablation (Eq. 1) and SEP evaluation / fine-tuning."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class InstanceIoU:
    """Accumulates Eq. 1 of the paper over instances.

    mIoU_I = mean over instances of I_i / U_i; mIoU_P = sum I_i / sum U_i. Instances whose union
    is 0 (empty prediction and empty ground truth) have no IoU: they are skipped and counted.
    """

    intersections: list[int]
    unions: list[int]
    skipped_empty: int = 0

    def __init__(self):
        self.intersections, self.unions, self.skipped_empty = [], [], 0

    def add(self, pred: np.ndarray, target: np.ndarray) -> float | None:
        """Add one instance; returns its IoU, or None when its union is 0."""
        pred = np.asarray(pred, dtype=bool)
        target = np.asarray(target, dtype=bool)
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from ground truth {target.shape}")
        inter = int(np.count_nonzero(pred & target))
        union = int(np.count_nonzero(pred | target))
        if union == 0:
            self.skipped_empty += 1
            return None
        self.intersections.append(inter)
        self.unions.append(union)
        return inter / union

    def add_counts(self, intersection: int, union: int) -> None:
        if union == 0:
            self.skipped_empty += 1
            return
        self.intersections.append(int(intersection))
        self.unions.append(int(union))

    def __len__(self) -> int:
        return len(self.unions)

    @property
    def miou_i(self) -> float:
        if not self.unions:
            return float("nan")
        return float(np.mean(np.asarray(self.intersections, np.float64) / np.asarray(self.unions, np.float64)))

    @property
    def miou_p(self) -> float:
        total = sum(self.unions)
        return float(sum(self.intersections) / total) if total else float("nan")

    def to_dict(self) -> dict:
        return {"mIoU_I": self.miou_i, "mIoU_P": self.miou_p, "instances": len(self),
                "skipped_empty_union": self.skipped_empty}


def miou_instances(preds, targets) -> dict:
    """Eq. 1 over paired instance masks."""
    acc = InstanceIoU()
    for p, t in zip(preds, targets, strict=True):
        acc.add(p, t)
    return acc.to_dict()


def confusion_matrix(pred, target, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """[num_classes, num_classes] int64 counts, rows = ground truth, columns = prediction.

    Pixels whose target is ``ignore_index`` are left out; any other target or prediction outside
    [0, num_classes) is an error (it means a label table mismatch, not noise).
    """
    pred = np.asarray(pred).ravel().astype(np.int64)
    target = np.asarray(target).ravel().astype(np.int64)
    if pred.shape != target.shape:
        raise ValueError(f"prediction has {pred.size} pixels, target {target.size}")
    keep = target != ignore_index
    pred, target = pred[keep], target[keep]
    for name, arr in (("target", target), ("prediction", pred)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{name} holds labels outside [0, {num_classes}) other than {ignore_index}")
    return np.bincount(target * num_classes + pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def scores_from_confusion(cm: np.ndarray, class_names=None) -> dict:
    """OA, per-class IoU/F1 and their means from a confusion matrix.

    Classes absent from both ground truth and prediction have no IoU/F1 (NaN) and are left out
    of the means, as mmseg does.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    gt = cm.sum(1)
    pr = cm.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = tp / (gt + pr - tp)
        f1 = 2 * tp / (gt + pr)
    total = cm.sum()
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(tp))]
    return {
        "OA": float(tp.sum() / total) if total else float("nan"),
        "mIoU": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        "mF1": float(np.nanmean(f1)) if np.isfinite(f1).any() else float("nan"),
        "IoU": {n: float(v) for n, v in zip(names, iou)},
        "F1": {n: float(v) for n, v in zip(names, f1)},
    }
