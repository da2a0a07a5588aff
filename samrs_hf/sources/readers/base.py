"""What every source reader shares: the lazy, re-iterable :class:`Source` and its image checks.

A reader lists *units* (one per image id: the image file and/or the annotation file, found by
listing folders only) and reads one unit at a time into a :class:`SourceImage`. Listing is cheap
and sorted, so iteration order is deterministic; reading is lazy, so a 23k-image source costs one
annotation file in memory at a time.

Problems are written to ``Source.report`` while images are read. A second pass over the same
source reads the files again but does not record their problems twice.

A folder or annotation file the operating system will not read (permissions, I/O errors) is an
``unreadable-file`` skip naming it; the rest of the source is still read.

``check_images``: with ``True`` (the default, what a build needs) an image whose file is missing
or whose header cannot be read is skipped (``missing-image`` / ``corrupt-image``). With ``False``
(label-only inspection, e.g. annotation sets shipped without pixels) the image is still yielded,
with its size from the annotation (``<size>``, COCO ``width``/``height``) or ``None`` when the
format has none (DOTA), and the missing or unreadable file is recorded as a note.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..classes import ClassTable
from ..imageio import CorruptImageError, image_size
from ..records import (
    CORRUPT_IMAGE,
    GARBLED_ANNOTATION,
    MISSING_ANNOTATION,
    MISSING_IMAGE,
    NO_OBJECTS,
    NON_FINITE,
    SIZE_MISMATCH,
    UNKNOWN_CLASS,
    UNREADABLE_FILE,
    Report,
    SourceError,
    SourceImage,
    check_box,
    relpath,
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
"""Image file suffixes a reader recognises, in order of preference when stems collide."""


@dataclass(frozen=True)
class Unit:
    """One image id as found on disk: its image file and/or annotation file (either may be None)."""

    image_id: str
    image_path: Path | None
    annotation_path: Path | None
    split: str | None = None
    extra: tuple = ()
    """Reader-specific hashable extras (e.g. COCO's JSON image index)."""


class _Discard(Report):
    """Report used on a second pass: problems of a unit are recorded once, strictness is kept."""

    def skip(self, kind, where, message):
        if self.strict:
            super().skip(kind, where, message)

    def note(self, kind, where, message):
        pass


class SkipImage(Exception):
    """Raised inside ``_read`` after the image was reported as skipped."""


@dataclass
class Source:
    """A source dataset on disk, read lazily.

    ``images()`` yields :class:`SourceImage` records sorted by ``image_id``; every problem found
    while reading goes to ``report`` (a skip, or an error under ``strict``).
    """

    format: str
    root: Path
    class_table: ClassTable
    report: Report
    check_images: bool = True
    splits: tuple[str, ...] | None = None
    _units: list[Unit] | None = field(default=None, init=False, repr=False)
    _reported: set = field(default_factory=set, init=False, repr=False)
    skipped_images: int = field(default=0, init=False)
    """Whole images skipped so far (each with one skip in ``report``); the other skips drop single objects."""

    # -- to implement per format -------------------------------------------------------------
    def _list_units(self) -> list[Unit]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _read(self, unit: Unit, report: Report) -> SourceImage:  # pragma: no cover - abstract
        """Read one unit; raise :class:`SkipImage` after ``report.skip`` to drop it."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------
    def units(self) -> list[Unit]:
        """All image ids found on disk, sorted (listing only; nothing is parsed)."""
        if self._units is None:
            units = sorted(self._list_units(), key=lambda u: u.image_id)
            dup = [a for a, b in zip(units, units[1:]) if a.image_id == b.image_id]
            if dup:
                raise SourceError(f"{self.root}: image id {dup[0].image_id!r} occurs twice in the source layout")
            self._units = units
        return self._units

    def __len__(self) -> int:
        """Number of image ids found on disk, before any skip."""
        return len(self.units())

    def __bool__(self) -> bool:  # a source is an object, not a container: never falsy
        return True

    def images(self) -> Iterator[SourceImage]:
        for unit in self.units():
            key = (unit.split, unit.image_id)
            first = key not in self._reported
            report = self.report if first else _Discard(strict=self.report.strict)
            self._reported.add(key)
            try:
                image = self._read_checked(unit, report)
            except SkipImage:
                self.skipped_images += first
                continue
            yield image

    def _read_checked(self, unit: Unit, report: Report) -> SourceImage:
        if unit.annotation_path is None:
            report.skip(MISSING_ANNOTATION, self.rel(unit.image_path), "image has no annotation file")
            raise SkipImage
        return self._read(unit, report)

    def rel(self, path) -> str:
        return relpath(Path(path), self.root if self.root.is_dir() else self.root.parent)

    def image_size(self, unit: Unit, report: Report, declared: tuple | None, where_declared: str):
        """(width, height) from the image header; see the module docstring for missing files.

        ``declared`` is the annotation's own size (or None); a disagreement is noted, the header wins.
        """
        ann = self.rel(unit.annotation_path)
        problem = None
        if unit.image_path is None or not is_file(unit.image_path):
            looked = f" ({self.rel(unit.image_path)} does not exist)" if unit.image_path is not None else ""
            problem = (MISSING_IMAGE, ann, f"annotation has no image file{looked}")
        else:
            try:
                size = image_size(unit.image_path)
            except CorruptImageError as exc:
                problem = (CORRUPT_IMAGE, self.rel(unit.image_path), str(exc).split(": ", 1)[-1])
        if problem is not None:
            if self.check_images:
                report.skip(*problem)
                raise SkipImage
            kind, where, msg = problem
            fallback = f"{declared[0]}x{declared[1]} from the annotation" if declared else "unknown"
            report.note(kind, where, f"{msg} (label-only read: size {fallback})")
            return declared if declared else (None, None)
        if declared is not None and tuple(declared) != tuple(size):
            report.note(
                SIZE_MISMATCH,
                where_declared,
                f"annotation says {declared[0]}x{declared[1]}, image header says {size[0]}x{size[1]}; using the header",
            )
        return size

    def unreadable(self, path, exc: OSError, report: Report | None = None) -> None:
        """Record ``path`` (a file or folder) as an ``unreadable-file`` skip."""
        (report or self.report).skip(UNREADABLE_FILE, self.rel(path), f"not readable ({exc.strerror or exc})")

    def index(self, folder: Path, suffixes=IMAGE_EXTENSIONS) -> dict[str, Path]:
        """:func:`index_files` whose unreadable folder is a skip (and lists nothing)."""
        try:
            return index_files(folder, suffixes)
        except OSError as exc:
            self.unreadable(folder, exc)
            return {}

    def subfolders(self, folder: Path) -> list[Path]:
        """Sorted subfolders of ``folder``; an unreadable one is a skip and left out."""
        out = []
        for p in self.entries(folder):
            try:
                if p.is_dir():
                    out.append(p)
            except OSError as exc:
                self.unreadable(p, exc)
        return out

    def entries(self, folder: Path) -> list[Path]:
        """Sorted entries of ``folder``; an unreadable folder is a skip (no entries)."""
        try:
            return sorted(folder.iterdir())
        except OSError as exc:
            self.unreadable(folder, exc)
            return []

    def lookup_class(self, name: str, where: str, report: Report):
        """(canonical name, id) or None after an ``unknown-class`` skip."""
        label = self.class_table.id_of(name)
        if label is None:
            report.skip(UNKNOWN_CLASS, where, f"class {name!r} is not in the {self.class_table.subset} table")
            return None
        return self.class_table.names[label], label


class XmlSource(Source):
    """One XML file per image (DIOR, FAIR1M, HRSC2016): parse, size check, then object by object."""

    OBJECT_PATH = "object"
    """ElementTree path of the object elements, relative to the XML root."""
    OBJECT_NAME = "object"
    """Element name used in ``where`` strings: ``file.xml:object[i]`` (1-based, as XPath)."""
    SIZE_TAGS = ("size/width", "size/height")

    def _default_image_path(self, unit: Unit) -> Path:
        """Where the image would be (for label-only reads of annotations without image)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def _image_extra(self, unit: Unit) -> dict:
        return {}

    def _parse_object(self, node, where: str, width, height, report: Report):  # pragma: no cover - abstract
        raise NotImplementedError

    def _read(self, unit: Unit, report: Report) -> SourceImage:
        path = Path(unit.annotation_path)
        rel = self.rel(path)
        root = parse_xml(path, rel, report)
        if root is None:
            raise SkipImage
        width, height = self.image_size(unit, report, xml_size(root, *self.SIZE_TAGS),
                                        f"{rel}:{self.SIZE_TAGS[0].split('/')[0]}")
        image = SourceImage(unit.image_id, unit.image_path or self._default_image_path(unit), width, height,
                            annotation_path=path, split=unit.split, extra=self._image_extra(unit))
        nodes = root.findall(self.OBJECT_PATH)
        for i, node in enumerate(nodes, start=1):
            obj = self._parse_object(node, f"{rel}:{self.OBJECT_NAME}[{i}]", width, height, report)
            if obj is not None:
                image.objects.append(obj)
        if not nodes:
            report.note(NO_OBJECTS, rel, "annotation lists no objects")
        return image


def xml_flag(node, tag: str) -> bool:
    """VOC-style 0/1 flag (``difficult``, ``truncated``); absent or empty means False."""
    return (node.findtext(tag) or "0").strip() not in ("", "0")


def check_hbox(hbox, width, height, where: str, report: Report):
    """:func:`records.check_box` that also works when the image size is unknown (label-only)."""
    return check_box(hbox, math.inf if width is None else width, math.inf if height is None else height,
                     where, report)


def parse_number(text, where: str, report: Report, what: str = "coordinate") -> float | None:
    """A float from annotation text; garbled and non-finite values are skips naming ``where``."""
    try:
        value = float(str(text).strip())
    except (TypeError, ValueError):
        report.skip(GARBLED_ANNOTATION, where, f"non-numeric {what} {text!r}")
        return None
    if not math.isfinite(value):
        report.skip(NON_FINITE, where, f"non-finite {what} {text!r}")
        return None
    return value


def parse_xml(path: Path, where: str, report: Report):
    """Root element of an XML file, or None after a ``garbled-annotation`` skip naming the line
    (``unreadable-file`` when it cannot be read)."""
    try:
        return ET.parse(path).getroot()
    except OSError as exc:
        report.skip(UNREADABLE_FILE, where, f"cannot read the file ({exc.strerror or exc})")
        return None
    except ET.ParseError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else "?"
        report.skip(GARBLED_ANNOTATION, f"{where}:{line}", f"unreadable XML ({exc})")
        return None


def xml_size(root, w_tag: str = "size/width", h_tag: str = "size/height"):
    """The size an XML annotation declares, or None when absent or not integral."""
    try:
        w, h = int(float(root.findtext(w_tag))), int(float(root.findtext(h_tag)))
    except (TypeError, ValueError):
        return None
    return (w, h) if w > 0 and h > 0 else None


def is_file(path) -> bool:
    """``Path.is_file`` that says False, not PermissionError, for a file in a folder we may not enter
    (the file is then reported as missing, not the run stopped)."""
    try:
        return Path(path).is_file()
    except OSError:
        return False


def is_dir(path) -> bool:
    """``Path.is_dir`` that says False, not PermissionError, inside a folder we may not enter."""
    try:
        return Path(path).is_dir()
    except OSError:
        return False


def index_files(folder: Path, suffixes=IMAGE_EXTENSIONS) -> dict[str, Path]:
    """stem -> path of the files directly inside ``folder`` (empty if absent) whose suffix is one of
    ``suffixes`` (case-insensitive; the earlier suffix wins when stems collide). Raises OSError
    when the folder cannot be read."""
    out: dict[str, Path] = {}
    if not folder.is_dir():
        return out
    suffixes = (suffixes,) if isinstance(suffixes, str) else tuple(suffixes)
    rank = {ext: i for i, ext in enumerate(suffixes)}
    for p in folder.iterdir():
        ext = p.suffix.lower()
        if ext in rank and p.is_file():
            cur = out.get(p.stem)
            if cur is None or rank[ext] < rank[cur.suffix.lower()]:
                out[p.stem] = p
    return out


def pair_units(images: dict[str, Path], annotations: dict[str, Path], split, prefix: str = "") -> list[Unit]:
    """Units for the union of image and annotation stems (either side may be missing)."""
    return [
        Unit(prefix + stem, images.get(stem), annotations.get(stem), split)
        for stem in sorted(set(images) | set(annotations))
    ]


def select_splits(found: dict, requested, fmt: str) -> dict:
    """Keep the requested splits of ``found`` (name -> anything); unknown names are an error."""
    if requested is None:
        return found
    requested = [requested] if isinstance(requested, str) else list(requested)
    missing = [s for s in requested if s not in found]
    if missing:
        known = ", ".join(s or "(root)" for s in found) or "none"
        raise SourceError(f"{fmt}: split {missing[0]!r} not found (splits present: {known})")
    return {s: found[s] for s in requested}
