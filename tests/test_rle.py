"""samrs_hf.sam.rle against pycocotools: the same bytes for every mask shape and edge case."""

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from samrs_hf.sam import rle


def reference(masks: np.ndarray) -> tuple[list[dict], list[int]]:
    out = []
    for m in masks:
        e = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        out.append({"size": [int(v) for v in e["size"]], "counts": e["counts"].decode("ascii")})
    return out, [int(m.sum()) for m in masks]


def check(masks: np.ndarray) -> None:
    got, areas = rle.encode(torch.from_numpy(masks))
    expected, expected_areas = reference(masks)
    assert got == expected
    assert areas.tolist() == expected_areas
    if len(masks):  # and it decodes back to the masks
        back = mask_utils.decode([{"size": g["size"], "counts": g["counts"].encode()} for g in got])
        np.testing.assert_array_equal(back.transpose(2, 0, 1).astype(bool), masks)


@pytest.mark.parametrize("h,w", [(1, 1), (1, 7), (7, 1), (5, 5), (13, 29), (64, 48)])
def test_random_masks_match_pycocotools(h, w):
    rng = np.random.default_rng(h * 100 + w)
    for density in (0.05, 0.5, 0.95):
        check(rng.random((6, h, w)) < density)


def test_blobs_match_pycocotools():
    """SAM-like masks: a few solid regions, so runs are long."""
    rng = np.random.default_rng(0)
    masks = np.zeros((20, 120, 90), bool)
    for m in masks:
        for _ in range(rng.integers(0, 4)):
            y0, x0 = rng.integers(0, 120), rng.integers(0, 90)
            m[y0 : y0 + rng.integers(1, 60), x0 : x0 + rng.integers(1, 60)] = True
    check(masks)


def test_edge_cases():
    h, w = 6, 9
    empty = np.zeros((h, w), bool)
    full = np.ones((h, w), bool)
    single = empty.copy()
    single[2, 3] = True
    first = empty.copy()
    first[0, 0] = True
    last = empty.copy()
    last[-1, -1] = True
    first_column = empty.copy()
    first_column[:, 0] = True
    masks = np.stack([empty, full, single, first, last, first_column, ~first, ~last])
    check(masks)
    runs = rle.mask_runs(torch.from_numpy(masks))
    # hand-computed column-major counts: (2, 3) is pixel 3 * 6 + 2 = 20
    assert [r.tolist() for r in runs[:6]] == [[54], [0, 54], [20, 1, 33], [0, 1, 53], [53, 1], [0, 6, 48]]
    assert [r.dtype for r in runs] == [np.uint32] * len(runs)


def test_no_masks():
    got, areas = rle.encode(torch.zeros((0, 4, 5), dtype=torch.bool))
    assert got == [] and areas.shape == (0,)


def test_column_major_not_row_major():
    """A mask set in its first row only: COCO's order (down the columns) splits it into w runs."""
    m = np.zeros((3, 4), bool)
    m[0] = True
    assert rle.mask_runs(torch.from_numpy(m[None]))[0].tolist() == [0, 1, 2, 1, 2, 1, 2, 1, 2]


def test_non_contiguous_input():
    masks = np.random.default_rng(1).random((4, 10, 12)) < 0.3
    t = torch.from_numpy(masks.transpose(0, 2, 1).copy()).transpose(1, 2)  # a view, not contiguous
    assert not t.is_contiguous()
    assert rle.encode(t)[0] == reference(masks)[0]


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match=r"\(N, H, W\) bool"):
        rle.mask_runs(torch.zeros((4, 5), dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(N, H, W\) bool"):
        rle.mask_runs(torch.zeros((1, 4, 5), dtype=torch.uint8))
