"""Dataset rows from build folders: each ``ins/*.json`` (read through the typed record) with its image
and gray map, checked (:mod:`.checks`), split (:mod:`.splits`) and given dataset-wide object ids."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..build import layout
from ..build.records import InstanceRecord, PatchRecord
from ..common.prefetch import prefetch_map
from ..sources.classes import ClassTable, class_table_from_names, get_class_table
from ..sources.records import GARBLED_ANNOTATION, MISSING_ANNOTATION, Report, SourceError
from . import splits
from .checks import (
    LABEL_MISMATCH,
    PackagingError,
    gray_ok,
    image_ok,
    instance_ok,
    make_object,
    read_bytes,
    values_ok,
)
from .features import FIRST_OBJECT_ID, dataset_example

CHECK_WORKERS = max(0, min(4, (os.cpu_count() or 1) - 1))
"""Threads reading and checking build items; one core stays with the parquet writer (on 2 cores
two checkers ran slower than one: the checks are cheap, the threads' hand-offs are not)."""


@dataclass
class Row:
    """A dataset row before encoding, plus where it goes."""

    split: str
    example: dict
    source: str
    """File the row came from (for messages)."""


@dataclass
class ClassCounter:
    """Per-class instance counts for the card's class table."""

    instances: Counter = field(default_factory=Counter)

    def add(self, row: Row) -> None:
        self.instances.update(row.example["objects"]["category"])


@dataclass
class UniqueImageIds:
    """The ``image_id`` of every row written, so that it identifies one row: two patch names whose 63-bit
    ids collide (or one name given twice) are an error naming both rows."""

    seen: dict[int, tuple[str, str]] = field(default_factory=dict)
    """image_id -> (file_name, where the row came from)"""

    def add(self, row: Row) -> None:
        image_id, name = row.example["image_id"], row.example["file_name"]
        other = self.seen.setdefault(image_id, (name, row.source))
        if other != (name, row.source):
            what = "the same patch name" if other[0] == name else f"image_id {image_id} (a hash collision)"
            raise PackagingError(f"{row.source}: image {name!r} has {what} as image {other[0]!r} of {other[1]}; "
                                 f"rename one of them")


def build_class_table(report: dict, where) -> ClassTable:
    subset = report.get("subset")
    if not subset:
        raise PackagingError(f"{where}: build report has no 'subset'")
    names = report.get("classes")
    try:
        table = get_class_table(subset)
    except KeyError:
        if not names:
            raise PackagingError(f"{where}: custom subset {subset!r} without a 'classes' list") from None
        return class_table_from_names(subset, names)
    if names and tuple(names) != table.names:
        raise PackagingError(f"{where}: classes differ from the {subset} class table")
    return table


def object_from_instance(data: dict, table: ClassTable, size: tuple[int, int], at: str, report: Report) -> dict | None:
    """The ``objects`` entry (id 0 until the row is accepted) of one ``ins/*.json`` instance (parsed by
    :class:`InstanceRecord`), or None (counted in ``report``): a bad instance drops that object only."""
    try:
        inst = InstanceRecord.from_json(data)
        class_id = table.id_of(str(inst.category))
        if not instance_ok(table, class_id, inst.category, inst.segmentation, size, at, report):
            return None
        if inst.label is not None and inst.label != class_id:
            report.skip(LABEL_MISMATCH, at, f"label {inst.label!r} is not the id of category {inst.category!r} ({class_id})")
            return None
        if inst.rbox is not None and len(inst.rbox) != 8:
            raise ValueError(f"rbox has {len(inst.rbox)} values, expected 8")
        if len(inst.bbox) != 4:
            raise ValueError(f"bbox has {len(inst.bbox)} values, expected 4")
        obj = make_object(0, class_id, inst.bbox, inst.rbox, inst.segmentation, inst.area, inst.score,
                          data.get("truncated"), inst.box_iou, inst.fill)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        report.skip(GARBLED_ANNOTATION, at, f"bad instance ({exc!r})")
        return None
    return obj if values_ok(obj, at, report) else None


def _patch_record(item: layout.BuildItem, report: Report) -> PatchRecord | None:
    where = str(item.ins_path)
    try:
        record = PatchRecord.read(item.ins_path)
        record.width, record.height = int(record.width), int(record.height)
    except SourceError as exc:
        report.skip(GARBLED_ANNOTATION, where, str(exc))
        return None
    except (TypeError, ValueError):
        report.skip(GARBLED_ANNOTATION, where, "width/height are not integers")
        return None
    return record


def row_from_item(item: layout.BuildItem, table: ClassTable, subset: str, report: Report, *,
                  val_fraction: float, seed: int) -> Row | None:
    """The dataset row of one build item (object ids 0: :func:`rows_from_builds` numbers them), or
    None when the image is unusable. Every drop, of the image or of one object, is in ``report``."""
    where = str(item.ins_path)
    record = _patch_record(item, report)
    if record is None:
        return None
    w, h = record.width, record.height
    image = read_bytes(item.image_path, "image", report, where)
    if image is None or not image_ok(image, item.image_path, (w, h), report, where):
        return None
    gray = read_bytes(item.gray_path, "gray", report, where)
    if gray is None or not gray_ok(gray, item.gray_path, (w, h), report, where):
        return None
    objects = [obj for k, inst in enumerate(record.instances)
               if (obj := object_from_instance(inst, table, (w, h), f"{where}:instances[{k}]", report)) is not None]
    split = splits.assign_split(str(record.source_image), record.split, val_fraction=val_fraction, seed=seed)
    example = dataset_example(image={"bytes": image, "path": item.image_path.name},
                              semantic={"bytes": gray, "path": item.gray_path.name}, objects=objects, name=item.name,
                              source_image=str(record.source_image), width=w, height=h, subset=subset)
    return Row(split, example, where)


@dataclass
class Checked:
    """One build item after the checks, with the problems found (made on a worker thread)."""

    row: Row | None
    report: Report


def check_item(item: layout.BuildItem, table: ClassTable, subset: str, *, strict: bool, val_fraction: float,
               seed: int) -> Checked:
    report = Report(strict=strict)
    return Checked(row_from_item(item, table, subset, report, val_fraction=val_fraction, seed=seed), report)


def unpaired_gray(build_dir: Path) -> list[Path]:
    """Gray maps with no ``ins/<name>.json``: labelled images that would be lost silently."""
    gray = build_dir / layout.GRAY
    if not gray.is_dir():
        return []
    ins = {p.stem for p in (build_dir / layout.INS).glob("*.json")}
    return [p for p in sorted(gray.glob("*.png")) if p.stem not in ins]


def rows_from_builds(build_dirs, report: Report, *, val_fraction: float = 0.05, seed: int = 0,
                     progress: bool = True, dropped: Counter | None = None,
                     workers: int = CHECK_WORKERS) -> Iterator[Row]:
    """Rows of all builds in order (build dirs as given, items sorted by name).

    The items are read and checked on ``workers`` threads (decoding releases the GIL); problems,
    the ``dropped`` images/objects tally and object ids are taken in item order, so they are the
    same for any thread count. Object ids count from 1 over this order, so they are unique in the
    whole dataset and the same for every consumer (packaging, COCO export, which keeps one split's rows).
    """
    from tqdm.auto import tqdm

    _, builds = check_builds(build_dirs)
    dropped = Counter() if dropped is None else dropped
    ids = itertools.count(FIRST_OBJECT_ID)
    owner: dict[str, Path] = {}

    def unique(build_dir, items):
        for item in items:
            if item.name in owner:  # image_id must identify one row
                raise PackagingError(f"{item.ins_path}: image {item.name!r} is also in {owner[item.name]}")
            owner[item.name] = build_dir
            yield item

    for build_dir, table, subset in builds:
        for path in unpaired_gray(build_dir):
            report.skip(MISSING_ANNOTATION, str(path), f"no instance file {build_dir / layout.INS / (path.stem + '.json')}")
            dropped["images"] += 1
        # Items stream (not a list: ~1.25 KB each, 130 MB for all of SAMRS); the bar counts the files.
        items = layout.iter_build_items(build_dir)
        total = sum(1 for _ in (build_dir / layout.INS).glob("*.json")) if progress else None
        check = functools.partial(check_item, table=table, subset=subset, strict=report.strict,
                                  val_fraction=val_fraction, seed=seed)
        with contextlib.closing(prefetch_map(check, unique(build_dir, items), workers)) as checked:
            for c in tqdm(checked, total=total, desc=f"packaging {build_dir.name}", unit="img",
                          disable=not progress):
                report.extend(c.report)
                if c.row is None:
                    dropped["images"] += 1
                    continue
                dropped["objects"] += len(c.report.skips)
                objects = c.row.example["objects"]
                objects["id"] = [next(ids) for _ in objects["id"]]
                yield c.row


def check_builds(build_dirs) -> tuple[ClassTable, list[tuple[Path, ClassTable, str]]]:
    """All builds must be of one subset with one class table (one dataset = one label space)."""
    builds = []
    for d in build_dirs:
        d = Path(d)
        if not layout.is_build_dir(d):
            raise PackagingError(f"{d}: not a samrs build folder (needs build.json and ins/)")
        report = layout.read_report(d)
        table = build_class_table(report, d / layout.REPORT)
        builds.append((d, table, report["subset"]))
    if not builds:
        raise PackagingError("no build folders given")
    first_dir, first_table, first_subset = builds[0]
    for d, table, subset in builds[1:]:
        if subset != first_subset or table.names != first_table.names:
            raise PackagingError(
                f"{d}: subset {subset!r} cannot be packaged with {first_dir} (subset {first_subset!r}) into one dataset"
            )
    return first_table, builds
