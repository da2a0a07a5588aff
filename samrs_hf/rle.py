"""COCO RLE of boolean masks computed where the masks are (GPU or CPU).

A 1024² mask is 1 MB as bools but a few hundred run boundaries; finding the boundaries on the
device means only those cross to the host. The runs are pycocotools' uncompressed counts
(column-major, starting with the count of 0s, possibly 0), and pycocotools turns them into the
compressed string, so the result is byte-identical to
``mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))``.
"""

from __future__ import annotations

import numpy as np
import torch


def mask_runs(masks: torch.Tensor) -> list[np.ndarray]:
    """(N, H, W) bool on any device -> per mask, COCO uncompressed counts (uint32) on the host."""
    if masks.ndim != 3 or masks.dtype != torch.bool:
        raise ValueError(f"expected (N, H, W) bool masks, got {masks.dtype} {tuple(masks.shape)}")
    n, h, w = masks.shape
    hw = h * w
    if n == 0:
        return []
    if hw == 0:
        raise ValueError(f"masks of size {h}x{w} have no pixels")
    flat = masks.transpose(1, 2).reshape(n, hw)  # column-major order, like the Fortran array
    change = flat[:, 1:] != flat[:, :-1]  # change[i, p]: a new run starts at pixel p + 1
    # One transfer: the first pixel of each mask, then the flat index of every change (sorted).
    packed = torch.cat([flat[:, 0].long(), torch.nonzero(change.reshape(-1)).squeeze(1)]).cpu().numpy()
    first = packed[:n]
    mask_of, starts = np.divmod(packed[n:], max(hw - 1, 1))
    starts += 1
    offsets = np.searchsorted(mask_of, np.arange(n + 1))
    runs = []
    for i in range(n):
        edges = np.concatenate(([0], starts[offsets[i] : offsets[i + 1]], [hw]))
        counts = np.diff(edges)
        if first[i]:
            counts = np.concatenate(([0], counts))  # counts begin with the 0s: none here
        runs.append(counts.astype(np.uint32))
    return runs


def areas(runs: list[np.ndarray]) -> np.ndarray:
    """Pixels per mask: the odd runs are the 1s."""
    return np.array([int(r[1::2].sum()) for r in runs], dtype=np.int64)


def compress(runs: list[np.ndarray], h: int, w: int) -> list[dict]:
    """Uncompressed counts -> COCO RLE dicts with ``size`` and ``str`` counts, via pycocotools."""
    from pycocotools import mask as mask_utils

    if not runs:
        return []
    h, w = int(h), int(w)
    encoded = mask_utils.frPyObjects([{"size": [h, w], "counts": r} for r in runs], h, w)
    return [{"size": [h, w], "counts": e["counts"].decode("ascii")} for e in encoded]


def encode(masks: torch.Tensor) -> tuple[list[dict], np.ndarray]:
    """(N, H, W) bool masks -> (COCO RLE dicts, areas); the masks never leave their device."""
    runs = mask_runs(masks)
    return compress(runs, masks.shape[1], masks.shape[2]), areas(runs)
