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


MAX_CHARS_PER_COUNT = 12
"""Characters of one compressed count: 12 x 5 = 60 bits, far past any image size, and no int64 overflow."""


def decompress_counts(counts) -> np.ndarray:
    """A COCO compressed RLE string -> its uncompressed counts (int64), without building the mask.

    The inverse of pycocotools' ``rleToString``, in numpy: ~20 µs for a few hundred characters
    where decoding the mask costs its h x w bytes. Raises ``ValueError`` for a string that is not
    one (characters outside ``0``-``o``, a count cut off, an absurdly long count), ``TypeError``
    for counts that are not a string.
    """
    if isinstance(counts, str):
        counts = counts.encode("utf-8")  # non-ASCII becomes bytes >= 0x80: outside the alphabet
    if not isinstance(counts, (bytes, bytearray)):
        raise TypeError(f"counts must be a compressed RLE string, got {type(counts).__name__}")
    c = np.frombuffer(counts, np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, np.int64)
    if c.min() < 0 or c.max() > 63:
        raise ValueError("counts hold characters outside the RLE alphabet ('0'..'o')")
    more = (c & 0x20) != 0
    if more[-1]:
        raise ValueError("counts end inside a run length (truncated string)")
    ends = np.flatnonzero(~more)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > MAX_CHARS_PER_COUNT:
        raise ValueError(f"a run length spans {int(lengths.max())} characters (garbage counts)")
    shift = 5 * (np.arange(c.size) - np.repeat(starts, lengths))
    x = np.add.reduceat((c & 0x1F) << shift, starts)
    negative = (c[ends] & 0x10) != 0  # the last character's bit 4 is the sign
    x[negative] -= np.left_shift(1, 5 * lengths[negative])
    # Counts from the fourth on are stored as the difference to the count two places back.
    x[1::2] = np.cumsum(x[1::2])
    x[2::2] = np.cumsum(x[2::2])
    return x


def check_rle(segmentation: dict) -> np.ndarray:
    """The counts of a compressed RLE that really covers its ``size`` (h, w), else ``ValueError``
    (``TypeError`` for counts that are not a string).

    pycocotools' decode trusts the counts: ones summing past h x w write past the mask buffer.
    """
    h, w = (int(s) for s in segmentation["size"])
    runs = decompress_counts(segmentation["counts"])
    if runs.size and (runs < 0).any():
        raise ValueError(f"RLE has a negative run length ({int(runs.min())})")
    total = int(runs.sum())
    if total != h * w:
        raise ValueError(f"RLE runs cover {total} pixels, the {h}x{w} mask has {h * w}")
    return runs
