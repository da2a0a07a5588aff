"""Statistics of a build or a packaged dataset: Fig. 5, Fig. 6 and the Table 2 row of the paper.

Both kinds of folder are read through :func:`open_folder`, which yields examples in the packaged
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
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..sources.classes import ABBREVIATIONS, IGNORE_INDEX, color_of, get_class_table
from ..build.layout import atomic_write, is_build_dir, iter_build_items, read_report
from ..sources.records import SourceError

SIZE_EDGES = (0, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000)
"""Lower edges (pixels) of the Fig. 6 bins; the last bin is open-ended."""
SIZE_LABELS = ("<100", "100-500", "500-1k", "1k-5k", "5k-10k", "10k-50k", "50k-100k", ">=100k")

FIG5, FIG6 = "class_pixels_instances.png", "mask_sizes.png"
SPLIT_ORDER = ("train", "validation", "val", "trainval", "test")


class NotADatasetFolder(SourceError):
    """The folder is neither a ``samrs build`` output nor a packaged (parquet) dataset."""


def size_bin(area: int) -> int:
    """Index of the Fig. 6 bin of a mask of ``area`` pixels (area >= 1)."""
    return int(np.searchsorted(SIZE_EDGES, area, side="right") - 1)


# --------------------------------------------------------------------------- folder access


@dataclass
class DatasetFolder:
    """A build output or a packaged dataset, read as examples in the Hub features' convention.

    Examples are dicts with ``image`` (PIL, or None when ``images=False``), ``semantic`` (PIL
    mode L), ``objects`` (list of ``{id, category (int), bbox xywh, rbox, segmentation RLE, area,
    score, truncated}``), ``image_id``, ``source_image``, ``width``, ``height``, ``subset``, ``split``.
    """

    path: Path
    kind: str  # "build" or "hub"
    subset: str
    class_names: tuple[str, ...]
    splits: tuple[str, ...] = ()
    _hub: object = field(default=None, repr=False)

    def examples(self, split: str | None = None, *, images: bool = True) -> Iterator[dict]:
        if split is not None and self.splits and split not in self.splits:
            raise SourceError(f"{self.path}: no split {split!r}; it has {', '.join(self.splits)}")
        if self.kind == "build":
            yield from self._build_examples(split, images)
        else:
            yield from self._hub_examples(split, images)

    def _build_examples(self, split, images) -> Iterator[dict]:
        from PIL import Image

        next_id = itertools.count()
        seen_splits = set()
        for item in iter_build_items(self.path):
            record = item.load_instances()
            seen_splits.add(record.get("split"))
            if split is not None and record.get("split") != split:
                continue
            if not item.gray_path.is_file():
                raise SourceError(f"{item.gray_path}: missing semantic map for {item.ins_path.name}")
            semantic = Image.open(item.gray_path)
            image = None
            if images:
                if not item.image_path.is_file():
                    raise SourceError(f"{item.image_path}: missing image for {item.ins_path.name}")
                image = Image.open(item.image_path)
            objects = []
            for k, inst in enumerate(record["instances"]):
                try:
                    x0, y0, x1, y1 = (float(v) for v in inst["bbox"])
                    label = inst.get("label")
                    if label is None:
                        label = self.class_names.index(inst["category"])
                    if not 0 <= int(label) < len(self.class_names):
                        raise ValueError(f"label {label} outside the {len(self.class_names)}-class table")
                    objects.append({
                        "id": next(next_id), "category": int(label), "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "rbox": inst.get("rbox"), "segmentation": inst["segmentation"],
                        "area": int(inst.get("area", 0)), "score": float(inst.get("score", 0.0)),
                        "truncated": bool(inst.get("truncated", False)),
                    })
                except (KeyError, TypeError, ValueError) as exc:
                    raise SourceError(f"{item.ins_path}:instances[{k}]: bad instance ({exc})") from None
            yield {
                "image": image, "semantic": semantic, "objects": objects, "image_id": record["image"],
                "source_image": record["source_image"], "width": int(record["width"]),
                "height": int(record["height"]), "subset": self.subset, "split": record.get("split"),
            }
        if split is not None and split not in seen_splits:
            have = ", ".join(sorted(str(s) for s in seen_splits)) or "no images"
            raise SourceError(f"{self.path}: no split {split!r}; it has {have}")

    def _hub_examples(self, split, images) -> Iterator[dict]:
        from datasets import Image as ImageFeature

        for name in ([split] if split is not None else self.splits):
            ds = self._hub[name]
            if not images:
                ds = ds.cast_column("image", ImageFeature(decode=False))
            for example in ds:
                if not images:
                    example["image"] = None
                example["split"] = name
                yield example


def _ordered(splits) -> tuple[str, ...]:
    known = [s for s in SPLIT_ORDER if s in splits]
    return tuple(known + sorted(s for s in splits if s not in known))


def is_hub_dir(path) -> bool:
    path = Path(path)
    return path.is_dir() and (any(path.glob("data/*.parquet")) or any(path.glob("data/*/*.parquet")))


def open_folder(path) -> DatasetFolder:
    """Open a ``samrs build`` output or a ``samrs package`` folder; anything else is an error."""
    path = Path(path)
    if not path.exists():
        raise NotADatasetFolder(f"{path}: no such folder")
    if is_build_dir(path):
        report = read_report(path)
        subset = str(report.get("subset", "custom"))
        names = report.get("classes")
        if isinstance(names, dict):  # {"names": [...]} or {id: name}
            names = names.get("names") or [names[k] for k in sorted(names, key=int)]
        if not names:
            names = get_class_table(subset).names
        return DatasetFolder(path, "build", subset, tuple(names))
    if is_hub_dir(path):
        from datasets import Image, load_dataset

        # Streaming reads the parquet shards directly: no copy of a 100k-image set into the cache.
        dd = load_dataset(str(path), streaming=True)
        first = dd[next(iter(dd))]
        if first.features is None or "objects" not in first.features:
            raise NotADatasetFolder(f"{path}: a parquet folder, but not a SAMRS dataset (no 'objects' feature)")
        names = tuple(first.features["objects"].feature["category"].names)
        example = next(iter(first.cast_column("image", Image(decode=False))), None)
        subset = example["subset"] if example else path.name
        return DatasetFolder(path, "hub", subset, names, _ordered(dd.keys()), _hub=dd)
    raise NotADatasetFolder(
        f"{path}: neither a samrs build (build.json + ins/) nor a packaged dataset (data/*.parquet)"
    )


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
    for ex in tqdm(folder.examples(split, images=False), desc="stats", unit="img", disable=not progress):
        images += 1
        per_split[ex["split"] or "-"] = per_split.get(ex["split"] or "-", 0) + 1
        w, h = int(ex["width"]), int(ex["height"])
        sizes[(w, h)] = sizes.get((w, h), 0) + 1
        total_pixels += w * h
        semantic = np.asarray(ex["semantic"])
        if semantic.shape[:2] != (h, w):
            raise SourceError(f"{ex['image_id']}: semantic map is {semantic.shape[1]}x{semantic.shape[0]}, "
                              f"image is {w}x{h}")
        pixels += np.bincount(semantic.ravel(), minlength=256)
        for obj in ex["objects"]:
            seg = obj["segmentation"]
            counts = seg["counts"]
            rle = {"size": list(seg["size"]), "counts": counts.encode() if isinstance(counts, str) else counts}
            area = int(mask_utils.area(rle))
            if area == 0:
                empty += 1
                continue
            instances[obj["category"]] += 1
            mask_pixels[obj["category"]] += area
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
        "split": split,
        "classes": list(folder.class_names),
        "per_class": [
            {"id": i, "name": n, "abbreviation": abbr[i], "pixels": int(mask_pixels[i]),
             "instances": int(instances[i])}
            for i, n in enumerate(folder.class_names)
        ],
        "mask_sizes": {"bins": list(SIZE_LABELS), "lower_edges": list(SIZE_EDGES), "counts": bins.tolist()},
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


def _new_figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, path) -> None:
    """Deterministic PNG (no software/date metadata), written atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    atomic_write(path, buf.getvalue())


def _bars(ax, labels, values, colors, ylabel):
    x = np.arange(len(values))
    ax.bar(x, values, color=[tuple(c / 255 for c in rgb) for rgb in colors], edgecolor="black", linewidth=0.3)
    ax.set_xticks(x, labels, rotation=90, fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_xlim(-0.6, len(values) - 0.4)
    if max(values, default=0) > 0:
        ax.set_yscale("log", nonpositive="clip")
        ax.set_ylim(bottom=0.5)


def figure_per_class(stats: dict):
    """Fig. 5: pixels (top) and instances (bottom) per class, log scale, palette colours."""
    rows = stats["per_class"]
    fig = _new_figure(max(4.0, 0.3 * len(rows) + 1.5), 6.0)
    top, bottom = fig.subplots(2, 1)
    labels = [r["abbreviation"] for r in rows]
    colors = [color_of(r["id"]) for r in rows]
    _bars(top, labels, [r["pixels"] for r in rows], colors, "#pixels")
    _bars(bottom, labels, [r["instances"] for r in rows], colors, "#instances")
    top.set_title(f"{stats['table2']['dataset']}: pixels and instances per class")
    fig.tight_layout()
    return fig


def figure_mask_sizes(stats: dict):
    """Fig. 6: number of instances per mask-size bin."""
    ms = stats["mask_sizes"]
    fig = _new_figure(5.0, 3.5)
    ax = fig.subplots()
    x = np.arange(len(ms["counts"]))
    ax.bar(x, ms["counts"], color=tuple(c / 255 for c in color_of(0)), edgecolor="black", linewidth=0.3)
    ax.set_xticks(x, ms["bins"], rotation=45, fontsize=8)
    ax.set_xlabel("mask size (pixels)")
    ax.set_ylabel("#instances")
    ax.set_title(f"{stats['table2']['dataset']}: mask sizes")
    fig.tight_layout()
    return fig


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
                      "mask_sizes_csv": "mask_sizes.csv", "table2_csv": "table2.csv", "table2_md": "table2.md",
                      "json": "stats.json"}
    atomic_write(out / "stats.json", (json.dumps(stats, indent=2, ensure_ascii=False) + "\n").encode())
    return stats
