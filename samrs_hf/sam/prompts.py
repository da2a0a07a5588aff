"""The SAM prompts of SAMRS Sec. 2.3 and the prompt combinations of Table 1.

Six basic prompts: ``CP`` (centre point, foreground), ``H-Box``, ``RH-Box`` (the horizontal box
around the R-Box), and the mask prompts ``H-Box-M``, ``R-Box-M``, ``RH-Box-M`` (the region
enclosed by that box). A combination (``"CP+H-Box"``, ``"RH-Box+RH-Box-M"``) joins basic
prompts with ``+``; it holds at most one point, one box and one mask, since SAM takes one box and
one mask per object. Names are case-insensitive, hyphens/underscores/spaces are optional and the
order of the components does not matter; :data:`TABLE1_PROMPTS` lists the 15 rows of Table 1.

Definitions, per object (as in the SAMRS scripts ``loaddata.py`` / ``main_sam_*_instance.py``):

* **H-Box** = ``obj.hbox``;
* **RH-Box** = per-axis min/max of the object's oriented corners (polygon, else R-Box corners,
  else the H-Box itself);
* **CP** = the R-Box centre: ``rbox[:2]`` when the source gives an R-Box (HRSC ``mbox_cx/cy``, what
  SAMRS used in the HRSC ablation), else the mean of the polygon's corners (the centre of a
  rectangle; SAMRS's ``(x1+x3)/2, (y1+y3)/2``), else the H-Box centre;
* **mask prompts**: SAMRS drew the region at the image's own resolution (``cv2.rectangle``
  filled, corners truncated with ``int()``, both corner pixels included, i.e. columns
  ``int(x0)..int(x1)`` and rows ``int(y0)..int(y1)`` clipped to the image; for R-Box-M
  ``cv2.fillPoly`` on the corners cast to int32, reproduced by :func:`fill_poly_cv2`), set +1000
  inside and -1000 outside, resized bilinearly to SAM's long-side-1024 frame
  (``ResizeLongestSide.get_preprocess_shape``), padded bottom/right with -1000 to 1024x1024 and
  resized bilinearly to 256x256 (``cv2.INTER_LINEAR`` = ``F.interpolate(bilinear,
  align_corners=False)`` without antialiasing). Both resizes and the padding are linear in the
  indicator, so they are applied here as two small interpolation matrices: exact and vectorised.

Boxes and points stay in the image's own pixels; the SAM engine maps them to the 1024 frame
(``SamPredictor.transform.apply_boxes``) while masks are already in SAM's 256x256 input frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..sources.geometry import object_corners
from .resize import ResizeLongestSide, preprocess_shape  # noqa: F401 (preprocess_shape: re-export)

BASIC_PROMPTS = ("CP", "H-Box", "RH-Box", "H-Box-M", "R-Box-M", "RH-Box-M")
BOX_PROMPTS = ("H-Box", "RH-Box")
MASK_PROMPTS = ("H-Box-M", "R-Box-M", "RH-Box-M")

TABLE1_PROMPTS = (
    "CP",
    "H-Box",
    "H-Box-M",
    "CP+H-Box",
    "H-Box+H-Box-M",
    "CP+H-Box-M",
    "CP+H-Box+H-Box-M",
    "R-Box-M",
    "CP+R-Box-M",
    "RH-Box",
    "RH-Box-M",
    "CP+RH-Box",
    "RH-Box+RH-Box-M",
    "CP+RH-Box-M",
    "CP+RH-Box+RH-Box-M",
)

MASK_INSIDE = 1000.0
MASK_OUTSIDE = -1000.0


class PromptNameError(ValueError):
    """A prompt name that is not a valid combination of the basic prompts."""


def _key(part: str) -> str:
    return "".join(ch for ch in part.lower() if ch not in "-_ ")


_BY_KEY = {_key(p): p for p in BASIC_PROMPTS}


def _bad(name: str, why: str) -> PromptNameError:
    return PromptNameError(
        f"invalid prompt {name!r}: {why}. Basic prompts: {', '.join(BASIC_PROMPTS)}; join them with '+' "
        f"(at most one box and one mask). Table 1 combinations: {', '.join(TABLE1_PROMPTS)}"
    )


def parse_prompt(name: str) -> tuple[str, ...]:
    """Canonical components of a prompt name, ordered CP, box, mask (``"H-Box+cp"`` -> CP, H-Box)."""
    if not isinstance(name, str) or not name.strip():
        raise _bad(str(name), "empty name")
    parts = []
    for raw in name.split("+"):
        key = _key(raw)
        if key not in _BY_KEY:
            hint = " (SAM has no rotated-box prompt: use RH-Box or R-Box-M)" if key == "rbox" else ""
            raise _bad(name, f"unknown component {raw.strip()!r}{hint}")
        part = _BY_KEY[key]
        if part in parts:
            raise _bad(name, f"{part} given twice")
        parts.append(part)
    if sum(p in BOX_PROMPTS for p in parts) > 1:
        raise _bad(name, "more than one box")
    if sum(p in MASK_PROMPTS for p in parts) > 1:
        raise _bad(name, "more than one mask")
    return tuple(sorted(parts, key=BASIC_PROMPTS.index))


def canonical_prompt_name(name: str) -> str:
    """``"rh-box-m+RH-Box"`` -> ``"RH-Box+RH-Box-M"`` (the spelling of Table 1)."""
    return "+".join(parse_prompt(name))


@dataclass
class PromptBatch:
    """SAM prompts for N objects, in object order; absent prompt kinds are None."""

    boxes: np.ndarray | None
    """(N, 4) float64 xyxy in image pixels: the source's values, which the build records as each object's
    ``bbox``; the engine hands SAM float32, as segment-anything's predictor is given them."""
    points: np.ndarray | None
    """(N, 1, 2) float32 xy in image pixels (CP)."""
    point_labels: np.ndarray | None
    """(N, 1) int64, 1 = foreground."""
    masks: np.ndarray | None
    """(N, 1, 256, 256) float32 mask logits in SAM's low-res input frame (+1000 in, -1000 out)."""
    box_kind: str | None
    """``"H-Box"`` / ``"RH-Box"`` / None: which box the boxes are."""
    name: str = ""
    """Canonical prompt name."""

    def __len__(self) -> int:
        for arr in (self.boxes, self.points, self.masks):
            if arr is not None:
                return int(arr.shape[0])
        return 0

    def __getitem__(self, idx) -> "PromptBatch":
        """Sub-batch (slice or index array), e.g. to send objects to SAM in chunks."""
        if isinstance(idx, (int, np.integer)):
            idx = slice(int(idx), int(idx) + 1 if int(idx) != -1 else None)

        def take(a):
            return None if a is None else a[idx]

        return PromptBatch(
            take(self.boxes), take(self.points), take(self.point_labels), take(self.masks), self.box_kind, self.name
        )


def _logits(indicator_lowres: np.ndarray) -> np.ndarray:
    return (MASK_OUTSIDE + (MASK_INSIDE - MASK_OUTSIDE) * indicator_lowres).astype(np.float32)


def _box_masks(boxes: np.ndarray, h: int, w: int, ops) -> np.ndarray:
    """(N, 1, L, L) mask prompts of filled boxes (cv2.rectangle pixel rule, see module doc)."""
    op_h, op_w = ops
    b = np.trunc(np.asarray(boxes, dtype=np.float64))  # Python int(): towards zero
    x0, x1 = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
    y0, y1 = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
    cols = np.arange(w)[None, :]
    rows = np.arange(h)[None, :]
    col_in = ((cols >= x0[:, None]) & (cols <= x1[:, None])).astype(np.float64)  # (N, w)
    row_in = ((rows >= y0[:, None]) & (rows <= y1[:, None])).astype(np.float64)  # (N, h)
    # A filled box is an outer product of a row and a column indicator; so is its resize.
    low = (row_in @ op_h.T)[:, :, None] * (col_in @ op_w.T)[:, None, :]
    return _logits(low)[:, None]


def _polygon_masks(corners: np.ndarray, h: int, w: int, ops) -> np.ndarray:
    """(N, 1, L, L) mask prompts of filled polygons (cv2.fillPoly pixel rule, see module doc)."""
    op_h, op_w = ops
    size = op_h.shape[0]
    out = np.empty((len(corners), 1, size, size), dtype=np.float32)
    for i, poly in enumerate(corners):
        pts = np.trunc(np.asarray(poly, dtype=np.float64)).astype(np.int64)  # astype(np.int32)
        x0, y0 = (int(v) for v in pts.min(axis=0))
        x1, y1 = (int(v) for v in pts.max(axis=0))
        if x0 >= 0 and y0 >= 0 and x1 < w and y1 < h:
            # Inside the image no clipping happens and the rule is shift-invariant: draw locally.
            ind = fill_poly_cv2(np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8), pts - (x0, y0))
            low = op_h[:, y0 : y1 + 1] @ ind @ op_w[:, x0 : x1 + 1].T
        else:
            low = op_h @ fill_poly_cv2(np.zeros((h, w), np.uint8), pts) @ op_w.T
        out[i, 0] = _logits(low)
    return out


# ------------------------------------------------------------------ cv2.fillPoly, pixel for pixel
# SAMRS drew R-Box-M with ``cv2.fillPoly(canvas, [pts.astype(np.int32)], 255)`` (LINE_8, shift 0).
# OpenCV is not a dependency, so its rule is reproduced here from imgproc/src/drawing.cpp
# (CollectPolyEdges, FillEdgeCollection, LineIterator, clipLine): the 8-connected outline plus a
# 16.16 fixed-point scanline fill. Checked against opencv-python 5.0 on thousands of random
# quadrilaterals, inside and across the image border.

_XY_SHIFT = 16
_XY_ONE = 1 << _XY_SHIFT


def _c_div(a: int, b: int) -> int:
    """C integer division (truncates towards zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _outside(p, w: int, h: int) -> bool:
    return not (0 <= p[0] < w and 0 <= p[1] < h)


def _clip_line(w: int, h: int, p1, p2):
    """OpenCV's ``clipLine``: (inside, p1, p2) with the endpoints moved onto the image border."""
    right, bottom = w - 1, h - 1
    (x1, y1), (x2, y2) = p1, p2
    c1 = (x1 < 0) + (x1 > right) * 2 + (y1 < 0) * 4 + (y1 > bottom) * 8
    c2 = (x2 < 0) + (x2 > right) * 2 + (y2 < 0) * 4 + (y2 > bottom) * 8
    if (c1 & c2) == 0 and (c1 | c2) != 0:
        if c1 & 12:
            a = 0 if c1 < 8 else bottom
            x1 += int(float(a - y1) * (x2 - x1) / (y2 - y1))
            y1 = a
            c1 = (x1 < 0) + (x1 > right) * 2
        if c2 & 12:
            a = 0 if c2 < 8 else bottom
            x2 += int(float(a - y2) * (x2 - x1) / (y2 - y1))
            y2 = a
            c2 = (x2 < 0) + (x2 > right) * 2
        if (c1 & c2) == 0 and (c1 | c2) != 0:
            if c1:
                a = 0 if c1 == 1 else right
                y1 += int(float(a - x1) * (y2 - y1) / (x2 - x1))
                x1, c1 = a, 0
            if c2:
                a = 0 if c2 == 1 else right
                y2 += int(float(a - x2) * (y2 - y1) / (x2 - x1))
                x2, c2 = a, 0
    return (c1 | c2) == 0, (x1, y1), (x2, y2)


def _line8(canvas: np.ndarray, p1, p2) -> None:
    """OpenCV's 8-connected ``Line`` (Bresenham via LineIterator, drawn left to right)."""
    h, w = canvas.shape
    if _outside(p1, w, h) or _outside(p2, w, h):
        inside, p1, p2 = _clip_line(w, h, p1, p2)
        if not inside:
            return
    (x1, y1), (x2, y2) = p1, p2
    if x2 < x1:
        x1, y1, x2, y2 = x2, y2, x1, y1
    dx, dy = x2 - x1, y2 - y1
    sy = -1 if dy < 0 else 1
    dy = abs(dy)
    vert = dy > dx
    if vert:
        dx, dy = dy, dx
    err = dx - 2 * dy
    x, y = x1, y1
    for _ in range(dx + 1):
        canvas[y, x] = 1
        minor = err < 0
        err += -2 * dy + (2 * dx if minor else 0)
        if vert:
            y += sy
            x += 1 if minor else 0
        else:
            x += 1
            y += sy if minor else 0


def fill_poly_cv2(canvas: np.ndarray, pts) -> np.ndarray:
    """Set to 1 the pixels of ``canvas`` (H x W uint8) that ``cv2.fillPoly`` fills for int ``pts``."""
    h, w = canvas.shape
    pts = [(int(x), int(y)) for x, y in pts]
    edges = []
    for i in range(len(pts)):
        p0, p1 = pts[i - 1], pts[i]
        _line8(canvas, p0, p1)
        t0, t1 = p0, p1
        c0y, c1y = p0[1], p1[1]
        if _outside(p0, w, h) or _outside(p1, w, h):
            _, t0, t1 = _clip_line(w, h, p0, p1)
            if t0[1] != t1[1]:
                c0y, c1y = t0[1], t1[1]
        if p0[1] == p1[1]:
            continue
        c0x, c1x = t0[0] << _XY_SHIFT, t1[0] << _XY_SHIFT
        dx = _c_div(c1x - c0x, c1y - c0y)
        if p0[1] < p1[1]:
            edges.append((p0[1], p1[1], c0x + (p0[1] - c0y) * dx, dx))
        else:
            edges.append((p1[1], p0[1], c1x + (p1[1] - c1y) * dx, dx))
    if len(edges) < 2:
        return canvas
    e = np.array(edges, dtype=np.int64)
    x_end = e[:, 2] + (e[:, 1] - e[:, 0]) * e[:, 3]
    xs_all = np.concatenate([e[:, 2], x_end])
    if e[:, 1].max() < 0 or e[:, 0].min() >= h or xs_all.max() < 0 or xs_all.min() >= (w << _XY_SHIFT):
        return canvas
    # Edge j is active on scanlines y0 <= y < y1 at x = x0 + (y - y0) * dx; on each scanline the
    # sorted crossings pair up into spans [ceil(left), floor(right)].
    rows = [np.arange(max(y0, 0), min(y1, h), dtype=np.int64) for y0, y1, _, _ in edges]
    xs = np.concatenate([x + (r - y0) * dx for r, (y0, _, x, dx) in zip(rows, edges)])
    ys = np.concatenate(rows)
    order = np.lexsort((xs, ys))
    ys, xs = ys[order], xs[order]
    x1 = (xs[0::2] + _XY_ONE - 1) >> _XY_SHIFT
    x2 = xs[1::2] >> _XY_SHIFT
    ok = (x1 < w) & (x2 >= 0)
    for r, a, b in zip(ys[0::2][ok].tolist(), np.maximum(x1[ok], 0).tolist(), np.minimum(x2[ok], w - 1).tolist()):
        canvas[r, a : b + 1] = 1
    return canvas


def _centre(obj) -> tuple[float, float]:
    if obj.rbox is not None:
        return float(obj.rbox[0]), float(obj.rbox[1])
    if obj.polygon is not None:
        c = np.asarray(obj.polygon, dtype=np.float64).reshape(-1, 2).mean(axis=0)
        return float(c[0]), float(c[1])
    x0, y0, x1, y1 = obj.hbox
    return (x0 + x1) / 2.0, (y0 + y1) / 2.0


def make_prompts(name: str, objects, image_hw: tuple[int, int], target_length: int = 1024,
                 square: bool = False, mask_size: int | None = None) -> PromptBatch:
    """Prompts of kind ``name`` for ``objects`` of an image of size ``image_hw`` = (h, w).

    Mask prompts are drawn in the model's input frame: SAM's (longest side ``target_length``, padded)
    or, ``square``, the SAM 2 lineage's (stretched to ``target_length`` x ``target_length``), then
    resized to ``mask_size`` (default target_length / 4; SAM 3: 288 for its 1008 input). A labeler
    names its own: ``target_length=labeler.image_size, square=labeler.square_input,
    mask_size=labeler.mask_input_size[0]``."""
    parts = parse_prompt(name)
    h, w = (int(v) for v in image_hw)
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got h={h} w={w}")
    if target_length <= 0 or (target_length % 4 and mask_size is None):
        raise ValueError(f"target_length must be a positive multiple of 4, got {target_length}")
    objects = list(objects)
    n = len(objects)
    hboxes = np.array([o.hbox for o in objects], dtype=np.float64).reshape(n, 4)
    corners = np.array([object_corners(o) for o in objects], dtype=np.float64).reshape(n, 4, 2)
    rhboxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1) if n else hboxes

    boxes = points = labels = masks = None
    box_kind = None
    if "CP" in parts:
        points = np.array([_centre(o) for o in objects], dtype=np.float32).reshape(n, 1, 2)
        labels = np.ones((n, 1), dtype=np.int64)
    if "H-Box" in parts:
        boxes, box_kind = hboxes, "H-Box"
    elif "RH-Box" in parts:
        boxes, box_kind = rhboxes, "RH-Box"
    mask_part = next((p for p in parts if p in MASK_PROMPTS), None)
    if mask_part is not None:
        ops = ResizeLongestSide(target_length).mask_operators(h, w, square, mask_size)
        if mask_part == "R-Box-M":
            masks = _polygon_masks(corners, h, w, ops)
        else:
            masks = _box_masks(hboxes if mask_part == "H-Box-M" else rhboxes, h, w, ops)
    return PromptBatch(boxes, points, labels, masks, box_kind, "+".join(parts))
