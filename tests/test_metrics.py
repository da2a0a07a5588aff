"""Eq. 1 of the paper (mIoU_I, mIoU_P) and the confusion-matrix scores on hand-made masks."""

import math

import numpy as np
import pytest

from samrs_hf.analysis.metrics import InstanceIoU, confusion_matrix, miou_instances, scores_from_confusion


def _mask(shape, *rects):
    m = np.zeros(shape, dtype=bool)
    for y0, y1, x0, x1 in rects:
        m[y0:y1, x0:x1] = True
    return m


def test_eq1_on_hand_made_instances():
    # instance A: gt 4x4=16 px, pred shifted by one column -> I=12, U=20
    gt_a = _mask((10, 10), (0, 4, 0, 4))
    pr_a = _mask((10, 10), (0, 4, 1, 5))
    # instance B: perfect 2x3 -> I=U=6
    gt_b = _mask((10, 10), (5, 7, 5, 8))
    # instance C: prediction misses completely -> I=0, U=1+4=5
    gt_c = _mask((10, 10), (9, 10, 9, 10))
    pr_c = _mask((10, 10), (0, 2, 8, 10))
    acc = InstanceIoU()
    assert acc.add(pr_a, gt_a) == pytest.approx(12 / 20)
    assert acc.add(gt_b, gt_b) == 1.0
    assert acc.add(pr_c, gt_c) == 0.0
    assert len(acc) == 3 and acc.skipped_empty == 0
    assert acc.miou_i == pytest.approx((12 / 20 + 1 + 0) / 3)
    assert acc.miou_p == pytest.approx((12 + 6 + 0) / (20 + 6 + 5))
    d = acc.to_dict()
    assert d["instances"] == 3 and d["skipped_empty_union"] == 0
    assert d["mIoU_I"] == pytest.approx(acc.miou_i)


def test_zero_union_is_skipped_and_counted_not_divided():
    empty = np.zeros((4, 4), bool)
    full = np.ones((4, 4), bool)
    acc = InstanceIoU()
    assert acc.add(empty, empty) is None
    assert acc.skipped_empty == 1 and len(acc) == 0
    # nothing measured yet: NaN, never ZeroDivisionError
    assert math.isnan(acc.miou_i) and math.isnan(acc.miou_p)
    acc.add(full, full)
    acc.add_counts(0, 0)
    acc.add_counts(3, 4)
    assert acc.skipped_empty == 2 and len(acc) == 2
    assert acc.miou_i == pytest.approx((1 + 0.75) / 2)
    assert acc.miou_p == pytest.approx((16 + 3) / (16 + 4))


def test_miou_instances_pairs_and_rejects_shape_mismatch():
    a = _mask((3, 3), (0, 1, 0, 3))
    b = _mask((3, 3), (0, 2, 0, 3))
    out = miou_instances([a, np.zeros((3, 3), bool)], [b, np.zeros((3, 3), bool)])
    assert out == {"mIoU_I": 0.5, "mIoU_P": 0.5, "instances": 1, "skipped_empty_union": 1}
    with pytest.raises(ValueError, match="shape"):
        InstanceIoU().add(np.zeros((2, 2)), np.zeros((3, 3)))


def test_confusion_scores_hand_computed():
    target = np.array([[0, 0, 1], [1, 255, 2]])
    pred = np.array([[0, 1, 1], [1, 0, 0]])
    cm = confusion_matrix(pred, target, num_classes=3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    s = scores_from_confusion(cm, ["a", "b", "c"])
    assert s["OA"] == pytest.approx(3 / 5)
    # IoU a = 1/(2+2-1), b = 2/(2+3-2), c = 0/(1+0-0)
    assert s["IoU"] == pytest.approx({"a": 1 / 3, "b": 2 / 3, "c": 0.0})
    assert s["mIoU"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert s["F1"]["a"] == pytest.approx(2 * 1 / 4)
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array([3]), np.array([0]), num_classes=3)
