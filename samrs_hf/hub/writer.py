"""Parquet shards and the output folder: per-split shards of a bounded size, written under a scratch
folder and moved into ``--to``, whose :data:`MANIFEST` lists the files a package wrote so that packaging
again replaces exactly those and keeps every other file."""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..build import layout
from ..common.files import atomic_write
from . import splits
from .checks import PackagingError

DATA_DIR = "data"
FIGURES_DIR = "figures"
DEFAULT_SHARD_SIZE = "500MB"
"""``datasets``' own ``config.MAX_SHARD_SIZE``: a shard is closed before a row would take it past this."""
DEFAULT_ROW_GROUP_SIZE = "100MB"
"""``datasets``' own ``config.MAX_ROW_GROUP_SIZE``: a row group is written before a row would take it past
this, so groups are sized in bytes (64 rows of 1024² SOTA patches made ~111 MB groups) and one group is
what a reader holds in memory per open split."""
FOOTER_BYTES = 64 * 1024
"""Counted in each shard before its first row: the parquet footer (features JSON, schema, page index;
~10 KB + ~1 KB per row group measured), so the file, not only its rows, stays within the shard size."""
MAX_ROWS_PER_ROW_GROUP = 1 << 20
"""pyarrow's own cap on rows per group; the byte limit decides long before (an upper bound, never reached
by image rows)."""


def parse_size(size, what: str = "shard size") -> int:
    """``"500MB"`` -> 500_000_000: the unit by ``datasets``' own parser (decimal units like the Hub,
    ``MiB`` etc. binary); the number may have decimals ("1.5GB"), which that parser does not take."""
    from datasets.utils.py_utils import convert_file_size_to_int

    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(size))
    try:
        unit = convert_file_size_to_int(f"1{m.group(2).upper()}") if m and m.group(2).upper() not in ("", "B") else 1
    except ValueError:
        m = None
    if not m:
        raise ValueError(f"bad {what} {size!r}; use e.g. 500MB, 2GB, 64MiB")
    value = int(float(m.group(1)) * unit)
    if value <= 0:
        raise ValueError(f"{what} must be positive, got {size!r}")
    return value


def check_sizes(shard_size, row_group_size) -> tuple[int, int]:
    """The two size options in bytes, checked before any folder is read (package and convert-release)."""
    return parse_size(shard_size, "--shard-size"), parse_size(row_group_size, "--row-group-size")


# -------------------------------------------------------------------------------------------- writer


ARROW_CHUNK_BYTES = 4_000_000
"""Buffered rows are turned into Arrow every this many stored bytes: as Python objects a row of a small
image with a few objects takes ~4x its stored bytes (a 100 MB group of 64x64 rows held ~450 MB), in
Arrow about its stored bytes. The row groups written are the same either way."""


@dataclass
class _Shard:
    """One split's open shard: its writer, its bytes so far and those of the row group being buffered
    (``pending`` encoded rows not yet in Arrow, ``chunks`` the group's Arrow tables)."""

    writer: object
    size: int = 0
    group: int = 0
    rows: int = 0
    pending: list = field(default_factory=list)
    pending_size: int = 0
    chunks: list = field(default_factory=list)


class ShardedWriter:
    """Per-split parquet shards of at most ``shard_size`` bytes, in row groups of at most
    ``row_group_size`` bytes (a single larger row gets a group, or a shard, of its own); shards are
    named once their count is known. Sizes are the rows' stored bytes (:func:`_approx_size`)."""

    def __init__(self, out_dir: Path, features, shard_size: int, row_group_size: int | None = None):
        self.out_dir = Path(out_dir)
        self.features = features
        self.shard_size = shard_size
        self.row_group_size = min(shard_size, parse_size(row_group_size or DEFAULT_ROW_GROUP_SIZE))
        self._open: dict[str, _Shard] = {}
        self.files: dict[str, list[Path]] = {}
        self.num_examples: Counter = Counter()
        self.num_bytes: Counter = Counter()

    def _new_shard(self, split: str) -> _Shard:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{split}-{len(self.files.setdefault(split, [])):05d}.parquet.partial"
        self.files[split].append(path)
        # ``add`` buffers the rows and writes each group when its bytes say so.
        self._open[split] = _Shard(_ParquetFile(path, self.features), size=FOOTER_BYTES)
        return self._open[split]

    def add(self, split: str, example: dict) -> None:
        size = _approx_size(example)
        shard = self._open.get(split)
        if shard is not None and shard.rows and shard.size + size > self.shard_size:
            self._close(split)
            shard = None
        shard = shard or self._new_shard(split)
        if shard.group and shard.group + size > self.row_group_size:
            self._write_group(shard)
        shard.pending.append(self.features.encode_example(example))
        shard.pending_size += size
        if shard.pending_size >= ARROW_CHUNK_BYTES:
            self._to_arrow(shard)
        shard.size += size
        shard.group += size
        shard.rows += 1
        self.num_examples[split] += 1

    def _to_arrow(self, shard: _Shard) -> None:
        import pyarrow as pa

        if shard.pending:
            shard.chunks.append(pa.Table.from_pylist(shard.pending, schema=self.features.arrow_schema))
            shard.pending, shard.pending_size = [], 0

    def _write_group(self, shard: _Shard) -> None:
        """The buffered rows as one row group."""
        import pyarrow as pa

        self._to_arrow(shard)
        if shard.chunks:
            shard.writer.write_table(pa.concat_tables(shard.chunks), MAX_ROWS_PER_ROW_GROUP)
        shard.chunks, shard.group = [], 0

    def _close(self, split: str) -> None:
        shard = self._open.pop(split)
        self._write_group(shard)
        shard.writer.close()
        self.num_bytes[split] += shard.writer.num_bytes

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
        for shard in self._open.values():
            shard.writer.close()
        self._open.clear()


class _ParquetFile:
    """One shard file, written with pyarrow as ``datasets``' ParquetWriter writes it (the features in the
    schema's metadata, its per-column options, content-defined chunks, a page index) but without min/max
    statistics on the embedded image bytes: they cost ~4 ms per 800x800 image and no reader uses them.
    Rows arrive as Arrow tables already in the features' schema."""

    def __init__(self, path: Path, features):
        import pyarrow.parquet as pq
        from datasets import config
        from datasets.arrow_writer import get_parquet_column_options

        schema = features.arrow_schema
        options = get_parquet_column_options(features, schema)
        self.num_bytes = 0
        self.writer = pq.ParquetWriter(
            str(path), schema, use_content_defined_chunking=config.DEFAULT_CDC_OPTIONS, write_page_index=True,
            write_statistics=list(options["use_dictionary"]),  # the non-embedded leaves
            **options,
        )
        self.writer.add_key_value_metadata({"content_defined_chunking": json.dumps(config.DEFAULT_CDC_OPTIONS)})

    def write_table(self, table, row_group_size: int) -> None:
        table = table.combine_chunks()
        self.num_bytes += table.nbytes
        self.writer.write_table(table, row_group_size)

    def close(self) -> None:
        self.writer.close()


ROW_OVERHEAD, OBJECT_OVERHEAD = 1024, 160
"""Bytes a row (names, paths, sizes, page and level data) and an object (id, boxes, area, score, RLE
size, offsets) take besides the image bytes and RLE strings: generous, so a group stays under its limit."""


def _approx_size(example: dict) -> int:
    """The stored bytes of one row: its image files (stored as they are) plus the per-row and
    per-object overheads."""
    objects = example["objects"]
    images = sum(len(example[k]["bytes"]) for k in ("image", "semantic", "label") if example.get(k) is not None)
    return (images + ROW_OVERHEAD + sum(len(seg["counts"]) + OBJECT_OVERHEAD for seg in objects["segmentation"]))


MANIFEST = ".samrs-package.json"
"""The files a package wrote, so that packaging again into the folder replaces those and no others."""
WORK_DIR = ".samrs-partial"
_NOT_CONTENT = (WORK_DIR, ".cache")  # our scratch folder; `samrs push`'s upload resume state
_DATA_FILE = re.compile(rf"{DATA_DIR}/(?:{'|'.join(splits.SPLITS)})-[^/]*")
"""Files the card's configs (``data/<split>-*``) load as rows."""



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


def staged_files(work: Path, to: Path, foreign: set[str]) -> list[tuple[Path, str]]:
    """The files under ``work`` with their place in ``to``; refuses to replace a file not ours."""
    files = [(p, p.relative_to(work).as_posix()) for p in sorted(work.rglob("*")) if p.is_file()]
    for _, rel in files:
        if rel in foreign:
            raise PackagingError(f"{to / rel}: not written by samrs package, and the new package has a file "
                                 f"of that name; move it away")
    return files


def move_files(files: list[tuple[Path, str]], to: Path) -> list[str]:
    for path, rel in files:
        (to / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, to / rel)
    return [rel for _, rel in files]


def remove_files(to: Path, ours: set[str]) -> None:
    """Delete the last package's files, and the folders that leaves empty."""
    folders = set()
    for rel in ours:
        (to / rel).unlink(missing_ok=True)
        folders.update(to / p for p in PurePosixPath(rel).parents if str(p) != ".")
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()


def write_manifest(to: Path, files) -> None:
    atomic_write(to / MANIFEST, layout.json_bytes({"written_by": "samrs package", "files": sorted(set(files))}))
