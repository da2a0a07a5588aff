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
from .figures import new_figure, save_png

DPI = 100


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


def plot(example, class_names=None, *, alpha: float = 0.5, show_names: bool = True):
    """A matplotlib Figure of one example (a packaged row, or a row of :func:`samrs_hf.hub.reader.open_folder`).

    ``class_names`` defaults to the table of ``example["subset"]``; boxes are COCO ``xywh``.
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
    fontsize = float(np.clip(h / 60, 4, 9))
    for obj, mask, color in zip(objects_as_list(example["objects"]), masks, colors):
        ys, xs = np.nonzero(mask)
        if len(ys):
            y0, y1, x0, x1 = max(ys.min() - 1, 0), min(ys.max() + 2, h), max(xs.min() - 1, 0), min(xs.max() + 2, w)
            yy, xx = np.mgrid[y0:y1, x0:x1]
            ax.contour(xx, yy, mask[y0:y1, x0:x1].astype(np.float32), levels=[0.5], colors=[color], linewidths=0.8)
        bx, by, bw, bh = (float(v) for v in obj["bbox"])
        ax.add_patch(_rectangle((bx, by), bw, bh, color))
        if show_names:
            label = int(obj["category"])
            text = names[label] if names is not None and 0 <= label < len(names) else str(label)
            ax.text(bx, by - 1, text, color="white", fontsize=fontsize, va="bottom", ha="left", clip_on=True,
                    bbox={"facecolor": color, "alpha": 0.7, "pad": 0.5, "linewidth": 0})
    for a in panels:
        a.set_xlim(-0.5, w - 0.5)
        a.set_ylim(h - 0.5, -0.5)
    return fig


def _rectangle(xy, w, h, color):
    from matplotlib.patches import Rectangle

    return Rectangle(xy, w, h, fill=False, edgecolor=color, linewidth=1.0)


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text))


def visualize(path, out_dir, *, split: str | None = None, n: int = 8, progress: bool = False) -> list[Path]:
    """Write overlays of the first ``n`` examples (sorted order) of a build or packaged dataset."""
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    folder = open_folder(path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    from tqdm.auto import tqdm

    for ex in tqdm(itertools.islice(folder.rows(split), n), desc="visualize", unit="img", total=n,
                   disable=not progress):
        fig = plot(ex, folder.class_names)
        prefix = f"{ex['split']}_" if ex.get("split") else ""
        target = out / f"{prefix}{_safe_name(ex['file_name'])}.png"
        save_png(fig, target)
        written.append(target)
    return written
