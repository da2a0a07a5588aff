"""COCO instances JSON ("bring your own data") -> records with a class table made from its categories.

``root`` is the JSON file itself, or a folder holding ``*.json`` (or ``annotations/*.json``); each
JSON is a split named after its file (``instances_train2017.json`` -> ``train2017``). With several
JSONs, image ids are prefixed ``<split>_`` so that they stay unique.

Image files are looked up, for an image entry's ``file_name``, in ``images_dir`` when given, else
next to the JSON, in ``images/`` next to it, in ``../<split>/`` (the COCO layout) and ``../images/``.
Files in those folders that the JSON does not list are not read (COCO folders often hold other sets).

Classes: the categories in id order (``label`` = position, ``extra["category_id"]`` = COCO id), in a
table named ``coco`` unless ``subset`` names it.
A ``file_name`` that is absolute or holds ``..`` is read only when it resolves inside ``images_dir``;
otherwise the image is an ``outside-source`` skip: an annotation file must not make the reader open
(and a build copy) files from elsewhere on the machine. A JSON that cannot be read is an
``unreadable-file`` skip (an error when no JSON of the source is readable).

``bbox`` xywh -> H-Box xyxy; ``segmentation`` (polygons or RLE) is not a prompt but is kept in
``extra["segmentation"]`` for mask-quality studies; ``iscrowd`` regions are kept and marked difficult.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..classes import class_table_from_names
from ..records import (
    GARBLED_ANNOTATION,
    MISSING_IMAGE,
    NO_OBJECTS,
    OUTSIDE_SOURCE,
    UNKNOWN_CLASS,
    UNREADABLE_FILE,
    Report,
    SourceError,
    SourceImage,
    SourceObject,
    relpath,
)
from .base import Source, Unit, check_hbox, is_file, parse_number, select_splits


def _split_name(path: Path) -> str:
    stem = path.stem
    return stem[len("instances_"):] if stem.startswith("instances_") else stem


def find_jsons(root: Path) -> dict[str, Path]:
    """split -> JSON path for a COCO source root (a JSON file or a folder)."""
    root = Path(root)
    if root.is_file():
        return {_split_name(root): root}
    if not root.is_dir():
        raise SourceError(f"{root}: no such COCO JSON file or folder")
    files = sorted(root.glob("*.json")) or sorted((root / "annotations").glob("*.json"))
    if not files:
        raise SourceError(f"{root}: no COCO JSON found (expected *.json or annotations/*.json)")
    return {_split_name(p): p for p in files}


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise SourceError(f"{path}: not a COCO instances file (no 'images' list)")
    for key in ("annotations", "categories"):
        if not isinstance(data.get(key, []), list):
            raise SourceError(f"{path}: '{key}' is not a list")
    return data


def _categories(path: Path, data: dict) -> list[tuple[int, str]]:
    out = []
    for k, c in enumerate(data.get("categories", [])):
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or not str(c.get("name", "")).strip():
            raise SourceError(f"{path}:categories[{k}]: a category needs an integer 'id' and a 'name'")
        out.append((c["id"], str(c["name"]).strip()))
    if not out:
        raise SourceError(f"{path}: no categories")
    return sorted(out)


@dataclass
class CocoSource(Source):
    images_dir: Path | None = None
    _data: dict = field(default_factory=dict, init=False, repr=False)
    _label_of: dict = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def open(cls, root, *, report: Report, splits=None, subset=None, check_images=True, images_dir=None):
        root = Path(root)
        jsons = select_splits(find_jsons(root), splits, "coco")
        data = {}
        for split, path in jsons.items():
            try:
                data[split] = (path, _load(path))
            except OSError as exc:
                report.skip(UNREADABLE_FILE, relpath(path, root if root.is_dir() else root.parent),
                            f"not readable ({exc.strerror or exc})")
        if not data:
            raise SourceError(f"{root}: no readable COCO JSON")
        cats = None
        for split, (path, d) in data.items():
            c = _categories(path, d)
            if cats is not None and c != cats:
                raise SourceError(f"{path}: categories differ from the other JSON files of this source")
            cats = c
        name = subset or "coco"
        try:
            table = class_table_from_names(name, [n for _, n in cats])
        except ValueError as exc:
            raise SourceError(f"{next(iter(data.values()))[0]}: {exc}") from None
        src = cls("coco", root, table, report, check_images, splits,
                  images_dir=Path(images_dir) if images_dir else None)
        src._data = data
        src._label_of = {cid: i for i, (cid, _) in enumerate(cats)}
        return src

    def _image_dirs(self, path: Path, split: str) -> list[Path]:
        if self.images_dir is not None:
            return [self.images_dir]
        return [path.parent, path.parent / "images", path.parent.parent / split, path.parent.parent / "images"]

    def _outside(self, file_name: str) -> bool:
        """An absolute name or one with ``..`` that does not resolve inside ``images_dir``."""
        name = PurePosixPath(file_name.replace("\\", "/"))
        if not (name.is_absolute() or ".." in name.parts):
            return False
        if self.images_dir is None:
            return True
        return not (self.images_dir / file_name).resolve().is_relative_to(self.images_dir.resolve())

    def _list_units(self) -> list[Unit]:
        units = []
        prefix_ids = len(find_jsons(self.root)) > 1
        for split, (path, data) in self._data.items():
            rel = self.rel(path)
            ids = {}
            for k, im in enumerate(data["images"]):
                if not isinstance(im, dict) or "id" not in im or not str(im.get("file_name", "")).strip():
                    self.report.skip(GARBLED_ANNOTATION, f"{rel}:images[{k}]", "image entry needs 'id' and 'file_name'")
                    self.skipped_images += 1
                    continue
                if im["id"] in ids:
                    self.report.skip(GARBLED_ANNOTATION, f"{rel}:images[{k}]",
                                     f"image id {im['id']!r} is already used by images[{ids[im['id']]}]; "
                                     "its annotations go to that entry")
                    self.skipped_images += 1
                    continue
                ids[im["id"]] = k
            by_image: dict = {}
            for k, ann in enumerate(data.get("annotations", [])):
                image_id = ann.get("image_id") if isinstance(ann, dict) else None
                if image_id not in ids:
                    self.report.skip(MISSING_IMAGE, f"{rel}:annotations[{k}]",
                                     f"annotation refers to image id {image_id!r}, which 'images' does not list")
                    continue
                by_image.setdefault(image_id, []).append(k)
            dirs = self._image_dirs(path, split)
            for image_id, k in ids.items():
                file_name = str(data["images"][k]["file_name"]).strip()
                if self._outside(file_name):
                    inside = f"inside {self.images_dir}" if self.images_dir else "(no --images-dir given)"
                    self.report.skip(OUTSIDE_SOURCE, f"{rel}:images[{k}]",
                                     f"file_name {file_name!r} points outside the source folders {inside}")
                    self.skipped_images += 1
                    continue
                candidates = [d / file_name for d in dirs]
                image_path = next((c for c in candidates if is_file(c)), candidates[0])
                stem = Path(file_name).with_suffix("").as_posix().replace("/", "_")
                units.append(Unit(f"{split}_{stem}" if prefix_ids else stem, image_path, path, split,
                                  extra=(k, tuple(by_image.get(image_id, ())))))
        return units

    def _read(self, unit: Unit, report: Report) -> SourceImage:
        path, data = self._data[unit.split]
        rel = self.rel(path)
        k, ann_indices = unit.extra
        entry = data["images"][k]
        declared = None
        if isinstance(entry.get("width"), int) and isinstance(entry.get("height"), int):
            declared = (entry["width"], entry["height"])
        width, height = self.image_size(unit, report, declared, f"{rel}:images[{k}]")
        image = SourceImage(unit.image_id, Path(unit.image_path), width, height, annotation_path=path,
                            split=unit.split, extra={"coco_id": entry["id"], "file_name": entry["file_name"]})
        for a in ann_indices:
            obj = self._parse_annotation(data["annotations"][a], f"{rel}:annotations[{a}]", width, height, report)
            if obj is not None:
                image.objects.append(obj)
        if not ann_indices:
            report.note(NO_OBJECTS, f"{rel}:images[{k}]", "image has no annotations")
        return image

    def _parse_annotation(self, ann: dict, where: str, width, height, report: Report) -> SourceObject | None:
        bbox = ann.get("bbox")
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            report.skip(GARBLED_ANNOTATION, where, f"'bbox' must be [x, y, w, h], got {bbox!r}")
            return None
        values = [parse_number(v, where, report) for v in bbox]
        if None in values:
            return None
        label = self._label_of.get(ann.get("category_id"))
        if label is None:
            report.skip(UNKNOWN_CLASS, where, f"category_id {ann.get('category_id')!r} is not in 'categories'")
            return None
        x, y, w, h = values
        hbox = check_hbox((x, y, x + w, y + h), width, height, where, report)
        if hbox is None:
            return None
        extra = {"category_id": ann["category_id"], "annotation_id": ann.get("id")}
        if ann.get("segmentation"):
            extra["segmentation"] = ann["segmentation"]
        crowd = bool(ann.get("iscrowd", 0))
        if crowd:
            extra["iscrowd"] = True
        return SourceObject(self.class_table.names[label], label, hbox, difficult=crowd, where=where, extra=extra)
