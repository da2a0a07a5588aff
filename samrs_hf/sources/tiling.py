"""Cutting large scenes into patches exactly as SAMRS did (BboxToolkit ``tools/img_split.py``).

SAMRS cut DOTA-v2.0 into 1024x1024 windows with gap 200 and FAIR1M-2.0 into 600x600 windows with
gap 150 (BboxToolkit presets ``dota2_0/ss_trainval`` and ``600``); DIOR (800x800), HRSC2016 and
bring-your-own COCO sets are used uncut. What is reproduced, from BboxToolkit's
``get_sliding_window`` / ``get_window_obj`` / ``crop_and_save_img``:

* window starts ``0, step, 2*step, ...`` with ``step = size - gap`` and
  ``n = 1 if side <= size else ceil((side - size) / step + 1)``; when there is more than one window
  on an axis the last one is moved back to end at the image edge (``side - size``). Windows are
  ordered x-major (``itertools.product(x_starts, y_starts)``);
* a window is kept when the share of it inside the image is ``> img_rate_thr``; if none passes,
  the windows within 0.01 of the best share are kept. With a single window size every window of
  an image has the same share (on each axis either all windows lie inside, or there is a single
  window at 0), so this rule never drops a window in practice: an image smaller than a window
  still gives one window at (0, 0), padded;
* an object belongs to every window holding ``>= iof_thr`` of its polygon area (BboxToolkit's
  ``iof``; objects without a polygon use their R-Box or H-Box corners), see
  :func:`samrs_hf.sources.geometry.fraction_inside` for the zero-area rule. Objects are shifted into patch
  pixels but never clipped; ``truncated`` is set when less than 100 % is inside (a polygon whose
  H-Box lies in the window counts as wholly inside, so shapely's rounding never flags it);
* pixels outside the image are filled with BboxToolkit's padding value BGR (104, 116, 124),
  i.e. RGB (124, 116, 104), bottom/right; windows without objects are not produced;
* patch names follow the DOTA/mmrotate split tools that SAMRS's file names come from:
  ``{image_id}__{size}__{x}___{y}`` (``P0000__1024__824___0``); uncut images keep their id. BboxToolkit
  itself numbered patches (``P0000_0003``), which does not say where the patch lies. Names that would not
  fit a file name are shortened with a hash (:func:`patch_name`).

Nothing here decodes pixels except :func:`load_patches`, which decodes each source image once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from dataclasses import dataclass, field
from math import ceil
from typing import Iterator

import numpy as np

from . import imageio
from .geometry import fraction_inside, object_corners, polygon_area
from .records import SourceError, SourceImage, SourceObject


@dataclass(frozen=True)
class TilingConfig:
    size: int | None
    """Window side in pixels; ``None`` keeps images uncut (one patch = the whole image)."""
    gap: int = 0
    """Overlap between neighbouring windows (step = size - gap)."""
    iof_thr: float = 0.7
    """An object is kept in a window if at least this share of its polygon area lies inside."""
    img_rate_thr: float = 0.6
    """A window is kept only if more than this share of it lies inside the image."""
    pad_value: tuple = (124, 116, 104)
    """RGB fill beyond the image edge (BboxToolkit's BGR 104, 116, 124)."""

    def __post_init__(self):
        if self.size is not None:
            if int(self.size) != self.size or self.size <= 0:
                raise ValueError(f"tiling size must be a positive integer, got {self.size!r}")
            if not 0 <= self.gap < self.size:
                raise ValueError(f"tiling gap must be in [0, size), got gap={self.gap} size={self.size}")
        if not 0.0 <= self.iof_thr <= 1.0:
            raise ValueError(f"iof_thr must be in [0, 1], got {self.iof_thr}")
        if len(self.pad_value) != 3:
            raise ValueError(f"pad_value must be an RGB triple, got {self.pad_value!r}")

    @property
    def uncut(self) -> bool:
        return self.size is None


UNCUT = TilingConfig(None)

TILING_PRESETS: dict[str, TilingConfig] = {
    "dota": TilingConfig(1024, 200, 0.7),
    "fair1m": TilingConfig(600, 150, 0.5),
    "dior": UNCUT,
    "dior-r": UNCUT,
    "hrsc2016": UNCUT,
    "coco": UNCUT,
}


MAX_NAME_BYTES = 236
"""Longest patch name: 255 bytes per file name (ext4, xfs, NTFS...) less the longest extension (``.jpeg``,
``.tiff``, ``.json``) and :func:`~samrs_hf.common.files.atomic_write`'s temp form ``.<file>.XXXXXXXX.tmp``."""


def patch_name(image_id: str, size: int | None = None, x: int = 0, y: int = 0) -> str:
    """``P0000__1024__824___0``: source id, window size, x and y offsets; the id alone when ``size`` is None.

    A name longer than :data:`MAX_NAME_BYTES` keeps the start of the id, then ``~`` and 16 hex digits of
    the full id's SHA-256, then the window suffix: still unique, the same in every run, and a valid file
    name. ``ins/<name>.json``'s ``source_image`` keeps the full id.
    """
    suffix = "" if size is None else f"__{size}__{x}___{y}"
    name = f"{image_id}{suffix}"
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(image_id.encode()).hexdigest()[:16]
    keep = MAX_NAME_BYTES - len(suffix) - len(digest) - 1
    prefix = image_id.encode()[:keep].decode("utf-8", "ignore")  # never half a UTF-8 character
    return f"{prefix}~{digest}{suffix}"


def _axis_starts(side: int, size: int, step: int) -> list[int]:
    n = 1 if side <= size else ceil((side - size) / step + 1)
    starts = [step * i for i in range(n)]
    if len(starts) > 1 and starts[-1] + size > side:
        starts[-1] = side - size
    return starts


def image_rate_filter(wins: np.ndarray, width: int, height: int, img_rate_thr: float) -> np.ndarray:
    """Boolean keep-mask of BboxToolkit's in-image share rule for arbitrary windows (xyxy)."""
    eps = 0.01
    inside = wins.copy()
    inside[:, 0::2] = np.clip(inside[:, 0::2], 0, width)
    inside[:, 1::2] = np.clip(inside[:, 1::2], 0, height)
    img_areas = (inside[:, 2] - inside[:, 0]) * (inside[:, 3] - inside[:, 1])
    win_areas = (wins[:, 2] - wins[:, 0]) * (wins[:, 3] - wins[:, 1])
    rates = img_areas / win_areas
    if not (rates > img_rate_thr).any():
        rates[np.abs(rates - rates.max()) < eps] = 1
    return rates > img_rate_thr


def windows(width: int, height: int, cfg: TilingConfig | None) -> np.ndarray:
    """(K, 4) int64 xyxy windows in BboxToolkit's order (x-major)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if cfg is None or cfg.size is None:
        return np.array([[0, 0, width, height]], dtype=np.int64)
    size, step = int(cfg.size), int(cfg.size - cfg.gap)
    xs = _axis_starts(width, size, step)
    ys = _axis_starts(height, size, step)
    start = np.array(list(itertools.product(xs, ys)), dtype=np.int64)
    wins = np.concatenate([start, start + size], axis=1)
    return wins[image_rate_filter(wins, width, height, cfg.img_rate_thr)]


@dataclass
class Patch:
    """One window of a source image with the objects assigned to it (no pixels)."""

    name: str
    image_id: str
    window: tuple[int, int, int, int]
    """xyxy in source pixels; may reach past the image edge (that part is padded)."""
    offset: tuple[int, int]
    """(x, y) of the window's top-left corner in the source image."""
    width: int
    height: int
    objects: list[SourceObject]
    """Objects shifted into patch pixels, unclipped, in annotation order."""
    source: SourceImage
    object_indices: tuple[int, ...] = field(default=())
    """Index of each object in ``source.objects`` (to match ground truth or count leftovers)."""
    pad_value: tuple = (124, 116, 104)
    """RGB fill for the part of the window outside the image (from the tiling config)."""

    @property
    def padded(self) -> bool:
        """True when part of the window lies outside the source image."""
        return self.window[2] > self.source.width or self.window[3] > self.source.height


def _shift(obj: SourceObject, dx: float, dy: float, truncated: bool) -> SourceObject:
    x0, y0, x1, y1 = obj.hbox
    polygon = None if obj.polygon is None else np.asarray(obj.polygon, dtype=np.float64) - (dx, dy)
    rbox = None if obj.rbox is None else (obj.rbox[0] - dx, obj.rbox[1] - dy, *obj.rbox[2:])
    return dataclasses.replace(
        obj,
        hbox=(x0 - dx, y0 - dy, x1 - dx, y1 - dy),
        polygon=polygon,
        rbox=rbox,
        truncated=bool(obj.truncated or truncated),
        extra=dict(obj.extra),
    )


def _iof_matrix(polygons: list[np.ndarray], wins: np.ndarray) -> np.ndarray:
    """[object, window] share of each polygon inside each window (BboxToolkit's iof).

    A polygon of positive area whose H-Box lies inside a window is wholly inside (exactly 1.0, so
    it is never flagged truncated by rounding); only the windows it straddles need shapely.
    """
    hb = np.array([[p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()] for p in polygons])
    w = wins.astype(np.float64)
    touch = (hb[:, None, 0] <= w[None, :, 2]) & (hb[:, None, 2] >= w[None, :, 0])
    touch &= (hb[:, None, 1] <= w[None, :, 3]) & (hb[:, None, 3] >= w[None, :, 1])
    within = (hb[:, None, 0] >= w[None, :, 0]) & (hb[:, None, 2] <= w[None, :, 2])
    within &= (hb[:, None, 1] >= w[None, :, 1]) & (hb[:, None, 3] <= w[None, :, 3])
    within &= (np.array([polygon_area(p) for p in polygons]) > 0)[:, None]
    iofs = within.astype(np.float64)
    for i, j in zip(*np.nonzero(touch & ~within)):
        iofs[i, j] = fraction_inside(polygons[i], wins[j])
    return iofs


def plan_patches(image: SourceImage, cfg: TilingConfig | None) -> list[Patch]:
    """The non-empty patches of one image, from sizes and boxes only (no pixel is read)."""
    if cfg is None or cfg.size is None:
        if not image.objects:
            return []
        return [
            Patch(
                name=patch_name(image.image_id),
                image_id=image.image_id,
                window=(0, 0, image.width, image.height),
                offset=(0, 0),
                width=image.width,
                height=image.height,
                objects=list(image.objects),
                source=image,
                object_indices=tuple(range(len(image.objects))),
            )
        ]
    wins = windows(image.width, image.height, cfg)
    if not image.objects:
        return []
    iofs = _iof_matrix([object_corners(o) for o in image.objects], wins)
    patches = []
    for j, win in enumerate(wins.tolist()):
        col = iofs[:, j]
        keep = np.nonzero(col >= cfg.iof_thr)[0]
        if not len(keep):
            continue
        x0, y0, x1, y1 = win
        objs = [_shift(image.objects[i], x0, y0, col[i] < 1.0) for i in keep]
        patches.append(
            Patch(
                name=patch_name(image.image_id, x1 - x0, x0, y0),
                image_id=image.image_id,
                window=(x0, y0, x1, y1),
                offset=(x0, y0),
                width=x1 - x0,
                height=y1 - y0,
                objects=objs,
                source=image,
                object_indices=tuple(int(i) for i in keep),
                pad_value=tuple(cfg.pad_value),
            )
        )
    return patches


def unassigned_objects(image: SourceImage, patches: list[Patch]) -> list[SourceObject]:
    """Objects of ``image`` that fell in no patch (below the iof rule everywhere)."""
    used = set()
    for p in patches:
        used.update(p.object_indices)
    return [o for i, o in enumerate(image.objects) if i not in used]


def load_patches(image: SourceImage, patches: list[Patch]) -> Iterator[tuple[Patch, np.ndarray]]:
    """Yield ``(patch, HxWx3 uint8 RGB)`` for ``patches`` of ``image``, decoding the source once.

    The decode happens on the first ``next()``, so planning many images stays cheap. Windows
    reaching past the image edge are padded bottom/right with the patch's ``pad_value``.
    """
    if not patches:
        return
    for p in patches:
        if p.image_id != image.image_id:
            raise ValueError(f"patch {p.name} belongs to image {p.image_id}, not {image.image_id}")
    # Decode only the part of the image the windows cover (usually all of it).
    ux0 = min(p.window[0] for p in patches)
    uy0 = min(p.window[1] for p in patches)
    ux1 = min(image.width, max(p.window[2] for p in patches))
    uy1 = min(image.height, max(p.window[3] for p in patches))
    full = (ux0, uy0, ux1, uy1) == (0, 0, image.width, image.height)
    pixels = imageio.open_rgb(image.image_path, None if full else (ux0, uy0, ux1, uy1))
    if pixels.shape[:2] != (uy1 - uy0, ux1 - ux0):
        raise SourceError(
            f"{image.image_path}: decoded {pixels.shape[1]}x{pixels.shape[0]} pixels for region "
            f"{(ux0, uy0, ux1, uy1)} of an image recorded as {image.width}x{image.height}"
        )
    for p in patches:
        x0, y0, x1, y1 = p.window
        crop = pixels[y0 - uy0 : min(y1, uy1) - uy0, x0 - ux0 : min(x1, ux1) - ux0]
        if crop.shape[:2] == (p.height, p.width):
            out = crop.copy()  # never hand out a view into the shared decode
        else:
            out = np.empty((p.height, p.width, 3), dtype=np.uint8)
            out[...] = np.asarray(p.pad_value, dtype=np.uint8)
            out[: crop.shape[0], : crop.shape[1]] = crop
        yield p, out


def tiling_config(fmt: str, tile_size: int | None = None, gap: int | None = None,
                  iof_thr: float | None = None) -> TilingConfig:
    """The format's SAMRS preset with ``--tile-size/--gap/--iof-thr`` applied (``tile_size=0``: uncut).

    ``samrs inspect`` and ``samrs build`` both read the options here, so they plan the same patches.
    """
    cfg = TILING_PRESETS.get(fmt, TilingConfig(None))
    if tile_size is not None:
        if tile_size == 0:
            if gap:
                raise ValueError("--gap needs windows: give --tile-size > 0")
            return dataclasses.replace(cfg, size=None, gap=0)
        base_gap = cfg.gap if cfg.size is not None else 0
        return dataclasses.replace(cfg, size=tile_size, gap=base_gap if gap is None else gap,
                                   iof_thr=cfg.iof_thr if iof_thr is None else iof_thr)
    if gap is not None and cfg.size is None:
        raise ValueError(f"{fmt} is used uncut: give --tile-size with --gap")
    changes = {k: v for k, v in (("gap", gap), ("iof_thr", iof_thr)) if v is not None}
    return dataclasses.replace(cfg, **changes) if changes else cfg
