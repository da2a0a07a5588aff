"""Build folders -> Hub dataset folder: ``data/<split>-XXXXX-of-YYYYY.parquet`` + ``README.md``.

The folder loads with plain ``datasets.load_dataset(HUB_DIR)`` (no script): the shards carry the
features in their ``huggingface`` schema metadata (written by ``datasets``' own ParquetWriter) and
the README's YAML repeats them with the split sizes.

Streaming: every split has one open shard writer that flushes a row group every few rows, so
memory stays flat however many images there are. Output bytes are a function of the input only
(fixed row order, object ids from one counter, no timestamps anywhere), so re-packaging the same
builds gives byte-identical files.

Nothing unusable is published: every image's bytes are checked (PNG CRCs, other formats decoded)
and every instance's RLE, numbers and label, on reader threads beside the parquet writer. A bad
image or gray map drops the row, a bad instance drops that object; each drop is a counted skip
(an error with ``strict``) listed in the card next to what the builds themselves skipped.

``to`` must be new, empty or an earlier package: :data:`MANIFEST` lists the files a package wrote,
and packaging again replaces exactly those, keeping every other file.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import re
import shutil
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

import numpy as np

from ..sources import imageio as _pillow_limit  # noqa: F401  (lifts Pillow's pixel limit for remote-sensing scenes)
from ..build import layout
from . import splits
from ..sources.classes import ClassTable, class_table_from_names, get_class_table
from ..common.prefetch import prefetch, prefetch_map
from ..sources.records import (
    CORRUPT_IMAGE,
    DEGENERATE_BOX,
    GARBLED_ANNOTATION,
    MISSING_ANNOTATION,
    MISSING_IMAGE,
    NON_FINITE,
    SIZE_MISMATCH,
    UNKNOWN_CLASS,
    Report,
    SourceError,
)
from ..sam.rle import check_rle

logger = logging.getLogger(__name__)

DATA_DIR = "data"
FIGURES_DIR = "figures"
DEFAULT_SHARD_SIZE = "500MB"
ROWS_PER_ROW_GROUP = 64
"""Rows buffered before a row group is written: bounds memory (~64 images) per open split."""
CHECK_WORKERS = max(0, min(4, (os.cpu_count() or 1) - 1))
"""Threads reading and checking build items; one core stays with the parquet writer (on 2 cores
two checkers ran slower than one: the checks are cheap, the threads' hand-offs are not)."""

# Problem kinds of packaging (records.py has the ones shared with the readers).
CORRUPT_MASK = "corrupt-mask"
"""RLE counts that are not a mask of the image's size (garbage characters, runs past h x w)."""
LABEL_MISMATCH = "label-mismatch"
"""An instance whose ``label`` is not the class id of its ``category``."""

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


def _read(path: Path, what: str, report: Report, where: str) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        report.skip(MISSING_IMAGE if what == "image" else MISSING_ANNOTATION, where, f"missing {what} file {path}")
    except OSError as exc:
        report.skip(CORRUPT_IMAGE, where, f"unreadable {what} file {path}: {exc}")
    return None


def _size_ok(size, expected: tuple[int, int], what: str, path: Path, report: Report, where: str) -> bool:
    if tuple(size) != tuple(expected):
        report.skip(SIZE_MISMATCH, where, f"{what} {path} is {size[0]}x{size[1]}, instances say {expected[0]}x{expected[1]}")
        return False
    return True


def _image_ok(data: bytes, path: Path, expected: tuple[int, int], report: Report, where: str) -> bool:
    """The stored pixels are complete and uncorrupted, and of the instances' size.

    PNG: every chunk's CRC up to IEND, so a truncated or bit-flipped file fails (~0.5 ms; inflating
    an 800x800 patch costs ~8 ms). Other formats (DIOR's JPEGs): a decode, JPEG at 1/8 scale, which
    still reads the entropy-coded data to its end.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                size = im.size
                if im.format == "PNG":
                    im.verify()
                else:
                    im.draft(im.mode, (max(1, size[0] // 8), max(1, size[1] // 8)))
                    im.load()
    except Exception as exc:  # PIL raises many types for broken files
        report.skip(CORRUPT_IMAGE, where, f"corrupt image file {path}: {exc}")
        return False
    return _size_ok(size, expected, "image", path, report, where)


def _gray_ok(data: bytes, path: Path, expected: tuple[int, int], report: Report, where: str) -> bool:
    """An uncorrupted PNG (chunk CRCs up to IEND) of the instances' size in a uint8 mode.

    Not decoded: that would cost ~1.5 ms per 800x800 map; class ids outside the table are found
    by ``samrs stats``, which packaging runs unless ``--no-stats``.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            mode, size = im.mode, im.size
            im.verify()
    except Exception as exc:  # PIL raises many types for broken files
        report.skip(CORRUPT_IMAGE, where, f"corrupt gray file {path}: {exc}")
        return False
    if not _size_ok(size, expected, "gray", path, report, where):
        return False
    if mode not in ("L", "P"):
        report.skip(CORRUPT_IMAGE, where, f"gray file {path} has mode {mode}, expected L (uint8 class ids)")
        return False
    return True


def instance_ok(table: ClassTable, class_id, category, segmentation: dict, size: tuple[int, int], at: str,
                report: Report) -> bool:
    """The per-instance rules shared by builds and releases: a known class, an RLE of the image's size
    whose runs cover exactly that size (pycocotools decodes longer runs past its buffer)."""
    if class_id is None or not 0 <= class_id < len(table):
        report.skip(UNKNOWN_CLASS, at, f"category {category!r} is not in the {table.subset} class table")
        return False
    w, h = size
    if [int(s) for s in segmentation["size"]] != [h, w]:
        report.skip(SIZE_MISMATCH, at, f"RLE size {list(segmentation['size'])} != image size [{h}, {w}]")
        return False
    try:
        check_rle(segmentation)
    except (ValueError, TypeError) as exc:
        report.skip(CORRUPT_MASK, at, f"segmentation counts are not a {h}x{w} mask: {exc}")
        return False
    return True


def values_ok(obj: dict, at: str, report: Report) -> bool:
    """Finite numbers and a box of non-negative extent: a NaN passes parquet but breaks every user."""
    numbers = [*obj["bbox"], *(obj["rbox"] or ()), *(() if obj["score"] is None else (obj["score"],))]
    if not np.isfinite(numbers).all():
        report.skip(NON_FINITE, at, f"non-finite value in bbox {obj['bbox']}, rbox {obj['rbox']} or score {obj['score']}")
        return False
    if obj["bbox"][2] < 0 or obj["bbox"][3] < 0:
        report.skip(DEGENERATE_BOX, at, f"box has negative extent: COCO [x, y, w, h] = {obj['bbox']}")
        return False
    return True


def object_from_instance(inst: dict, table: ClassTable, size: tuple[int, int], at: str, report: Report) -> dict | None:
    """The ``objects`` entry (id 0 until the row is accepted) of one ``ins/*.json`` instance, or None
    (counted in ``report``): a bad instance drops that object only."""
    try:
        seg = inst["segmentation"]
        class_id = table.id_of(str(inst["category"]))
        if not instance_ok(table, class_id, inst["category"], seg, size, at, report):
            return None
        label = inst.get("label")
        if label is not None and label != class_id:
            report.skip(LABEL_MISMATCH, at, f"label {label!r} is not the id of category {inst['category']!r} ({class_id})")
            return None
        rbox = inst.get("rbox")
        if rbox is not None and len(rbox) != 8:
            raise ValueError(f"rbox has {len(rbox)} values, expected 8")
        if len(inst["bbox"]) != 4:
            raise ValueError(f"bbox has {len(inst['bbox'])} values, expected 4")
        obj = make_object(0, class_id, inst["bbox"], rbox, seg, inst["area"], inst.get("score"), inst.get("truncated"))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        report.skip(GARBLED_ANNOTATION, at, f"bad instance ({exc!r})")
        return None
    return obj if values_ok(obj, at, report) else None


def row_from_item(item: layout.BuildItem, table: ClassTable, subset: str, report: Report, *,
                  val_fraction: float, seed: int) -> Row | None:
    """The dataset row of one build item (object ids 0: :func:`rows_from_builds` numbers them), or
    None when the image is unusable. Every drop, of the image or of one object, is in ``report``."""
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
    if not isinstance(record["instances"], list):
        report.skip(GARBLED_ANNOTATION, where, f"instances is a {type(record['instances']).__name__}, not a list")
        return None
    image = _read(item.image_path, "image", report, where)
    if image is None or not _image_ok(image, item.image_path, (w, h), report, where):
        return None
    gray = _read(item.gray_path, "gray", report, where)
    if gray is None or not _gray_ok(gray, item.gray_path, (w, h), report, where):
        return None
    objects = [obj for k, inst in enumerate(record["instances"])
               if (obj := object_from_instance(inst, table, (w, h), f"{where}:instances[{k}]", report)) is not None]
    split = splits.assign_split(str(record["source_image"]), record.get("split"), val_fraction=val_fraction, seed=seed)
    example = {
        "image": {"bytes": image, "path": item.image_path.name},
        "semantic": {"bytes": gray, "path": item.gray_path.name},
        "objects": objects,
        "image_id": item.name,
        "source_image": str(record["source_image"]),
        "width": w,
        "height": h,
        "subset": subset,
    }
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
    ids = iter(range(1, 2**62))
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
        items = list(layout.iter_build_items(build_dir))
        check = functools.partial(check_item, table=table, subset=subset, strict=report.strict,
                                  val_fraction=val_fraction, seed=seed)
        with contextlib.closing(prefetch_map(check, unique(build_dir, items), workers)) as checked:
            for c in tqdm(checked, total=len(items), desc=f"packaging {build_dir.name}", unit="img",
                          disable=not progress):
                report.extend(c.report)
                if c.row is None:
                    dropped["images"] += 1
                    continue
                dropped["objects"] += len(c.report.skips)
                for obj in c.row.example["objects"]:
                    obj["id"] = next(ids)
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

MANIFEST = ".samrs-package.json"
"""The files a package wrote, so that packaging again into the folder replaces those and no others."""
WORK_DIR = ".samrs-partial"
_NOT_CONTENT = (WORK_DIR, ".cache")  # our scratch folder; `samrs push`'s upload resume state
_DATA_FILE = re.compile(rf"{DATA_DIR}/(?:{'|'.join(splits.SPLITS)})-[^/]*")
"""Files the card's configs (``data/<split>-*``) load as rows."""


@dataclass(frozen=True)
class Skips:
    """What one stage (a build, or packaging) dropped."""

    images: int | None
    """None where images and objects are not told apart (a release's reader counts items)."""
    objects: int | None
    kinds: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.kinds.values()) if self.images is None else self.images + self.objects

    @property
    def what(self) -> str:
        """``5 images and 7 objects``"""
        if self.images is None:
            return f"{self.total} item(s)"
        return " and ".join(f"{n} {unit}{'' if n == 1 else 's'}"
                            for n, unit in ((self.images, "image"), (self.objects, "object")) if n) or "nothing"

    def describe(self) -> str:
        """``5 images and 7 objects (corrupt-image: 5, unknown-class: 7)``"""
        kinds = ", ".join(f"{k}: {n}" for k, n in self.kinds.items())
        return f"{self.what} ({kinds})" if kinds else self.what


def build_skips(info: dict) -> Skips | None:
    """What a build dropped, from its ``build.json`` (``skipped`` and ``problems``); None where it does not say."""
    skipped, problems = info.get("skipped"), info.get("problems")
    problems = problems.get("problems") if isinstance(problems, dict) else None
    try:
        images, objects = int(skipped.get("images") or 0), int(skipped.get("objects") or 0)
    except (AttributeError, TypeError, ValueError):  # an old or hand-made build.json
        return None
    kinds = Counter(p.get("kind", "?") for p in problems or () if isinstance(p, dict) and p.get("skipped", True))
    return Skips(images, objects, dict(sorted(kinds.items())))


def packaging_skips(report: Report, dropped: Counter | None) -> Skips:
    kinds = dict(sorted(Counter(p.kind for p in report.skips).items()))
    if dropped is None:
        return Skips(None, None, kinds)
    return Skips(dropped["images"], dropped["objects"], kinds)


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
    dropped: Counter | None = None
    """Images and objects packaging dropped (None: convert-release, whose reader counts items)."""

    @property
    def num_rows(self) -> int:
        return sum(self.splits.values())

    @property
    def skips(self) -> Skips:
        return packaging_skips(self.report, self.dropped)

    def build_skips(self) -> list[tuple[str, Skips | None]]:
        """(build folder name, what that build dropped) per build."""
        return [(Path(b.get("path", "?")).name, build_skips(b)) for b in self.builds]

    def to_dict(self) -> dict:
        return {
            "to": str(self.to), "name": self.name, "subset": self.table.subset, "splits": dict(self.splits),
            "files": self.files, "skipped": len(self.report.skips), "problems": self.report.to_dict(),
            "dropped": None if self.dropped is None else {"images": self.dropped["images"],
                                                          "objects": self.dropped["objects"]},
            "figures": self.figures,
        }


def nothing_to_package(builds: list[dict], report: Report, dropped: Counter | None) -> str:
    """Why no row came out, with what the builds and packaging dropped."""
    parts = []
    for name, skips in ((Path(b.get("path", "?")).name, build_skips(b)) for b in builds):
        if skips is not None and skips.total:
            parts.append(f"the build {name} skipped {skips.describe()}")
    skips = packaging_skips(report, dropped)
    if skips.total:
        parts.append(f"packaging skipped {skips.describe()}")
    return "nothing to package: " + ("; ".join(parts) or "the build(s) hold no labelled images and skipped nothing")


def _present_files(to: Path) -> set[str]:
    if not to.is_dir():
        return set()
    return {p.relative_to(to).as_posix() for p in to.rglob("*")
            if not p.is_dir() and p.relative_to(to).parts[0] not in _NOT_CONTENT}


def _read_manifest(path: Path) -> set[str]:
    """Our files of the last package; every entry must stay inside the folder (it is deleted)."""
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise TypeError("'files' is not a list of paths")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise PackagingError(f"{path}: corrupt package manifest ({exc}); remove the folder's old package by hand") from None
    for f in files:
        parts = PurePosixPath(f).parts
        if not parts or PurePosixPath(f).is_absolute() or ".." in parts or f.startswith(WORK_DIR):
            raise PackagingError(f"{path}: manifest entry {f!r} is not a file inside the package")
    return set(files)


def _listing(present: set[str]) -> str:
    top = sorted({f.split("/")[0] + ("/" if "/" in f else "") for f in present})
    return ", ".join(top[:8]) + (f" and {len(top) - 8} more" if len(top) > 8 else "")


def previous_package(to: Path) -> tuple[set[str], set[str]]:
    """(the files the last package into ``to`` wrote, the other files there).

    Refuses a non-empty folder that no package made, and other files that the new package's card
    would load as rows or that are the card itself: kept, they would change the dataset.
    """
    if to.exists() and not to.is_dir():
        raise PackagingError(f"{to}: exists and is not a folder")
    present = _present_files(to)
    if (to / MANIFEST).is_file():
        ours = _read_manifest(to / MANIFEST)
    elif present:
        old = " (an earlier package, made before samrs wrote a manifest? remove it first)" \
            if "README.md" in present and any(_DATA_FILE.fullmatch(f) for f in present) else ""
        raise PackagingError(f"{to}: not empty and not made by samrs package (no {MANIFEST}); it holds "
                             f"{_listing(present)}{old}. Package into a new or empty folder")
    else:
        ours = set()
    foreign = present - ours - {MANIFEST}
    for f in sorted(foreign):
        if f == "README.md" or _DATA_FILE.fullmatch(f):
            raise PackagingError(f"{to / f}: not written by samrs package, but the new package would "
                                 f"{'replace it' if f == 'README.md' else 'load it as rows'}; move it away")
    return ours, foreign


def _staged(work: Path, to: Path, foreign: set[str]) -> list[tuple[Path, str]]:
    """The files under ``work`` with their place in ``to``; refuses to replace a file not ours."""
    files = [(p, p.relative_to(work).as_posix()) for p in sorted(work.rglob("*")) if p.is_file()]
    for _, rel in files:
        if rel in foreign:
            raise PackagingError(f"{to / rel}: not written by samrs package, and the new package has a file "
                                 f"of that name; move it away")
    return files


def _move(files: list[tuple[Path, str]], to: Path) -> list[str]:
    for path, rel in files:
        (to / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, to / rel)
    return [rel for _, rel in files]


def _remove(to: Path, ours: set[str]) -> None:
    """Delete the last package's files, and the folders that leaves empty."""
    folders = set()
    for rel in ours:
        (to / rel).unlink(missing_ok=True)
        folders.update(to / p for p in PurePosixPath(rel).parents if str(p) != ".")
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _write_manifest(to: Path, files) -> None:
    layout.atomic_write(to / MANIFEST, layout.json_bytes({"written_by": "samrs package", "files": sorted(set(files))}))


def write_hub_dir(rows: Iterable[Row], to, *, name: str, table: ClassTable, builds: list[dict],
                  report: Report, shard_size=DEFAULT_SHARD_SIZE, val_fraction: float = 0.05, seed: int = 0,
                  stats: bool = True, dropped: Counter | None = None) -> PackageResult:
    """Write rows as parquet shards + figures + README into ``to`` (shared by package and convert-release).

    ``to`` is new, empty or an earlier package (:data:`MANIFEST`): then only the files that package
    wrote are replaced and all others are kept (see :func:`previous_package` for the refusals).
    The shards are written under ``to/.samrs-partial/`` first, so an error while reading the inputs
    leaves ``to`` as it was.
    """
    from .card import write_card, write_palette_swatches
    from .features import samrs_features

    to = Path(to)
    ours, foreign = previous_package(to)
    existed = to.exists()
    features = samrs_features(table)
    work = to / WORK_DIR
    if work.exists():
        shutil.rmtree(work)
    writer = ShardedWriter(work / DATA_DIR, features, parse_size(shard_size))
    counter = ClassCounter()
    try:
        try:
            for row in prefetch(rows):
                writer.add(row.split, row.example)
                counter.add(row)
            files = writer.close()
        except BaseException:
            writer.abort()
            raise
        if not files:
            raise PackagingError(nothing_to_package(builds, report, dropped))
        figures = write_palette_swatches(table, work / FIGURES_DIR)
        staged = _staged(work, to, foreign)
        # Until the swap is done the manifest covers old and new files: a crash leaves none unowned.
        _write_manifest(to, [*ours, *(rel for _, rel in staged), "README.md"])
        _remove(to, ours)
        written = _move(staged, to) + ["README.md"]
        result = PackageResult(
            to=to, name=name, table=table,
            splits={s: writer.num_examples[s] for s in splits.SPLITS if s in files},
            num_bytes={s: writer.num_bytes[s] for s in splits.SPLITS if s in files},
            files={s: [f"{DATA_DIR}/{p.name}" for p in files[s]] for s in splits.SPLITS if s in files},
            instances=dict(sorted(counter.instances.items())), report=report, builds=builds,
            figures=figures, val_fraction=val_fraction, seed=seed, dropped=dropped,
        )
        # The statistics read ``to`` through its README's configs: a README left by an earlier package
        # (other splits) would make them miss a split or fail, so the new card goes in first.
        write_card(result, features)
        _write_manifest(to, written)
        if stats:
            result.figures = figures + _write_stats(to, work)
            staged = _staged(work, to, foreign)
            _write_manifest(to, written + [rel for _, rel in staged])
            written += _move(staged, to)
            write_card(result, features)
            _write_manifest(to, written)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not existed:
            with contextlib.suppress(OSError):
                to.rmdir()  # only when empty: a failed first package leaves no folder behind


def _write_stats(to: Path, work: Path) -> list[str]:
    """Statistics figures of ``to`` by ``samrs_hf.analysis.stats`` (another module) when it is available,
    written under ``work`` (names relative to it)."""
    try:
        from ..analysis.stats import write_stats
    except ImportError as exc:
        logger.warning("statistics figures skipped: samrs_hf.analysis.stats unavailable (%s)", exc)
        return []
    out = work / FIGURES_DIR / "stats"
    write_stats(to, out)
    return sorted(p.relative_to(work).as_posix() for p in out.rglob("*.png"))


def package(build_dirs, to, *, name: str | None = None, shard_size=DEFAULT_SHARD_SIZE, val_fraction: float = 0.05,
            seed: int = 0, strict: bool = False, progress: bool = True, stats: bool = True) -> PackageResult:
    """``samrs package``: build folders of one subset -> a Hub dataset folder."""
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"--val-fraction must lie in [0, 1], got {val_fraction}")
    parse_size(shard_size)
    table, builds = check_builds(build_dirs)
    infos = [dict(layout.read_report(d), path=str(d)) for d, _, _ in builds]
    report = Report(strict=strict)
    dropped = Counter(images=0, objects=0)
    rows = rows_from_builds([d for d, _, _ in builds], report, val_fraction=val_fraction, seed=seed,
                            progress=progress, dropped=dropped)
    return write_hub_dir(rows, to, name=name or table.subset, table=table, builds=infos, report=report,
                         shard_size=shard_size, val_fraction=val_fraction, seed=seed, stats=stats, dropped=dropped)


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket."""
    if n < 1000:
        return "n<1K"
    for lo, hi, label in ((1e3, 1e4, "1K<n<10K"), (1e4, 1e5, "10K<n<100K"), (1e5, 1e6, "100K<n<1M")):
        if n < hi:
            return label
    return "1M<n<10M" if n < 1e7 else "10M<n<100M"
