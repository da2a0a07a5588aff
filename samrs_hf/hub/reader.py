"""The one reader of "a build folder or a packaged dataset": rows in the packaged features' convention.

Statistics, overlays, the COCO export and :func:`samrs_hf.load` all open folders here, so they agree
on what a dataset folder is and see one shape of row whatever was given: ``image``, ``semantic`` and
``label`` (PIL), ``objects`` (per-field lists: ``{id, category (int), bbox xywh, rbox, segmentation RLE,
area, score, truncated, box_iou, fill}``; packages made before ``box_iou``/``fill`` lack those two), ``image_id`` (int64), ``file_name`` (the patch name), ``source_image``,
``width``, ``height``, ``subset``, plus ``split`` and ``image_file`` (the image's path relative to the
folder, as a COCO file names it).

A build folder is read through the typed record (:class:`samrs_hf.build.records.PatchRecord`) as
it was written: the recorded split, object ids counted from :data:`FIRST_OBJECT_ID`, a garbled
instance an error naming it. With ``as_packaged=(val_fraction, seed)`` it is read as ``samrs package``
would publish it instead (its checks, splits and ids), which the COCO export of a build needs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..build import layout
from ..build.records import InstanceRecord, PatchRecord
from ..sources.classes import CLASS_TABLES, ClassTable, class_table_from_names, get_class_table
from ..sources.records import Report, SourceError
from .checks import make_object
from .features import FIRST_OBJECT_ID, category_feature, image_id_of, objects_as_columns

BUILD, PACKAGE = "build", "hub"
SPLIT_ORDER = ("train", "validation", "val", "trainval", "test")


class NotADatasetFolder(SourceError):
    """The folder is neither a ``samrs build`` output nor a packaged (parquet) dataset."""


def is_package_dir(path) -> bool:
    """A packaged dataset: parquet shards under ``data/`` (the card's configs load them)."""
    path = Path(path)
    return path.is_dir() and (any(path.glob("data/*.parquet")) or any(path.glob("data/*/*.parquet")))


def class_table_of(features, subset: str | None = None) -> ClassTable:
    """The class table named by ``objects.category`` (a known subset when the names match one;
    otherwise named ``subset``, the rows' own subset, else ``custom``)."""
    names = tuple(category_feature(features).names)
    for table in CLASS_TABLES.values():
        if table.names == names:
            return table
    return class_table_from_names(subset or "custom", names)


def _no_split(path, split, have) -> SourceError:
    return SourceError(f"{path}: no split {split!r} (has: {', '.join(sorted(str(s) for s in have)) or 'none'})")


def _build_object(inst: InstanceRecord, obj_id: int, names: tuple[str, ...]) -> dict:
    label = inst.label if inst.label is not None else names.index(inst.category)
    if not 0 <= int(label) < len(names):
        raise ValueError(f"label {label} outside the {len(names)}-class table")
    return make_object(obj_id, int(label), inst.bbox, inst.rbox, inst.segmentation, inst.area, inst.score,
                       bool(inst.truncated), inst.box_iou, inst.fill)


@dataclass
class DatasetFolder:
    """A build output or a packaged dataset; :meth:`rows` reads it (see the module docstring)."""

    path: Path
    kind: str
    """:data:`BUILD` or :data:`PACKAGE`"""
    subset: str
    class_names: tuple[str, ...]
    splits: tuple[str, ...] = ()
    """A packaged folder's splits (a build's are known only once its records are read)."""
    as_packaged: tuple[float, int] | None = None
    report: Report = field(default_factory=Report)
    """What ``as_packaged`` reading dropped."""
    random_weights: bool = False
    """Its masks came from a random-weight SAM (``build.json``'s model, a package card's tag): figures say so."""
    _hub: object = field(default=None, repr=False)

    def rows(self, split: str | None = None, *, images: bool | str = True) -> Iterator[dict]:
        """Rows of ``split`` (default: all) in order; ``images=False`` leaves ``image`` None,
        ``images="bytes"`` gives the stored file as ``{"bytes", "path"}`` (nothing decoded or re-encoded)."""
        if split is not None and self.splits and split not in self.splits:
            raise _no_split(self.path, split, self.splits)
        if self.kind == PACKAGE:
            return self._package_rows(split, images)
        if self.as_packaged is not None:
            return self._packaged_build_rows(split, images)
        return self._build_rows(split, images)

    examples = rows  # the name samrs_hf.analysis.stats gave it

    def _build_rows(self, split, images) -> Iterator[dict]:
        from PIL import Image

        ids = itertools.count(FIRST_OBJECT_ID)
        seen = set()
        for item in layout.iter_build_items(self.path):
            record = PatchRecord.read(item.ins_path)
            seen.add(record.split)
            if split is not None and record.split != split:
                continue
            for path, needed in ((item.gray_path, True), (item.image_path, images)):
                if needed and not path.is_file():
                    raise SourceError(f"{path}: missing {'semantic map' if path == item.gray_path else 'image'} "
                                      f"for {item.ins_path.name}")
            objects = []
            for k, data in enumerate(record.instances):
                try:
                    objects.append(_build_object(InstanceRecord.from_json(data), next(ids), self.class_names))
                except (KeyError, TypeError, ValueError) as exc:
                    raise SourceError(f"{item.ins_path}:instances[{k}]: bad instance ({exc})") from None
            image = ({"bytes": item.image_path.read_bytes(), "path": item.image_path.name} if images == "bytes"
                     else Image.open(item.image_path) if images else None)
            semantic = Image.open(item.gray_path)
            yield {"image": image, "semantic": semantic, "label": semantic,
                   "objects": objects_as_columns(objects), "image_id": image_id_of(item.name), "file_name": item.name,
                   "source_image": record.source_image, "width": int(record.width), "height": int(record.height),
                   "subset": self.subset, "split": record.split, "image_file": f"{layout.IMAGES}/{item.image_path.name}"}
        if split is not None and split not in seen:
            raise _no_split(self.path, split, seen)

    def _packaged_build_rows(self, split, images) -> Iterator[dict]:
        import io

        from PIL import Image

        from .rows import rows_from_builds

        val_fraction, seed = self.as_packaged
        seen = set()
        for row in rows_from_builds([self.path], self.report, val_fraction=val_fraction, seed=seed, progress=False):
            seen.add(row.split)
            if split is not None and row.split != split:
                continue
            ex = dict(row.example, split=row.split, image_file=f"{layout.IMAGES}/{row.example['image']['path']}")
            if images != "bytes":
                ex["image"] = Image.open(io.BytesIO(ex["image"]["bytes"])) if images else None
            ex["semantic"] = ex["label"] = Image.open(io.BytesIO(ex["semantic"]["bytes"]))
            yield ex
        if split is not None and split not in seen:  # raised before a consumer writes its output
            raise _no_split(self.path, split, seen)

    def _package_rows(self, split, images) -> Iterator[dict]:
        from datasets import Image as ImageFeature

        decoder = ImageFeature()
        for name in ([split] if split is not None else self.splits):
            for example in self._hub[name].cast_column("image", ImageFeature(decode=False)):
                raw = example["image"]
                example["image_file"] = raw.get("path")
                example["image"] = raw if images == "bytes" else decoder.decode_example(raw) if images else None
                example["split"] = name
                yield example


def card_says_random(readme) -> bool:
    """Whether a package's README.md (its card) carries the random-weights tag."""
    from huggingface_hub.repocard import metadata_load

    from .card import RANDOM_WEIGHTS_TAG

    readme = Path(readme)
    tags = ((metadata_load(readme) or {}).get("tags") or []) if readme.is_file() else []
    return RANDOM_WEIGHTS_TAG in tags


def _ordered(splits) -> tuple[str, ...]:
    known = [s for s in SPLIT_ORDER if s in splits]
    return tuple(known + sorted(s for s in splits if s not in known))


def _build_class_names(report: dict, subset: str) -> tuple[str, ...]:
    names = report.get("classes")
    if isinstance(names, dict):  # {"names": [...]} or {id: name}
        names = names.get("names") or [names[k] for k in sorted(names, key=int)]
    return tuple(names or get_class_table(subset).names)


def open_folder(path, *, as_packaged: tuple[float, int] | None = None, strict: bool = False) -> DatasetFolder:
    """Open a ``samrs build`` output or a ``samrs package`` folder; anything else is an error."""
    path = Path(path)
    if not path.exists():
        raise NotADatasetFolder(f"{path}: no such folder")
    if layout.is_build_dir(path):
        report = layout.read_report(path)
        subset = str(report.get("subset", "custom"))
        return DatasetFolder(path, BUILD, subset, _build_class_names(report, subset), as_packaged=as_packaged,
                             report=Report(strict=strict),
                             random_weights=bool((report.get("model") or {}).get("random")))
    if is_package_dir(path):
        from datasets import Image, load_dataset

        # Streaming reads the parquet shards directly: no copy of a 100k-image set into the cache.
        dd = load_dataset(str(path), streaming=True)
        first = dd[next(iter(dd))]
        if first.features is None or "objects" not in first.features:
            raise NotADatasetFolder(f"{path}: a parquet folder, but not a SAMRS dataset (no 'objects' feature)")
        example = next(iter(first.cast_column("image", Image(decode=False))), None)
        subset = example["subset"] if example else path.name
        try:
            names = class_table_of(first.features, subset).names
        except ValueError as exc:  # packaged before objects became a dict of lists
            raise NotADatasetFolder(f"{path}: {exc}") from None
        return DatasetFolder(path, PACKAGE, subset, names, _ordered(dd.keys()), _hub=dd,
                             random_weights=card_says_random(path / "README.md"))
    raise NotADatasetFolder(
        f"{path}: neither a samrs build (build.json + ins/) nor a packaged dataset (data/*.parquet)"
    )
