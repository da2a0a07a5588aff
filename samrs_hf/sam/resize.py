"""SAM's one geometric transform: resize the long side to the model's input (1024), as
segment_anything's ``ResizeLongestSide``, for images, prompt coordinates and mask prompts alike.

One object owns the rounding (``get_preprocess_shape``) so the engine's image, its box/point
scaling and the mask prompts' 256x256 frame can never disagree by a pixel.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def preprocess_shape(h: int, w: int, long_side: int = 1024) -> tuple[int, int]:
    """``ResizeLongestSide.get_preprocess_shape``: (new_h, new_w), same rounding."""
    scale = long_side * 1.0 / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def _linear_resize_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1-D bilinear resizing, half-pixel centres, edge-clamped: output i = sum of 2 weighted inputs.

    Same weights as ``cv2.resize(INTER_LINEAR)`` and ``F.interpolate(mode="bilinear",
    align_corners=False)`` (no antialiasing). Returns (i0, i1, frac): out = (1-frac)*in[i0] + frac*in[i1].
    """
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, src - i0


def _linear_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of :func:`_linear_resize_taps`."""
    i0, i1, frac = _linear_resize_taps(n_in, n_out)
    m = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)
    np.add.at(m, (rows, i0), 1.0 - frac)
    np.add.at(m, (rows, i1), frac)
    return m


@lru_cache(maxsize=16)
def _low_res_operators(h: int, w: int, target_length: int, square: bool = False,
                       low: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(L, h), (L, w) operators: bilinear to the model's input frame (longest side ``target_length``
    and zero padding; or, ``square``, stretched to target_length x target_length), then bilinear down
    to L = ``low`` (default target_length / 4)."""
    nh, nw = (target_length, target_length) if square else preprocess_shape(h, w, target_length)
    down = _linear_resize_matrix(target_length, low or target_length // 4)

    def compose(n_src: int, n_mid: int) -> np.ndarray:
        # down[:, :n_mid] @ up(n_src -> n_mid); up has two taps per row, so scatter its columns.
        # Padding (frame rows/columns >= n_mid) holds indicator 0, so only the first n_mid act.
        i0, i1, frac = _linear_resize_taps(n_src, n_mid)
        d = down[:, :n_mid].T  # (n_mid, L)
        op_t = np.zeros((n_src, d.shape[1]), dtype=np.float64)
        np.add.at(op_t, i0, d * (1.0 - frac)[:, None])
        np.add.at(op_t, i1, d * frac[:, None])
        op = op_t.T.copy()
        op.flags.writeable = False
        return op

    return compose(h, nh), compose(w, nw)


class ResizeLongestSide:
    """segment_anything's ``ResizeLongestSide(target_length)``, for our engine and prompts."""

    get_preprocess_shape = staticmethod(preprocess_shape)

    def __init__(self, target_length: int = 1024):
        self.target_length = int(target_length)

    def shape(self, h: int, w: int) -> tuple[int, int]:
        """The resized (h, w) of an h x w image."""
        return preprocess_shape(h, w, self.target_length)

    def apply_coords(self, coords, original_size: tuple[int, int], new_size: tuple[int, int] | None = None):
        """xy coordinates (..., 2) of an ``original_size`` image -> the resized frame, in float64
        (SamPredictor scales in float64 before the float32 tensor)."""
        (h, w), (nh, nw) = original_size, new_size or self.shape(*original_size)
        coords = np.array(coords, dtype=np.float64)
        coords[..., 0] *= nw / w
        coords[..., 1] *= nh / h
        return coords

    def apply_image_torch(self, image, new_size: tuple[int, int]):
        """(1, 3, h, w) uint8 image tensor -> ``new_size``, antialiased bilinear as PIL resizes it for
        SamPredictor (uint8 on CPU, torch's kernel follows PIL; float then rounded elsewhere)."""
        import torch
        import torch.nn.functional as F

        if tuple(image.shape[-2:]) == tuple(new_size):
            return image
        if image.device.type == "cpu":
            return F.interpolate(image.contiguous(memory_format=torch.channels_last), new_size,
                                 mode="bilinear", align_corners=False, antialias=True)
        out = F.interpolate(image.float(), new_size, mode="bilinear", align_corners=False, antialias=True)
        return out.round_().clamp_(0, 255)

    def mask_operators(self, h: int, w: int, square: bool = False, low: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(L, h) and (L, w) matrices (L = ``low``, default target_length / 4) taking an h x w indicator
        to SAM's L x L mask-prompt frame: bilinear to the resized frame, zero padding, bilinear down
        to L. ``square``: the SAM 2 lineage's frame, the image stretched to the square input."""
        return _low_res_operators(int(h), int(w), self.target_length, bool(square), low)
