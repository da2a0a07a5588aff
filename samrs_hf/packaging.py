"""Build folders -> Hub dataset folder: ``data/<split>-XXXXX-of-YYYYY.parquet`` + ``README.md``.

The folder loads with plain ``datasets.load_dataset(HUB_DIR)`` (no script): the shards carry the
features in their ``huggingface`` schema metadata (written by ``datasets``' own ParquetWriter) and
the README's YAML repeats them with the split sizes.

Streaming: every split has one open shard writer that flushes a row group every few rows, so
memory stays flat however many images there are. Output bytes are a function of the input only
(fixed row order, object ids from one counter, no timestamps anywhere), so re-packaging the same
builds gives byte-identical files.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from . import layout, splits
from .classes import ClassTable, class_table_from_names, get_class_table
from .imageio import CorruptImageError, image_size
from .prefetch import prefetch
from .records import (
    CORRUPT_IMAGE, GARBLED_ANNOTATION, MISSING_ANNOTATION, MISSING_IMAGE, SIZE_MISMATCH, UNKNOWN_CLASS,
    Report, SourceError,
)

logger = logging.getLogger(__name__)

DATA_DIR = "data"
FIGURES_DIR = "figures"
DEFAULT_SHARD_SIZE = "500MB"
ROWS_PER_ROW_GROUP = 64
"""Rows buffered before a row group is written: bounds memory (~64 images) per open split."""

_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


class PackagingError(SourceError):
    """Inputs that cannot become one dataset (mixed subsets, nothing to package...)."""


def parse_size(size) -> int:
    """``"500MB"`` -> 500_000_000 (decimal units like the Hub; ``MiB`` etc. are binary)."""
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(size))
    if not m or m.group(2).upper() not in _SIZE_UNITS:
        raise ValueError(f"bad shard size {size!r}; use e.g. 500MB, 2GB, 64MiB")
    value = int(float(m.group(1)) * _SIZE_UNITS[m.group(2).upper()])
    if value <= 0:
        raise ValueError(f"shard size must be positive, got {size!r}")
    return value


# --------------------------------------------------------------------------------------------- rows

def make_object(obj_id: int, class_id: int, bbox_xyxy, rbox, segmentation: dict, area, score, truncated) -> dict:
    """One entry of the ``objects`` feature (COCO ``[x, y, w, h]`` box)."""
    x0, y0, x1, y1 = (float(v) for v in bbox_xyxy)
    return {
        "id": int(obj_id),
        "category": int(class_id),
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "rbox": None if rbox is None else [float(v) for v in rbox],
        "segmentation": {"size": [int(s) for s in segmentation["size"]], "counts": _counts_str(segmentation["counts"])},
        "area": int(area),
        "score": None if score is None else float(score),
        "truncated": None if truncated is None else bool(truncated),
    }


def _counts_str(counts) -> str:
    if isinstance(counts, bytes):
        return counts.decode("ascii")
    if not isinstance(counts, str):
        raise ValueError("segmentation counts must be a compressed RLE string")
    return counts


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
        for o in row.example["objects"]:
            self.instances[o["category"]] += 1


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


def _check_size(path: Path, expected: tuple[int, int], what: str, report: Report, where: str) -> bool:
    if not path.is_file():
        report.skip(MISSING_IMAGE if what == "image" else MISSING_ANNOTATION, where, f"missing {what} file {path}")
        return False
    try:
        size = image_size(path)
    except (CorruptImageError, OSError, SourceError) as exc:
        report.skip(CORRUPT_IMAGE, where, f"corrupt {what} file {path}: {exc}")
        return False
    if tuple(size) != tuple(expected):
        report.skip(SIZE_MISMATCH, where, f"{what} {path} is {size[0]}x{size[1]}, instances say {expected[0]}x{expected[1]}")
        return False
    return True


def _verify_png(path: Path, report: Report, where: str) -> bool:
    """Gray maps are small: a full CRC check catches truncated/corrupt files cheaply."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            mode = im.mode
            im.verify()
    except Exception as exc:  # PIL raises many types for broken files
        report.skip(CORRUPT_IMAGE, where, f"corrupt gray file {path}: {exc}")
        return False
    if mode not in ("L", "P"):
        report.skip(CORRUPT_IMAGE, where, f"gray file {path} has mode {mode}, expected L (uint8 class ids)")
        return False
    return True


def instance_ok(table: ClassTable, class_id, category, segmentation: dict, size: tuple[int, int], at: str,
                report: Report) -> bool:
    """The per-instance rules shared by builds and releases: a known class, an RLE of the image's size."""
    if class_id is None or not 0 <= class_id < len(table):
        report.skip(UNKNOWN_CLASS, at, f"category {category!r} is not in the {table.subset} class table")
        return False
    w, h = size
    if [int(s) for s in segmentation["size"]] != [h, w]:
        report.skip(SIZE_MISMATCH, at, f"RLE size {list(segmentation['size'])} != image size [{h}, {w}]")
        return False
    return True


def row_from_item(item: layout.BuildItem, table: ClassTable, subset: str, next_id: Iterator[int],
                  report: Report, *, val_fraction: float, seed: int) -> Row | None:
    """The dataset row of one build item, or None (counted in ``report``) when it is unusable."""
    where = str(item.ins_path)
    try:
        record = item.load_instances()
    except SourceError as exc:
        report.skip(GARBLED_ANNOTATION, where, str(exc))
        return None
    try:
        w, h = int(record["width"]), int(record["height"])
    except (TypeError, ValueError):
        report.skip(GARBLED_ANNOTATION, where, "width/height are not integers")
        return None
    if not _check_size(item.image_path, (w, h), "image", report, where):
        return None
    if not _check_size(item.gray_path, (w, h), "gray", report, where):
        return None
    if not _verify_png(item.gray_path, report, where):
        return None

    objects = []
    pending = []
    for k, inst in enumerate(record["instances"]):
        at = f"{where}:instances[{k}]"
        try:
            seg = inst["segmentation"]
            class_id = table.id_of(str(inst["category"]))
            if not instance_ok(table, class_id, inst["category"], seg, (w, h), at, report):
                return None
            rbox = inst.get("rbox")
            if rbox is not None and len(rbox) != 8:
                raise ValueError(f"rbox has {len(rbox)} values, expected 8")
            if len(inst["bbox"]) != 4:
                raise ValueError(f"bbox has {len(inst['bbox'])} values, expected 4")
            # Converted here (id 0 for now) so that unusable values are this instance's skip.
            pending.append(make_object(0, class_id, inst["bbox"], rbox, seg, inst["area"], inst.get("score"),
                                       inst.get("truncated")))
        except (KeyError, TypeError, ValueError) as exc:
            report.skip(GARBLED_ANNOTATION, at, f"bad instance ({exc!r})")
            return None
    # Ids are drawn only once the whole image is accepted, so skips leave no holes.
    for obj in pending:
        obj["id"] = next(next_id)
        objects.append(obj)

    split = splits.assign_split(str(record["source_image"]), record.get("split"), val_fraction=val_fraction, seed=seed)
    example = {
        "image": {"bytes": item.image_path.read_bytes(), "path": item.image_path.name},
        "semantic": {"bytes": item.gray_path.read_bytes(), "path": item.gray_path.name},
        "objects": objects,
        "image_id": item.name,
        "source_image": str(record["source_image"]),
        "width": w,
        "height": h,
        "subset": subset,
    }
    return Row(split, example, where)


def unpaired_gray(build_dir: Path) -> list[Path]:
    """Gray maps with no ``ins/<name>.json``: labelled images that would be lost silently."""
    gray = build_dir / layout.GRAY
    if not gray.is_dir():
        return []
    ins = {p.stem for p in (build_dir / layout.INS).glob("*.json")}
    return [p for p in sorted(gray.glob("*.png")) if p.stem not in ins]


def rows_from_builds(build_dirs, report: Report, *, val_fraction: float = 0.05, seed: int = 0,
                     progress: bool = True) -> Iterator[Row]:
    """Rows of all builds in order (build dirs as given, items sorted by name).

    Object ids count from 1 over this order, so they are unique in the whole dataset and the same
    for every consumer (packaging, COCO export, which keeps one split's rows).
    """
    from tqdm.auto import tqdm

    _, builds = check_builds(build_dirs)
    ids = iter(range(1, 2**62))
    owner: dict[str, Path] = {}
    for build_dir, table, subset in builds:
        for path in unpaired_gray(build_dir):
            report.skip(MISSING_ANNOTATION, str(path), f"no instance file {build_dir / layout.INS / (path.stem + '.json')}")
        items = list(layout.iter_build_items(build_dir))
        for item in tqdm(items, desc=f"packaging {build_dir.name}", unit="img", disable=not progress):
            if item.name in owner:  # image_id must identify one row
                raise PackagingError(f"{item.ins_path}: image {item.name!r} is also in {owner[item.name]}")
            owner[item.name] = build_dir
            row = row_from_item(item, table, subset, ids, report, val_fraction=val_fraction, seed=seed)
            if row is not None:
                yield row


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


# -------------------------------------------------------------------------------------------- writer


class ShardedWriter:
    """Per-split parquet shards of at most ~``shard_size`` bytes, named once their count is known."""

    def __init__(self, out_dir: Path, features, shard_size: int):
        self.out_dir = Path(out_dir)
        self.features = features
        self.shard_size = shard_size
        self._open: dict[str, tuple] = {}  # split -> (writer, bytes so far)
        self.files: dict[str, list[Path]] = {}
        self.num_examples: Counter = Counter()
        self.num_bytes: Counter = Counter()

    def _new_shard(self, split: str):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{split}-{len(self.files.setdefault(split, [])):05d}.parquet.partial"
        self.files[split].append(path)
        writer = _parquet_writer_class()(features=self.features, path=str(path), writer_batch_size=ROWS_PER_ROW_GROUP)
        self._open[split] = (writer, 0)
        return self._open[split]

    def add(self, split: str, example: dict) -> None:
        writer, size = self._open.get(split) or self._new_shard(split)
        encoded = self.features.encode_example(example)
        writer.write(encoded)
        size += _approx_size(example)
        self.num_examples[split] += 1
        if size >= self.shard_size:
            self._close(split)
        else:
            self._open[split] = (writer, size)

    def _close(self, split: str) -> None:
        writer, _ = self._open.pop(split)
        _, num_bytes = writer.finalize()
        writer.close()
        self.num_bytes[split] += num_bytes

    def close(self) -> dict[str, list[Path]]:
        """Finish all shards; rename to ``<split>-XXXXX-of-YYYYY.parquet``."""
        for split in list(self._open):
            self._close(split)
        final = {}
        for split, paths in self.files.items():
            n = len(paths)
            final[split] = []
            for i, p in enumerate(paths):
                target = p.with_name(f"{split}-{i:05d}-of-{n:05d}.parquet")
                os.replace(p, target)
                final[split].append(target)
        return final

    def abort(self) -> None:
        for writer, _ in self._open.values():
            writer.close()
        self._open.clear()


def _parquet_writer_class():
    """``datasets``' ParquetWriter (features metadata, content-defined chunks, per-column options)
    without min/max statistics on the embedded image bytes: they cost ~4 ms per 800x800 image
    and no reader uses them."""
    import json

    import pyarrow.parquet as pq
    from datasets import config
    from datasets.arrow_writer import ParquetWriter, get_parquet_column_options

    class StatlessImageParquetWriter(ParquetWriter):
        def _build_writer(self, inferred_schema):
            self._schema, self._features = self._build_schema(inferred_schema)
            options = get_parquet_column_options(self._features, self._schema)
            self.pa_writer = pq.ParquetWriter(
                self.stream, self._schema,
                use_content_defined_chunking=self.use_content_defined_chunking,
                write_page_index=self.write_page_index,
                write_statistics=list(options["use_dictionary"]),  # the non-embedded leaves
                **options,
            )
            if self.use_content_defined_chunking is not False:
                self.pa_writer.add_key_value_metadata(
                    {"content_defined_chunking": json.dumps(self.use_content_defined_chunking or config.DEFAULT_CDC_OPTIONS)}
                )

    return StatlessImageParquetWriter


def _approx_size(example: dict) -> int:
    return (len(example["image"]["bytes"]) + len(example["semantic"]["bytes"])
            + sum(len(o["segmentation"]["counts"]) + 64 for o in example["objects"]))


# ------------------------------------------------------------------------------------------ package

@dataclass
class PackageResult:
    to: Path
    name: str
    table: ClassTable
    splits: dict[str, int]
    """rows per split"""
    num_bytes: dict[str, int]
    files: dict[str, list[str]]
    instances: dict[int, int]
    report: Report
    builds: list[dict]
    figures: list[str]
    val_fraction: float
    seed: int

    @property
    def num_rows(self) -> int:
        return sum(self.splits.values())

    def to_dict(self) -> dict:
        return {
            "to": str(self.to), "name": self.name, "subset": self.table.subset, "splits": dict(self.splits),
            "files": self.files, "skipped": len(self.report.skips), "problems": self.report.to_dict(),
            "figures": self.figures,
        }


def write_hub_dir(rows: Iterable[Row], to, *, name: str, table: ClassTable, builds: list[dict],
                  report: Report, shard_size=DEFAULT_SHARD_SIZE, val_fraction: float = 0.05, seed: int = 0,
                  stats: bool = True) -> PackageResult:
    """Write rows as parquet shards + figures + README into ``to`` (shared by package and convert-release).

    Everything is written under ``to/.samrs-partial/`` first and moved into place at the end, so an
    error never leaves a half-replaced dataset; files in ``to`` that are not ours are kept.
    """
    from .card import write_card, write_palette_swatches
    from .features import samrs_features

    to = Path(to)
    features = samrs_features(table)
    work = to / ".samrs-partial"
    if work.exists():
        shutil.rmtree(work)
    writer = ShardedWriter(work / DATA_DIR, features, parse_size(shard_size))
    counter = ClassCounter()
    try:
        for row in prefetch(rows):
            writer.add(row.split, row.example)
            counter.add(row)
        files = writer.close()
    except BaseException:
        writer.abort()
        shutil.rmtree(work, ignore_errors=True)
        raise
    if not files:
        shutil.rmtree(work, ignore_errors=True)
        raise PackagingError(f"nothing to package: no usable rows ({len(report.skips)} skipped)")

    for sub in (DATA_DIR, FIGURES_DIR):
        if (to / sub).exists():
            shutil.rmtree(to / sub)
        if (work / sub).exists():
            os.replace(work / sub, to / sub)
    shutil.rmtree(work, ignore_errors=True)

    figures = write_palette_swatches(table, to / FIGURES_DIR)
    result = PackageResult(
        to=to, name=name, table=table,
        splits={s: writer.num_examples[s] for s in splits.SPLITS if s in files},
        num_bytes={s: writer.num_bytes[s] for s in splits.SPLITS if s in files},
        files={s: [f"{DATA_DIR}/{p.name}" for p in files[s]] for s in splits.SPLITS if s in files},
        instances=dict(sorted(counter.instances.items())), report=report, builds=builds,
        figures=figures, val_fraction=val_fraction, seed=seed,
    )
    # The statistics read ``to`` through its README's configs: a README left by an earlier package
    # (other splits) would make them miss a split or fail, so the new card goes in first.
    write_card(result, features)
    if stats:
        result.figures = figures + _write_stats(to)
        write_card(result, features)
    return result


def _write_stats(to: Path) -> list[str]:
    """Statistics figures by ``samrs_hf.stats`` (another module) when it is available."""
    try:
        from .stats import write_stats
    except ImportError as exc:
        logger.warning("statistics figures skipped: samrs_hf.stats unavailable (%s)", exc)
        return []
    out = to / FIGURES_DIR / "stats"
    write_stats(to, out)
    return sorted(str(p.relative_to(to)) for p in out.rglob("*.png"))


def package(build_dirs, to, *, name: str | None = None, shard_size=DEFAULT_SHARD_SIZE, val_fraction: float = 0.05,
            seed: int = 0, strict: bool = False, progress: bool = True, stats: bool = True) -> PackageResult:
    """``samrs package``: build folders of one subset -> a Hub dataset folder."""
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"--val-fraction must lie in [0, 1], got {val_fraction}")
    parse_size(shard_size)
    table, builds = check_builds(build_dirs)
    infos = [dict(layout.read_report(d), path=str(d)) for d, _, _ in builds]
    report = Report(strict=strict)
    rows = rows_from_builds([d for d, _, _ in builds], report, val_fraction=val_fraction, seed=seed, progress=progress)
    return write_hub_dir(rows, to, name=name or table.subset, table=table, builds=infos, report=report,
                         shard_size=shard_size, val_fraction=val_fraction, seed=seed, stats=stats)


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket."""
    if n < 1000:
        return "n<1K"
    for lo, hi, label in ((1e3, 1e4, "1K<n<10K"), (1e4, 1e5, "10K<n<100K"), (1e5, 1e6, "100K<n<1M")):
        if n < hi:
            return label
    return "1M<n<10M" if n < 1e7 else "10M<n<100M"
