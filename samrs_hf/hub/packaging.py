"""Build folders -> Hub dataset folder: ``data/<split>-XXXXX-of-YYYYY.parquet`` + ``README.md``.

The folder loads with plain ``datasets.load_dataset(HUB_DIR)`` (no script): the shards carry the
features in their ``huggingface`` schema metadata (written by ``datasets``' own ParquetWriter) and
the README's YAML repeats them with the split sizes.

Streaming: every split has one open shard writer that writes a row group every ~100 MB of rows
(``datasets``' own limit), so memory stays flat however many images there are. Output bytes are a function of the input only
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
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from ..build import layout
from ..common.files import atomic_write
from ..common.prefetch import prefetch
from ..sources.classes import ClassTable
from ..sources.records import Report
from . import splits
from .card import size_category, write_card, write_palette_swatches  # noqa: F401
from .checks import (  # noqa: F401  (re-exported: the names packaging had before it was split)
    CORRUPT_MASK,
    LABEL_MISMATCH,
    PackagingError,
    instance_ok,
    make_object,
    values_ok,
)
from .features import samrs_features
from .quality import QualityDrops, QualityFilter, QualityTally, filter_rows
from .rows import (  # noqa: F401
    CHECK_WORKERS,
    ClassCounter,
    Row,
    UniqueImageIds,
    build_class_table,
    check_builds,
    object_from_instance,
    row_from_item,
    rows_from_builds,
    unpaired_gray,
)
from .writer import (  # noqa: F401
    DATA_DIR,
    DEFAULT_ROW_GROUP_SIZE,
    DEFAULT_SHARD_SIZE,
    FIGURES_DIR,
    MANIFEST,
    WORK_DIR,
    ShardedWriter,
    move_files,
    check_sizes,
    parse_size,
    previous_package,
    remove_files,
    staged_files,
    write_manifest,
)

StatsWriter = Callable[[Path, Path], object]
"""``(dataset_folder, out_dir)``: writes statistics figures (PNG) of a finished package into ``out_dir``."""


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
    split_rule: str | None = None
    """How the splits were made when not by the hash rule (a release's own split lists), for the card."""
    quality: list[dict] | None = None
    """Per class: quantiles of the published objects' ``box_iou`` and ``fill`` (:meth:`QualityTally.summary`)."""
    quality_filter: QualityFilter | None = None
    quality_drops: QualityDrops | None = None
    """Objects dropped below the ``quality_filter`` thresholds, per class (not skips: the user asked for it)."""

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
            "quality_dropped": None if self.quality_drops is None else self.quality_drops.to_dict(self.table.names),
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



ID2LABEL = "id2label.json"
"""``{"0": name, ...}``: what transformers' semantic-segmentation example downloads from the dataset repo."""


def write_id2label(table: ClassTable, folder: Path) -> str:
    atomic_write(folder / ID2LABEL, layout.json_bytes({str(i): n for i, n in enumerate(table.names)}))
    return ID2LABEL


def write_hub_dir(rows: Iterable[Row], to, *, name: str, table: ClassTable, builds: list[dict],
                  report: Report, shard_size=DEFAULT_SHARD_SIZE, val_fraction: float = 0.05, seed: int = 0,
                  stats: StatsWriter | None = None, dropped: Counter | None = None,
                  row_group_size=DEFAULT_ROW_GROUP_SIZE, split_rule: str | None = None,
                  min_score: float | None = None, min_box_iou: float | None = None) -> PackageResult:
    """Write rows as parquet shards + ``id2label.json`` + figures + README into ``to`` (shared by package
    and convert-release); shards of at most ``shard_size`` bytes in row groups of at most ``row_group_size``.
    Objects below ``min_score`` / ``min_box_iou`` are dropped (:mod:`.quality`), counted per class.

    ``to`` is new, empty or an earlier package (:data:`MANIFEST`): then only the files that package
    wrote are replaced and all others are kept (see :func:`previous_package` for the refusals).
    The shards are written under ``to/.samrs-partial/`` first, so an error while reading the inputs
    leaves ``to`` as it was. ``stats`` (e.g. :func:`samrs_hf.analysis.stats.write_stats`, which the
    ``samrs package`` command passes) writes statistics figures of the finished folder for the card:
    analysis reads packages, so packaging takes it as an argument instead of importing it.
    """
    to = Path(to)
    ours, foreign = previous_package(to)
    existed = to.exists()
    features = samrs_features(table)
    work = to / WORK_DIR
    if work.exists():
        shutil.rmtree(work)
    writer = ShardedWriter(work / DATA_DIR, features, *check_sizes(shard_size, row_group_size))
    counter, image_ids = ClassCounter(), UniqueImageIds()
    quality_filter, drops, tally = QualityFilter(min_score, min_box_iou), QualityDrops(), QualityTally()
    try:
        try:
            for row in prefetch(filter_rows(rows, quality_filter, drops)):
                image_ids.add(row)
                writer.add(row.split, row.example)
                counter.add(row)
                tally.add(row.example["objects"])
            files = writer.close()
        except BaseException:
            writer.abort()
            raise
        if not files:
            raise PackagingError(nothing_to_package(builds, report, dropped))
        write_id2label(table, work)
        figures = write_palette_swatches(table, work / FIGURES_DIR)
        staged = staged_files(work, to, foreign)
        # Until the swap is done the manifest covers old and new files: a crash leaves none unowned.
        write_manifest(to, [*ours, *(rel for _, rel in staged), "README.md"])
        remove_files(to, ours)
        written = move_files(staged, to) + ["README.md"]
        result = PackageResult(
            to=to, name=name, table=table,
            splits={s: writer.num_examples[s] for s in splits.SPLITS if s in files},
            num_bytes={s: writer.num_bytes[s] for s in splits.SPLITS if s in files},
            files={s: [f"{DATA_DIR}/{p.name}" for p in files[s]] for s in splits.SPLITS if s in files},
            instances=dict(sorted(counter.instances.items())), report=report, builds=builds,
            figures=figures, val_fraction=val_fraction, seed=seed, dropped=dropped, split_rule=split_rule,
            quality=tally.summary(table.names), quality_filter=quality_filter, quality_drops=drops,
        )
        # The statistics read ``to`` through its README's configs: a README left by an earlier package
        # (other splits) would make them miss a split or fail, so the new card goes in first.
        write_card(result, features)
        write_manifest(to, written)
        if stats:
            result.figures = figures + _stats_figures(stats, to, work)
            staged = staged_files(work, to, foreign)
            write_manifest(to, written + [rel for _, rel in staged])
            written += move_files(staged, to)
            write_card(result, features)
            write_manifest(to, written)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not existed:
            with contextlib.suppress(OSError):
                to.rmdir()  # only when empty: a failed first package leaves no folder behind


def _stats_figures(stats: StatsWriter, to: Path, work: Path) -> list[str]:
    """``stats``' figures of ``to``, written under ``work`` (names relative to it)."""
    out = work / FIGURES_DIR / "stats"
    stats(to, out)
    return sorted(p.relative_to(work).as_posix() for p in out.rglob("*.png"))


def package(build_dirs, to, *, name: str | None = None, shard_size=DEFAULT_SHARD_SIZE, val_fraction: float = 0.05,
            seed: int = 0, strict: bool = False, progress: bool = True,
            stats: StatsWriter | None = None, row_group_size=DEFAULT_ROW_GROUP_SIZE,
            min_score: float | None = None, min_box_iou: float | None = None) -> PackageResult:
    """``samrs package``: build folders of one subset -> a Hub dataset folder (objects with a SAM score
    below ``min_score`` or a ``box_iou`` below ``min_box_iou`` left out, see :mod:`.quality`)."""
    QualityFilter(min_score, min_box_iou)  # bad thresholds fail before any folder is read
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"--val-fraction must lie in [0, 1], got {val_fraction}")
    check_sizes(shard_size, row_group_size)
    table, builds = check_builds(build_dirs)
    infos = [dict(layout.read_report(d), path=str(d)) for d, _, _ in builds]
    report = Report(strict=strict)
    dropped = Counter(images=0, objects=0)
    rows = rows_from_builds([d for d, _, _ in builds], report, val_fraction=val_fraction, seed=seed,
                            progress=progress, dropped=dropped)
    return write_hub_dir(rows, to, name=name or table.subset, table=table, builds=infos, report=report,
                         shard_size=shard_size, val_fraction=val_fraction, seed=seed, stats=stats, dropped=dropped,
                         row_group_size=row_group_size, min_score=min_score, min_box_iou=min_box_iou)
