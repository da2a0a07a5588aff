"""Statistics of a build or a packaged dataset: Fig. 5, Fig. 6 and the Table 2 row of the paper.

Both kinds of folder are read through :func:`samrs_hf.hub.reader.open_folder`, which yields rows in the packaged
(Hub) convention, so statistics, overlays and notebooks see one shape of data whatever was given.

Mask-size bins (Fig. 6). The paper shows counts of instances per mask size without printing the
bin edges; it discusses "extremely small targets (< 100 pixels)". We use half-decade bins from
there on: ``<100, 100-500, 500-1k, 1k-5k, 5k-10k, 10k-50k, 50k-100k, >=100k`` pixels. Following
Sec. 3.2 ("we only count instances that have valid masks") instances with an empty mask are left out
of Fig. 5 and Fig. 6 and counted as ``empty_masks`` instead. Fig. 5's pixels of a class are the summed
areas of its valid instance masks, as SAMRS's ``statistic.py`` counts them, so overlapping masks count
for each instance; the semantic maps (where the last painted mask wins) give only the Table 2 row's
labelled/unlabelled pixels.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from ..common.files import atomic_write
from ..hub.quality import QUANTILES, QualityTally
from ..hub.reader import DatasetFolder, NotADatasetFolder, is_package_dir, open_folder  # noqa: F401  (stats' names)
from ..sources.classes import ABBREVIATIONS, IGNORE_INDEX, color_of
from ..sources.records import SourceError
from .figures import mark_random_weights, new_figure, save_png

is_hub_dir = is_package_dir

SIZE_EDGES = (0, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000)
"""Lower edges (pixels) of the Fig. 6 bins; the last bin is open-ended."""
SIZE_LABELS = ("<100", "100-500", "500-1k", "1k-5k", "5k-10k", "10k-50k", "50k-100k", ">=100k")

FIG5, FIG6 = "class_pixels_instances.png", "mask_sizes.png"
FIG_QUALITY, CSV_QUALITY = "mask_quality.png", "mask_quality.csv"


def size_bin(area: int) -> int:
    """Index of the Fig. 6 bin of a mask of ``area`` pixels (area >= 1)."""
    return int(np.searchsorted(SIZE_EDGES, area, side="right") - 1)


# --------------------------------------------------------------------------- statistics


def _image_size_text(sizes: dict[tuple[int, int], int]) -> str:
    """Table 2's "Image size" cell: ``800 × 800``, or ``min ~ max`` by area when sizes vary."""
    if not sizes:
        return "-"
    ordered = sorted(sizes, key=lambda wh: (wh[0] * wh[1], wh))
    text = [f"{w:,} × {h:,}" for w, h in (ordered[0], ordered[-1])]
    return text[0] if len(ordered) == 1 else f"{text[0]} ~ {text[1]}"


def compute_stats(path, split: str | None = None, *, progress: bool = False) -> dict:
    """Per-class pixel and instance counts, mask-size histogram and the Table 2 row of a folder."""
    from pycocotools import mask as mask_utils
    from tqdm.auto import tqdm

    folder = open_folder(path)
    k = len(folder.class_names)
    pixels = np.zeros(256, dtype=np.int64)
    instances = np.zeros(k, dtype=np.int64)
    mask_pixels = np.zeros(k, dtype=np.int64)
    bins = np.zeros(len(SIZE_EDGES), dtype=np.int64)
    empty = 0
    images = 0
    total_pixels = 0
    sizes: dict[tuple[int, int], int] = {}
    per_split: dict[str, int] = {}
    quality = QualityTally()
    for ex in tqdm(folder.rows(split, images=False), desc="stats", unit="img", disable=not progress):
        images += 1
        per_split[ex["split"] or "-"] = per_split.get(ex["split"] or "-", 0) + 1
        w, h = int(ex["width"]), int(ex["height"])
        sizes[(w, h)] = sizes.get((w, h), 0) + 1
        total_pixels += w * h
        semantic = np.asarray(ex["semantic"])
        if semantic.shape[:2] != (h, w):
            raise SourceError(f"{ex['file_name']}: semantic map is {semantic.shape[1]}x{semantic.shape[0]}, "
                              f"image is {w}x{h}")
        pixels += np.bincount(semantic.ravel(), minlength=256)
        quality.add(ex["objects"])
        for seg, category in zip(ex["objects"]["segmentation"], ex["objects"]["category"]):
            counts = seg["counts"]
            rle = {"size": list(seg["size"]), "counts": counts.encode() if isinstance(counts, str) else counts}
            area = int(mask_utils.area(rle))
            if area == 0:
                empty += 1
                continue
            instances[category] += 1
            mask_pixels[category] += area
            bins[size_bin(area)] += 1
    if pixels[k:IGNORE_INDEX].any() or pixels[IGNORE_INDEX + 1:].any():
        bad = [i for i in range(k, 256) if i != IGNORE_INDEX and pixels[i]]
        raise SourceError(f"{folder.path}: semantic maps hold class ids {bad} outside the {k}-class table")
    abbr = ABBREVIATIONS.get(folder.subset.lower(), folder.class_names)
    if len(abbr) != k:
        abbr = folder.class_names
    labelled = int(pixels[:k].sum())
    return {
        "path": folder.path.name,  # no absolute paths: stats.json goes to the Hub with the card
        "kind": folder.kind,
        "subset": folder.subset,
        "random_weights": folder.random_weights,
        "split": split,
        "classes": list(folder.class_names),
        "per_class": [
            {"id": i, "name": n, "abbreviation": abbr[i], "pixels": int(mask_pixels[i]),
             "instances": int(instances[i])}
            for i, n in enumerate(folder.class_names)
        ],
        "mask_sizes": {"bins": list(SIZE_LABELS), "lower_edges": list(SIZE_EDGES), "counts": bins.tolist()},
        "mask_quality": quality.summary(folder.class_names),
        "empty_masks": empty,
        "images_per_split": per_split,
        "image_sizes": {f"{w}x{h}": n for (w, h), n in sorted(sizes.items())},
        "table2": {
            "dataset": folder.subset.upper(),
            "images": images,
            "categories": k,
            "channels": "RGB",
            "resolution_m": "-",
            "image_size": _image_size_text(sizes),
            "instances": int(instances.sum()),
            "labelled_pixels": labelled,
            "total_pixels": total_pixels,
            "unlabelled_pixels": int(pixels[IGNORE_INDEX]),
        },
    }


# --------------------------------------------------------------------------- figures and files


def _bars(ax, labels, values, colors, ylabel):
    x = np.arange(len(values))
    ax.bar(x, values, color=[tuple(c / 255 for c in rgb) for rgb in colors], edgecolor="black", linewidth=0.3)
    ax.set_xticks(x, labels, rotation=90, fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_xlim(-0.6, len(values) - 0.4)
    if max(values, default=0) > 0:
        ax.set_yscale("log", nonpositive="clip")
        ax.set_ylim(bottom=0.5, top=max(values) * 1.5)
        _count_ticks(ax, max(values))


def _count_ticks(ax, top: int) -> None:
    """Counts take whole-number ticks (1, 2, 5, 10, ...; powers of ten when those get many), no minor labels:
    a log axis's own ticks at small counts are 6x10^-1 and the like."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ticks = [m * 10 ** e for e in range(len(str(int(top))) + 1) for m in (1, 2, 5) if m * 10 ** e <= top * 1.5]
    if len(ticks) > 8:
        ticks = [t for t in ticks if str(t).startswith("1")]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{int(round(v)):,}"))
    ax.yaxis.set_minor_locator(NullLocator())


def figure_per_class(stats: dict):
    """Fig. 5: pixels (top) and instances (bottom) per class, log scale, palette colours."""
    rows = stats["per_class"]
    fig = new_figure(max(4.0, 0.3 * len(rows) + 1.5), 6.0)
    top, bottom = fig.subplots(2, 1)
    labels = [r["abbreviation"] for r in rows]
    colors = [color_of(r["id"]) for r in rows]
    _bars(top, labels, [r["pixels"] for r in rows], colors, "#pixels")
    _bars(bottom, labels, [r["instances"] for r in rows], colors, "#instances")
    top.set_title(f"{stats['table2']['dataset']}: pixels and instances per class")
    _finish(fig, stats)
    return fig


def _finish(fig, stats: dict) -> None:
    """Tight layout, with a strip at the bottom for the random-weights mark when the data has one."""
    random = bool(stats.get("random_weights"))
    fig.tight_layout(rect=(0, 0.06 if random else 0, 1, 1))
    if random:
        mark_random_weights(fig, 8)


def figure_mask_sizes(stats: dict):
    """Fig. 6: number of instances per mask-size bin."""
    from matplotlib.ticker import MaxNLocator

    ms = stats["mask_sizes"]
    fig = new_figure(5.0, 3.5)
    ax = fig.subplots()
    x = np.arange(len(ms["counts"]))
    ax.bar(x, ms["counts"], color=tuple(c / 255 for c in color_of(0)), edgecolor="black", linewidth=0.3)
    ax.set_xticks(x, ms["bins"], rotation=45, fontsize=8)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("mask size (pixels)")
    ax.set_ylabel("#instances")
    ax.set_title(f"{stats['table2']['dataset']}: mask sizes")
    _finish(fig, stats)
    return fig


def figure_mask_quality(stats: dict):
    """``box_iou`` (top) and ``fill`` (bottom) per class: boxes at the 25/50/75 % quantiles, whiskers at
    5/95 % (from the quantiles in ``stats``, so the figure needs no per-object values)."""
    rows = stats["mask_quality"]
    fig = new_figure(max(4.0, 0.3 * len(rows) + 1.5), 6.0)
    axes = fig.subplots(2, 1)
    abbr = {r["id"]: r["abbreviation"] for r in stats["per_class"]}
    for ax, key in zip(axes, ("box_iou", "fill")):
        boxes = [{"label": abbr[r["id"]], "whislo": r[key]["p05"], "q1": r[key]["p25"], "med": r[key]["p50"],
                  "q3": r[key]["p75"], "whishi": r[key]["p95"]} if r[key] else
                 {"label": abbr[r["id"]], "whislo": np.nan, "q1": np.nan, "med": np.nan, "q3": np.nan, "whishi": np.nan}
                 for r in rows]
        ax.bxp(boxes, showfliers=False)
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
        ax.set_ylabel(key)
    axes[0].set_ylim(0, 1.02)
    axes[0].set_title(f"{stats['table2']['dataset']}: mask quality per class (whiskers 5-95 %)")
    fig.tight_layout()
    return fig


def _quality_csv_rows(stats: dict) -> tuple[list[str], list[list]]:
    names = [f"p{round(q * 100):02d}" for q in QUANTILES]
    header = ["id", "name", "objects"] + [f"box_iou_{n}" for n in names] + [f"fill_{n}" for n in names]
    rows = [[r["id"], r["name"], r["objects"]]
            + [(r[key] or {}).get(n, "") for key in ("box_iou", "fill") for n in names] for r in stats["mask_quality"]]
    return header, rows


def _csv_bytes(header, rows) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode()


def write_stats(path, out_dir, split: str | None = None, *, progress: bool = False) -> dict:
    """Compute the statistics of ``path`` and write PNG figures, CSV tables and ``stats.json``.

    Returns the statistics with ``files``: written file names relative to ``out_dir``.
    """
    stats = compute_stats(path, split, progress=progress)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_png(figure_per_class(stats), out / FIG5)
    save_png(figure_mask_sizes(stats), out / FIG6)
    save_png(figure_mask_quality(stats), out / FIG_QUALITY)
    atomic_write(out / CSV_QUALITY, _csv_bytes(*_quality_csv_rows(stats)))
    atomic_write(out / "per_class.csv", _csv_bytes(
        ["id", "name", "abbreviation", "pixels", "instances"],
        [[r["id"], r["name"], r["abbreviation"], r["pixels"], r["instances"]] for r in stats["per_class"]],
    ))
    ms = stats["mask_sizes"]
    atomic_write(out / "mask_sizes.csv", _csv_bytes(
        ["bin", "lower_edge", "instances"], list(zip(ms["bins"], ms["lower_edges"], ms["counts"]))))
    t2 = stats["table2"]
    atomic_write(out / "table2.csv", _csv_bytes(list(t2), [list(t2.values())]))
    atomic_write(out / "table2.md", (
        "| " + " | ".join(t2) + " |\n|" + "---|" * len(t2) + "\n| "
        + " | ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in t2.values()) + " |\n").encode())
    stats["files"] = {"per_class_figure": FIG5, "mask_sizes_figure": FIG6, "per_class_csv": "per_class.csv",
                      "mask_sizes_csv": "mask_sizes.csv", "mask_quality_figure": FIG_QUALITY,
                      "mask_quality_csv": CSV_QUALITY, "table2_csv": "table2.csv", "table2_md": "table2.md",
                      "json": "stats.json"}
    atomic_write(out / "stats.json", (json.dumps(stats, indent=2, ensure_ascii=False) + "\n").encode())
    return stats
