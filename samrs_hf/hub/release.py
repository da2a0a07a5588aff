"""Reader of the official SAMRS release: its pickles (``ins/*.pkl``) or its COCO JSON variant, as rows.

Where the pieces lie is :mod:`.release_layout`'s job, the release's own split lists are
:mod:`.release_lists`', the COCO variant's annotations :mod:`.release_coco`'s: each becomes the release's
instance record, so one function (:func:`read_release_item`) checks them and makes every row.

Pickle runs code while loading, so the ``ins/*.pkl`` files are read with
:func:`samrs_hf.common.safe_load.load_pickle` (re-exported here as :func:`safe_load_pickle`): plain data
and numpy arrays of the file's own bytes only. A refused file is an ``unsafe-file`` skip naming the
file and what it asked for (an error under ``strict``), like any other unusable item.

Rows come out in the packaged features (``samrs_hf.hub.features``), so a converted release and a
packaged build are the same kind of dataset. :mod:`.release_builder` wraps the reader as a
``datasets.GeneratorBasedBuilder`` for ``samrs_hf/loading_scripts/{sota,sior,fast}.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from . import splits as split_rules
from ..sources.classes import get_class_table
from ..sources.imageio import CorruptImageError, image_size
from ..build.layout import IMAGE_EXTENSIONS, is_build_dir, read_report
from .checks import instance_ok, make_object
from .features import FIRST_OBJECT_ID, dataset_example
from .release_coco import CocoImage, paint_gray, read_coco_file, release_records
from .release_layout import GRAY, INS, ReleaseLayout, ReleaseLayoutError, find_release
from .release_lists import OfficialSplits, list_files_splits, official_splits, shown_path
from .rows import Row
from .writer import DEFAULT_ROW_GROUP_SIZE, check_sizes
from ..sources.records import (
    CORRUPT_IMAGE,
    GARBLED_ANNOTATION,
    MISSING_IMAGE,
    SIZE_MISMATCH,
    UNREADABLE_FILE,
    UNSAFE_FILE,
    Report,
    SourceError,
)
from ..common.safe_load import CorruptPickleError, UnsafePickleError
from ..common.safe_load import load_pickle as safe_load_pickle

__all__ = ["ReleaseItem", "ReleasePlan", "make_plan", "plan_release", "read_release_item", "release_splits",
           "release_examples", "convert_release", "safe_load_pickle", "UnsafePickleError", "ReleaseLayoutError"]

ID_STRIDE = 2**20
"""Object ids are ``item_index * ID_STRIDE + k + FIRST_OBJECT_ID``: unique over the release, whatever the split."""
DIOR_FIRST_TEST_ID = 11726

# ------------------------------------------------------------------------------------------ items

def source_of(name: str, subset: str) -> tuple[str, str | None]:
    """(source image id, source split) from a release file name.

    BboxToolkit patches are ``<source>__<size>__<x>___<y>``; DIOR images 11726-23463 are its test set.
    """
    source = name.split("__")[0]
    if subset == "sior" and source.isdigit() and int(source) >= DIOR_FIRST_TEST_ID:
        return source, "test"
    return source, None


def release_names(root) -> list[str]:
    root = Path(root)
    if not (root / INS).is_dir() or not (root / GRAY).is_dir():
        raise SourceError(f"{root}: not a SAMRS release folder (needs gray/ and ins/)")
    names = sorted(p.stem for p in (root / INS).glob("*.pkl"))
    if not names:
        raise SourceError(f"{root / INS}: no *.pkl instance files (a `samrs build` without --pkl? use `samrs package`)")
    return names


def _box(entry: dict):
    if entry.get("bbox") is not None:
        return [float(v) for v in np.asarray(entry["bbox"], dtype=np.float64).reshape(-1)[:4]]
    if entry.get("rhbox") is not None:
        return [float(v) for v in np.asarray(entry["rhbox"], dtype=np.float64).reshape(-1)[:4]]
    corners = np.asarray(entry["rbox"], dtype=np.float64).reshape(4, 2)
    return [*corners.min(0).tolist(), *corners.max(0).tolist()]


def _objects(entries, table, w: int, h: int, first_id: int, where: str, report: Report) -> list[dict] | None:
    from pycocotools import mask as mask_utils

    if not isinstance(entries, (list, tuple)):
        report.skip(GARBLED_ANNOTATION, where, f"expected a list of instances, got {type(entries).__name__}")
        return None
    if len(entries) >= ID_STRIDE:
        raise SourceError(f"{where}: {len(entries)} instances exceed the id stride {ID_STRIDE}")
    objects = []
    for k, entry in enumerate(entries):
        at = f"{where}:[{k}]"
        try:
            category = entry.get("category")
            class_id = table.id_of(str(category)) if category is not None else int(entry["label"])
            rle = entry["mask"]
            if not instance_ok(table, class_id, category, rle, (w, h), at, report):
                return None
            counts = rle["counts"]
            area = entry.get("size")
            if area is None:
                area = mask_utils.area({"size": [h, w], "counts": counts.encode() if isinstance(counts, str) else counts})
            rbox = entry.get("rbox")
            rbox = None if rbox is None else np.asarray(rbox, dtype=np.float64).reshape(-1).tolist()
            if rbox is not None and len(rbox) != 8:
                raise ValueError(f"rbox has {len(rbox)} values")
            objects.append(make_object(first_id + k, class_id, _box(entry), rbox, rle, int(area),
                                       entry.get("score"), entry.get("truncated")))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            report.skip(GARBLED_ANNOTATION, at, f"bad instance ({exc!r})")
            return None
    return objects


@dataclass(frozen=True)
class ReleaseItem:
    index: int
    """Position in the sorted release: fixes the object ids whatever split is read."""
    name: str
    source_image: str
    split: str
    image: Path | None = None
    gray: Path | None = None
    ins: Path | None = None
    """``ins/<name>.pkl`` (pickle variant)"""
    coco: CocoImage | None = None
    """the image's entry in a ``*_ins_segmentation.json`` (COCO variant)"""
    rbbtxt: Path | None = None

    @property
    def where(self) -> str:
        return str(self.ins) if self.ins is not None else self.coco.where


@dataclass
class ReleasePlan:
    """What a release holds, split by split, and which rule made the splits."""

    layout: ReleaseLayout
    items: list[ReleaseItem]
    official: OfficialSplits | None = None

    @property
    def split_rule(self) -> str | None:
        """The card's sentence when the release's own lists made the splits (None: the hash rule)."""
        return None if self.official is None else self.official.describe()

    def by_split(self) -> dict[str, list[ReleaseItem]]:
        """Only splits that have images (an empty one has no data file)."""
        by_split = {s: [item for item in self.items if item.split == s] for s in split_rules.SPLITS}
        return {s: items for s, items in by_split.items() if items}


def index_images(folders) -> dict[str, Path]:
    """name -> image file, the first folder holding a name winning (one listing per folder)."""
    rank = {ext: i for i, ext in enumerate(IMAGE_EXTENSIONS)}
    found: dict[str, Path] = {}
    for folder in folders:
        files = sorted((p for p in Path(folder).iterdir() if p.suffix.lower() in rank),
                       key=lambda p: (p.stem, rank[p.suffix.lower()]))
        for p in files:
            found.setdefault(p.stem, p)
    return found


def _sidecar(ins: Path, source: str, source_split, report: Report):
    """``ins/<name>.json`` of a ``samrs build --pkl`` folder: its source image and split (False: unusable)."""
    import json

    sidecar = ins.with_suffix(".json")
    if not sidecar.is_file():
        return source, source_split
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        return str(meta.get("source_image", source)), meta.get("split", source_split)
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        report.skip(GARBLED_ANNOTATION, str(sidecar), f"corrupt instance file ({exc})")
    except OSError as exc:
        report.skip(UNREADABLE_FILE, str(sidecar), f"cannot read the instance file ({exc.strerror or exc})")
    return False


def _entries(layout: ReleaseLayout, images: dict, report: Report):
    """``(name, where, ins, coco)`` per release item, sorted, and the official splits (or None)."""
    if layout.variant == "pkl":
        names = release_names(layout.labels)
        official = list_files_splits(layout.split_lists, names, report, layout.root)
        return [(n, str(layout.ins / f"{n}.pkl"), layout.ins / f"{n}.pkl", None) for n in names], official
    coco = {}
    for split, path in layout.coco_files:
        for image in read_coco_file(path, split):
            coco.setdefault(image.name, image)
    listed = {split: [(im.name, im.where) for im in coco.values() if im.split == split] for split, _ in layout.coco_files}
    sources = {split: shown_path(path, layout.root) for split, path in layout.coco_files}
    official = official_splits(listed, sources, images, report)
    for name in sorted(set(images) - set(coco)):  # images no COCO file annotates
        official.assign(name, str(images[name]), report)
    return [(n, coco[n].where, None, coco[n]) for n in sorted(coco)], official


def make_plan(root, subset: str, *, val_fraction: float = 0.05, seed: int = 0, report: Report | None = None,
              images_dir=None, labels_dir=None, variant: str = "auto") -> ReleasePlan:
    """Every release image with its split, from names alone (plus ``ins/<name>.json`` when a
    ``samrs build --pkl`` folder provides it): cheap, no pickle is opened. The release's own lists
    (``train.txt`` / ``valid.txt``, or the COCO files) decide the split when present, else the hash rule."""
    report = report if report is not None else Report()
    layout = find_release(root, images_dir=images_dir, labels_dir=labels_dir, variant=variant)
    images = index_images(layout.images)
    entries, official = _entries(layout, images, report)
    items = []
    for index, (name, where, ins, coco) in enumerate(entries):
        source, source_split = source_of(name, subset)
        image = images.get(name)
        if image is not None and image.parent.name.lower().endswith("test"):  # DIOR's JPEGImages-test
            source_split = "test"
        if ins is not None:
            meta = _sidecar(ins, source, source_split, report)
            if meta is False:
                continue
            source, source_split = meta
        if source_split is not None and str(source_split).lower() in split_rules.SOURCE_TEST_SPLITS:
            split = split_rules.TEST
        elif official is not None:
            split = official.assign(name, where, report)
            if split is None:
                continue
        else:
            split = split_rules.assign_split(source, source_split, val_fraction=val_fraction, seed=seed)
        gray = None if layout.gray is None else layout.gray / f"{name}.png"
        rbb = None if layout.rbbtxts is None else layout.rbbtxts / f"{name}.txt"
        items.append(ReleaseItem(index, name, source, split, image, gray, ins, coco, rbb))
    return ReleasePlan(layout, items, official)


def plan_release(root, subset: str, *, val_fraction: float = 0.05, seed: int = 0,
                 report: Report | None = None, **where) -> list[ReleaseItem]:
    """The planned items of :func:`make_plan` (``where``: ``images_dir``, ``labels_dir``, ``variant``)."""
    return make_plan(root, subset, val_fraction=val_fraction, seed=seed, report=report, **where).items


def _size(item: ReleaseItem, where: str, report: Report) -> tuple[int, int] | None:
    """The image's (w, h) once it agrees with the gray map / the COCO entry (None: counted skip)."""
    try:
        w, h = image_size(item.image)
        if item.gray is not None and image_size(item.gray) != (w, h):
            report.skip(SIZE_MISMATCH, where, f"{item.image} is {(w, h)}, {item.gray} is {image_size(item.gray)}")
            return None
    except (CorruptImageError, FileNotFoundError, OSError) as exc:
        report.skip(CORRUPT_IMAGE, where, f"unreadable image or gray map: {exc}")
        return None
    coco = item.coco
    if coco is not None and None not in (coco.width, coco.height) and (coco.width, coco.height) != (w, h):
        report.skip(SIZE_MISMATCH, where, f"{item.image} is {(w, h)}, the COCO file says {(coco.width, coco.height)}")
        return None
    return w, h


def _instances(item: ReleaseItem, size, table, where: str, report: Report):
    """The item's release instance records: its pickle (through ``safe_load``) or its COCO annotations."""
    if item.coco is not None:
        return release_records(item.coco, size, item.rbbtxt, table, report)
    try:
        return safe_load_pickle(item.ins)
    except UnsafePickleError as exc:
        report.skip(UNSAFE_FILE, where, str(exc).removeprefix(f"{item.ins}: "))
    except CorruptPickleError as exc:
        report.skip(GARBLED_ANNOTATION, where, str(exc).removeprefix(f"{item.ins}: "))
    except OSError as exc:
        report.skip(UNREADABLE_FILE, where, f"cannot read the instance file ({exc.strerror or exc})")
    return None


def read_release_item(root, item: ReleaseItem, subset: str, report: Report) -> Row | None:
    """The row of one planned item, or None (counted in ``report``)."""
    table = get_class_table(subset)
    where = item.where
    if item.image is None:
        report.skip(MISSING_IMAGE, where, f"no image named {item.name} in the release's image folder(s) under {root}")
        return None
    size = _size(item, where, report)
    if size is None:
        return None
    entries = _instances(item, size, table, where, report)
    if entries is None:
        return None
    w, h = size
    objects = _objects(entries, table, w, h, item.index * ID_STRIDE + FIRST_OBJECT_ID, where, report)
    if objects is None:
        return None
    gray = item.gray.read_bytes() if item.gray is not None else paint_gray(entries, size, table)
    example = dataset_example(image={"bytes": item.image.read_bytes(), "path": item.image.name},
                              semantic={"bytes": gray, "path": f"{item.name}.png"}, objects=objects,
                              name=item.name, source_image=item.source_image, width=w, height=h, subset=subset)
    return Row(item.split, example, where)


def release_splits(root, subset: str, *, val_fraction: float = 0.05, seed: int = 0,
                   report: Report | None = None, **where) -> dict[str, list[ReleaseItem]]:
    """The planned items per split, only splits that have images (an empty one has no data file)."""
    return make_plan(root, subset, val_fraction=val_fraction, seed=seed, report=report, **where).by_split()


def release_examples(root, items, subset: str, report: Report) -> Iterator[tuple[str, dict]]:
    """``(file_name, example)`` of the usable items, in order: what the builder and the converter both write."""
    for item in items:
        row = read_release_item(root, item, subset, report)
        if row is not None:
            yield row.example["file_name"], row.example


def convert_release(root, subset: str, to, *, name: str | None = None, shard_size="500MB",
                    row_group_size=DEFAULT_ROW_GROUP_SIZE, val_fraction: float = 0.05, seed: int = 0, strict: bool = False, progress: bool = True,
                    stats=None, images_dir=None, labels_dir=None, variant: str = "auto",
                    min_score: float | None = None, min_box_iou: float | None = None):
    """``samrs convert-release``: release folder -> the same parquet + README layout as ``package``.

    ``images_dir`` / ``labels_dir`` replace the search for the image and label folders
    (:func:`samrs_hf.hub.release_layout.find_release`); ``variant`` picks ``pkl`` or ``coco``."""
    from tqdm.auto import tqdm

    from .packaging import write_hub_dir

    check_sizes(shard_size, row_group_size)
    root = Path(root)
    report = Report(strict=strict)
    plan = make_plan(root, subset, val_fraction=val_fraction, seed=seed, report=report, images_dir=images_dir,
                     labels_dir=labels_dir, variant=variant)
    by_split = plan.by_split()

    def rows():
        bar = tqdm(total=sum(map(len, by_split.values())), desc=f"converting {root.name}", unit="img",
                   disable=not progress)
        for split, items in by_split.items():
            for file_name, example in release_examples(root, items, subset, report):
                bar.update(1)
                yield Row(split, example, file_name)
        bar.close()

    labels = plan.layout.labels
    if labels is not None and is_build_dir(labels):  # a `samrs build --pkl` folder: its report says which model
        info = dict(read_report(labels), path=str(root))
    else:
        info = {"path": str(root), "format": f"samrs-release ({plan.layout.variant})", "prompt": "as released",
                "model": {"spec": "SAM ViT-H (sam_vit_h_4b8939.pth, official release)", "random": False}}
    return write_hub_dir(rows(), to, name=name or subset, table=get_class_table(subset), builds=[info],
                         report=report, shard_size=shard_size, row_group_size=row_group_size,
                         val_fraction=val_fraction, seed=seed, stats=stats, split_rule=plan.split_rule, min_score=min_score, min_box_iou=min_box_iou)
