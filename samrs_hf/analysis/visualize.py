"""Side-by-side pictures as in the paper's Figs. 4 and 8-10: image | colour semantic map | instances.

Each panel is drawn at the image's own pixel size (100 dpi, no margins), so an overlay PNG is
exactly ``3 * width`` by ``height`` pixels and masks line up pixel for pixel with the data.
"""

from __future__ import annotations

import colorsys
import itertools
from pathlib import Path

import numpy as np

from ..sources.classes import color_of, get_class_table
from ..hub.features import decode_masks, objects_as_list
from ..hub.reader import open_folder
from .figures import mark_random_weights, new_figure, save_png

DPI = 100
MIN_TITLE_HEIGHT = 128
"""Panels of smaller images get no title: it would cover much of a thumbnail at a readable size."""


def semantic_to_color(semantic: np.ndarray) -> np.ndarray:
    """HxW class ids -> HxWx3 uint8 with the shared palette (255 -> white)."""
    lut = np.array([color_of(i) for i in range(256)], dtype=np.uint8)
    return lut[np.asarray(semantic, dtype=np.uint8)]


def instance_colors(n: int) -> np.ndarray:
    """``n`` distinct, deterministic RGB colours in [0, 1] (golden-ratio hue steps)."""
    return np.array([colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.85, 1.0) for i in range(n)])


def _class_names(example, class_names):
    if class_names is not None:
        return list(class_names)
    try:
        return list(get_class_table(str(example.get("subset", ""))).names)
    except KeyError:
        return None


def _as_rgb(image, h, w, image_id) -> np.ndarray:
    if image is None:
        return np.full((h, w, 3), 127, np.uint8)
    arr = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[:2] != (h, w):
        raise ValueError(f"{image_id}: image is {arr.shape[1]}x{arr.shape[0]}, example says {w}x{h}")
    return arr[..., :3].astype(np.uint8)


def plot(example, class_names=None, *, alpha: float = 0.5, show_names: bool = True, random_weights: bool = False):
    """A matplotlib Figure of one example (a packaged row, or a row of :func:`samrs_hf.hub.reader.open_folder`).

    ``class_names`` defaults to the table of ``example["subset"]``; boxes are COCO ``xywh``. Names that would
    cover one another are moved below their box or left out (the instances panel's title counts them).
    ``random_weights``: the masks came from a random-weight SAM; the figure then says so in red.
    """
    h, w = int(example["height"]), int(example["width"])
    image = _as_rgb(example.get("image"), h, w, example.get("file_name", "?"))
    semantic = np.asarray(example["semantic"])
    if semantic.shape[:2] != (h, w):
        raise ValueError(f"{example.get('file_name', '?')}: semantic map is {semantic.shape[1]}x{semantic.shape[0]}, "
                         f"image is {w}x{h}")
    masks = decode_masks(example)
    names = _class_names(example, class_names)
    colors = instance_colors(len(masks))

    overlay = image.astype(np.float32) / 255.0
    for mask, color in zip(masks, colors):
        overlay[mask] = (1 - alpha) * overlay[mask] + alpha * color

    fig = new_figure(3 * w / DPI, h / DPI)
    panels = [fig.add_axes((i / 3, 0, 1 / 3, 1)) for i in range(3)]
    for ax in panels:
        ax.set_axis_off()
    panels[0].imshow(image, interpolation="nearest")
    panels[1].imshow(semantic_to_color(semantic), interpolation="nearest")
    ax = panels[2]
    ax.imshow(overlay, interpolation="nearest")
    for a in panels:
        a.set_xlim(-0.5, w - 0.5)
        a.set_ylim(h - 0.5, -0.5)
    fontsize = float(np.clip(h / 60, 4, 9))
    for mask, color in zip(masks, colors):
        ys, xs = np.nonzero(mask)
        if len(ys):
            y0, y1, x0, x1 = max(ys.min() - 1, 0), min(ys.max() + 2, h), max(xs.min() - 1, 0), min(xs.max() + 2, w)
            yy, xx = np.mgrid[y0:y1, x0:x1]
            ax.contour(xx, yy, mask[y0:y1, x0:x1].astype(np.float32), levels=[0.5], colors=[color], linewidths=0.8)
    objects = objects_as_list(example["objects"])
    for obj, color in zip(objects, colors):
        bx, by, bw, bh = (float(v) for v in obj["bbox"])
        ax.add_patch(_rectangle((bx, by), bw, bh, color))
    hidden = _names(ax, objects, names, colors, fontsize) if show_names else 0
    n = len(masks)
    titles = (f"image {example.get('file_name', '')}".strip(), "semantic map (white: unlabelled)",
              f"{n} instance{'s' * (n != 1)}" + (f" ({hidden} overlapping names hidden)" if hidden else ""))
    for a, title in zip(panels, titles if h >= MIN_TITLE_HEIGHT else ()):
        a.text(0.5, 0.995, title, transform=a.transAxes, ha="center", va="top", fontsize=fontsize + 1, gid="title",
               bbox={"facecolor": "white", "alpha": 0.75, "pad": 1.5, "linewidth": 0})
    if random_weights:  # on the instances, under their title: the masks are noise, the image and boxes are not
        mark_random_weights(ax, fontsize, below_pt=2 * (fontsize + 1) if h >= MIN_TITLE_HEIGHT else 0)
    return fig


def _names(ax, objects, names, colors, fontsize) -> int:
    """Class names at their boxes, each placed above, below or inside its box where it covers no earlier
    name (measured by the renderer); names with no free place are left out. Returns how many."""
    renderer = ax.figure.canvas.get_renderer()
    placed, hidden = [], 0
    for obj, color in zip(objects, colors):
        label = int(obj["category"])
        text = names[label] if names is not None and 0 <= label < len(names) else str(label)
        bx, by, bw, bh = (float(v) for v in obj["bbox"])
        artist = ax.text(bx, by - 1, text, color="white", fontsize=fontsize, ha="left", clip_on=True,
                         bbox={"facecolor": color, "alpha": 0.7, "pad": 0.5, "linewidth": 0})
        for y, va in ((by - 1, "bottom"), (by + bh + 1, "top"), (by + 1, "top")):
            artist.set_position((bx, y))
            artist.set_verticalalignment(va)
            extent = artist.get_window_extent(renderer)
            if not any(extent.overlaps(other) for other in placed):
                placed.append(extent)
                break
        else:
            artist.remove()
            hidden += 1
    return hidden


def _rectangle(xy, w, h, color):
    from matplotlib.patches import Rectangle

    return Rectangle(xy, w, h, fill=False, edgecolor=color, linewidth=1.0)


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text))


def visualize(path, out_dir, *, split: str | None = None, n: int = 8, progress: bool = False,
              show_names: bool = True) -> list[Path]:
    """Write overlays of the first ``n`` examples (sorted order) of a build or packaged dataset
    (marked when its masks came from random weights)."""
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    folder = open_folder(path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    from tqdm.auto import tqdm

    for ex in tqdm(itertools.islice(folder.rows(split), n), desc="visualize", unit="img", total=n,
                   disable=not progress):
        fig = plot(ex, folder.class_names, show_names=show_names, random_weights=folder.random_weights)
        prefix = f"{ex['split']}_" if ex.get("split") else ""
        target = out / f"{prefix}{_safe_name(ex['file_name'])}.png"
        save_png(fig, target)
        written.append(target)
    return written
