"""The prompt study of Sec. 2.4 / Table 1: SAM masks from each prompt setting against ground truth.

Every image is encoded ONCE and its embedding decoded with all requested settings, so 15 settings
cost one encoder pass plus 15 cheap decoder passes per image. Scores follow Eq. 1 through
:class:`metrics.InstanceIoU`. The command (one model, or several compared) is
:func:`samrs_hf.analysis.ablation_models.main`.

Ground truth: HRSC2016 ships whose ``seg_color`` marks pixels of the segmentation image (the
paper's 124 test images), or COCO annotations with polygon/RLE ``segmentation`` (mask quality of
SAM on your own data). Instances without a ground-truth mask (no ``seg_color``, no
``segmentation``), with an empty one, or COCO crowd regions are counted per reason and left out of
Eq. 1's N: they have no ground truth to score against (counted in, each would add an IoU of 0), and
the paper does not say how it handled them. The report lists every one.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..sources.imageio import open_rgb
from ..common.files import atomic_write
from .metrics import InstanceIoU
from ..sam.prompts import TABLE1_PROMPTS, canonical_prompt_name, make_prompts, parse_prompt
from ..sources.records import SourceError

log = logging.getLogger(__name__)

PAPER_TABLE1 = {
    "CP": (16.14, 2.72),
    "H-Box": (89.97, 79.40),
    "H-Box-M": (40.54, 36.71),
    "CP+H-Box": (86.67, 77.35),
    "H-Box+H-Box-M": (74.21, 62.25),
    "CP+H-Box-M": (24.54, 5.41),
    "CP+H-Box+H-Box-M": (59.71, 49.30),
    "R-Box-M": (65.54, 59.78),
    "CP+R-Box-M": (26.49, 4.97),
    "RH-Box": (88.85, 76.42),
    "RH-Box-M": (34.63, 31.81),
    "CP+RH-Box": (83.55, 72.67),
    "RH-Box+RH-Box-M": (66.23, 52.75),
    "CP+RH-Box-M": (23.71, 5.10),
    "CP+RH-Box+RH-Box-M": (49.24, 39.03),
}
"""Table 1 of the paper: (mIoU_I, mIoU_P) in percent on the 124 HRSC2016 test images."""

FORMATS = ("hrsc2016", "coco")

# reasons an instance is left out of Eq. 1
NO_MASK, EMPTY_MASK, CROWD = "no-ground-truth-mask", "empty-ground-truth-mask", "crowd-region"


def parse_settings(spec: str | None) -> tuple[str, ...]:
    """``"all"``/None -> the 15 Table 1 rows; else comma-separated names in canonical spelling."""
    if spec is None or spec.strip().lower() == "all":
        return TABLE1_PROMPTS
    return comma_list(spec, "--prompts", "prompt setting", canonical_prompt_name)


def comma_list(spec: str, option: str, what: str, convert=str) -> tuple[str, ...]:
    """An option's comma-separated values, in order, each through ``convert``; an empty list or a
    value given twice is a ValueError naming the option."""
    values = tuple(convert(s.strip()) for s in str(spec).split(",") if s.strip())
    if not values:
        raise ValueError(f"{option} lists no {what}")
    dup = [v for v, c in Counter(values).items() if c > 1]
    if dup:
        raise ValueError(f"{option} names {dup[0]} twice")
    return values


def group_of(name: str) -> str:
    """Table 1's row group: Point, H-Box, R-Box or RH-Box."""
    parts = parse_prompt(name)
    if any(p.startswith("RH-Box") for p in parts):
        return "RH-Box"
    if "R-Box-M" in parts:
        return "R-Box"
    if any(p.startswith("H-Box") for p in parts):
        return "H-Box"
    return "Point"


# --------------------------------------------------------------------------- ground truth


@dataclass
class GroundTruthImage:
    """One image with the objects that have a usable ground-truth mask, in annotation order."""

    image_id: str
    image_path: Path
    width: int
    height: int
    objects: list
    masks: list[np.ndarray]
    indices: list[int]
    """Position of each kept object among the image's annotated objects."""


@dataclass
class Exclusions:
    """Instances left out of Eq. 1, by reason, and where."""

    counts: Counter = field(default_factory=Counter)
    where: list[tuple[str, str]] = field(default_factory=list)

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] += 1
        self.where.append((reason, where))


def _coco_mask(segmentation, h: int, w: int, where: str) -> np.ndarray:
    """A COCO polygon list, uncompressed RLE or compressed RLE -> HxW bool (pycocotools)."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, dict) and not isinstance(segmentation.get("counts"), list):
        size = [int(v) for v in segmentation.get("size", ())]
        if size != [h, w]:
            raise SourceError(f"{where}: segmentation RLE size {size} differs from the image {[h, w]}")
    try:
        if isinstance(segmentation, list):  # polygons
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w))
        elif isinstance(segmentation["counts"], list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(segmentation, h, w)
        else:
            counts = segmentation["counts"]
            rle = {"size": [h, w], "counts": counts.encode() if isinstance(counts, str) else counts}
        return mask_utils.decode(rle).astype(bool)
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise SourceError(f"{where}: unreadable segmentation ({exc})") from None


def _gt_masks(fmt: str, image) -> list[np.ndarray | None]:
    if fmt == "hrsc2016":
        from ..sources.readers.hrsc2016 import gt_instance_masks

        return gt_instance_masks(image)
    out = []
    for obj in image.objects:
        seg = obj.extra.get("segmentation")
        out.append(None if not seg else _coco_mask(seg, image.height, image.width, obj.where))
    return out


def ground_truth_images(source, fmt: str, exclusions: Exclusions, *, process_index: int = 0,
                        num_processes: int = 1) -> Iterator[GroundTruthImage]:
    """Images of ``source`` with their maskable objects; left-out instances go to ``exclusions``.

    With several processes, image ``i`` belongs to process ``i % num_processes`` (round-robin).
    """
    for i, image in enumerate(source.images()):
        if i % num_processes != process_index:
            continue
        masks = _gt_masks(fmt, image)
        keep_objects, keep_masks, keep_indices = [], [], []
        for j, (obj, mask) in enumerate(zip(image.objects, masks)):
            where = obj.where or image.image_id
            if obj.extra.get("iscrowd"):
                exclusions.add(CROWD, where)
            elif mask is None:
                exclusions.add(NO_MASK, where)
            elif mask.shape != (image.height, image.width):
                raise SourceError(f"{where}: ground-truth mask is {mask.shape[1]}x{mask.shape[0]}, "
                                  f"the image is {image.width}x{image.height}")
            elif not mask.any():
                exclusions.add(EMPTY_MASK, where)
            else:
                keep_objects.append(obj)
                keep_masks.append(mask)
                keep_indices.append(j)
        yield GroundTruthImage(image.image_id, Path(image.image_path), image.width, image.height,
                               keep_objects, keep_masks, keep_indices)


# --------------------------------------------------------------------------- evaluation


def evaluate_image(labeler, image: np.ndarray, objects, gt_masks, settings) -> dict[str, list[tuple[int, int]]]:
    """(intersection, union) per object for each setting; the image is encoded once."""
    h, w = image.shape[:2]
    frame = labeler.prompt_frame() if hasattr(labeler, "prompt_frame") else {}  # mask prompts: the model's frame
    embeddings = labeler.embed([image])
    out = {}
    for name in settings:
        result = labeler.decode(embeddings, 0, make_prompts(name, objects, (h, w), **frame))
        if len(result.masks) != len(objects):
            raise RuntimeError(f"{name}: the model returned {len(result.masks)} masks for {len(objects)} prompts")
        pairs = []
        for pred, gt in zip(result.masks, gt_masks):
            pred = np.asarray(pred, dtype=bool)
            pairs.append((int(np.count_nonzero(pred & gt)), int(np.count_nonzero(pred | gt))))
        out[name] = pairs
    return out


@dataclass
class AblationResult:
    settings: tuple[str, ...]
    scores: dict[str, InstanceIoU]
    images: int
    instances: int
    exclusions: dict[str, int]
    records: list[dict]
    """Per (image, object, setting): intersection, union, IoU."""
    source_problems: dict[str, int] = field(default_factory=dict)
    """The reader's skip/note counts (``Report.counts()``)."""
    source: str = ""
    fmt: str = ""
    split: str | None = None
    model: dict = field(default_factory=dict)

    def rows(self) -> list[dict]:
        rows = []
        for name in self.settings:
            parts = parse_prompt(name)
            acc = self.scores[name]
            paper = PAPER_TABLE1.get(name)
            rows.append({
                "group": group_of(name),
                "prompt": name,
                **{p: p in parts for p in BASIC_PROMPT_COLUMNS},
                "mIoU_I": _pct(acc.miou_i),
                "mIoU_P": _pct(acc.miou_p),
                "paper_mIoU_I": paper[0] if paper else None,
                "paper_mIoU_P": paper[1] if paper else None,
                "instances": len(acc),
                "skipped_empty_union": acc.skipped_empty,
            })
        return rows

    def to_dict(self) -> dict:
        return {
            "source": self.source, "format": self.fmt, "split": self.split, "model": self.model,
            "images": self.images, "instances": self.instances, "excluded": self.exclusions,
            "source_problems": self.source_problems, "rows": self.rows(),
        }


BASIC_PROMPT_COLUMNS = ("CP", "H-Box", "H-Box-M", "R-Box-M", "RH-Box", "RH-Box-M")
"""Table 1's check-mark columns, in its order (the six basic prompts)."""


def _pct(v: float) -> float | None:
    return None if v != v else round(100.0 * v, 2)


def aggregate(records: list[dict], settings, images: int, exclusions: dict) -> AblationResult:
    """Eq. 1 per setting over per-instance records (sorted first, so any sharding gives one answer)."""
    settings = tuple(settings)
    records = sorted(records, key=lambda r: (r["image_id"], r["object"], settings.index(r["prompt"])))
    scores = {name: InstanceIoU() for name in settings}
    for r in records:
        scores[r["prompt"]].add_counts(r["intersection"], r["union"])
    instances = len({(r["image_id"], r["object"]) for r in records})
    return AblationResult(tuple(settings), scores, images, instances, dict(sorted(exclusions.items())), records)


def run_ablation(source, fmt: str, labeler, settings=TABLE1_PROMPTS, *, process_index: int = 0,
                 num_processes: int = 1, progress: bool = False):
    """This process's share of the study: ``(records, images, exclusion counts)`` to gather and aggregate.

    Images are dealt round-robin over processes (index ``i`` goes to ``i % num_processes``).
    """
    from tqdm.auto import tqdm

    settings = tuple(settings)
    exclusions = Exclusions()
    records: list[dict] = []
    images = 0
    items = ground_truth_images(source, fmt, exclusions, process_index=process_index, num_processes=num_processes)
    for gt in tqdm(items, desc="ablation", unit="img", disable=not progress):
        images += 1
        if not gt.objects:
            continue
        pixels = open_rgb(gt.image_path)
        if pixels.shape[:2] != (gt.height, gt.width):
            raise SourceError(f"{gt.image_path}: image is {pixels.shape[1]}x{pixels.shape[0]}, "
                              f"annotation says {gt.width}x{gt.height}")
        pairs = evaluate_image(labeler, pixels, gt.objects, gt.masks, settings)
        for name, per_object in pairs.items():
            for j, (inter, union) in enumerate(per_object):
                records.append({"image_id": gt.image_id, "object": gt.indices[j], "where": gt.objects[j].where,
                                "prompt": name, "intersection": inter, "union": union,
                                "iou": inter / union if union else None})
    return records, images, dict(exclusions.counts)


# --------------------------------------------------------------------------- outputs


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "✓" if v else ""
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


TABLE_COLUMNS = ("group", "prompt", *BASIC_PROMPT_COLUMNS, "mIoU_I", "mIoU_P", "paper_mIoU_I", "paper_mIoU_P",
                 "instances")


def table_markdown(result: AblationResult) -> str:
    head = ["Group", "Prompt", "CP", "H-Box", "H-Box-M", "R-Box-M", "RH-Box", "RH-Box-M", "mIoU_I", "mIoU_P",
            "paper mIoU_I", "paper mIoU_P", "#inst."]
    lines = [
        f"Prompt ablation (paper Table 1) on {result.fmt} `{result.source}`"
        + (f" split `{result.split}`" if result.split else "")
        + f": {result.images} images, {result.instances} instances with a ground-truth mask.",
        "",
    ]
    if result.model.get("random"):
        lines += ["**The model has random weights: these numbers say nothing about SAM.**", ""]
    if result.exclusions:
        lines += ["Left out (Eq. 1): " + ", ".join(f"{k} {v}" for k, v in result.exclusions.items()) + ".", ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] * 2 + [":-:"] * 6 + ["--:"] * 5) + "|")
    for row in result.rows():
        lines.append("| " + " | ".join(_fmt(row[c]) for c in TABLE_COLUMNS) + " |")
    lines += ["", "mIoU in percent (Eq. 1): mIoU_I = mean over instances of I/U; mIoU_P = ΣI / ΣU."]
    return "\n".join(lines) + "\n"


def table_csv(result: AblationResult) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(TABLE_COLUMNS)
    for row in result.rows():
        writer.writerow(["" if row[c] is None else int(row[c]) if isinstance(row[c], bool) else row[c]
                         for c in TABLE_COLUMNS])
    return buf.getvalue()


def write_outputs(result: AblationResult, out_dir) -> dict[str, Path]:
    """``table1.md``, ``table1.csv``, ``table1.json`` and per-instance ``instances.csv``."""
    out = Path(out_dir)
    files = {"markdown": out / "table1.md", "csv": out / "table1.csv", "json": out / "table1.json",
             "instances": out / "instances.csv"}
    atomic_write(files["markdown"], table_markdown(result).encode())
    atomic_write(files["csv"], table_csv(result).encode())
    atomic_write(files["json"], (json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n").encode())
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image_id", "object", "where", "prompt", "intersection", "union", "iou"])
    for r in result.records:
        writer.writerow([r["image_id"], r["object"], r["where"], r["prompt"], r["intersection"], r["union"],
                         "" if r["iou"] is None else f"{r['iou']:.6f}"])
    atomic_write(files["instances"], buf.getvalue().encode())
    return files
