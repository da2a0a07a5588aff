"""DOTA v1.0 / v1.5 / v2.0 ``labelTxt`` (and split-tool patches) -> SOTA records.

Layouts: ``ROOT/{images,labelTxt}`` directly (one unnamed split), or split subfolders
``ROOT/<split>/{images,labelTxt}`` (``train``, ``val``, any name; a subfolder counts as a split
when it holds ``labelTxt/`` or mmrotate's ``annfiles/``, so DOTA's unlabelled ``test/`` is ignored
unless asked for).

Line format: ``x1 y1 x2 y2 x3 y3 x4 y4 category [difficult]``, any whitespace, int or float, CRLF
or LF; ``imagesource:``/``gsd:`` header lines are kept in ``SourceImage.extra``. ``difficult`` 2
(written by the split tools for objects cut by a window) means truncated, not difficult.
H-Box = per-axis min/max of the four corners.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..geometry import polygon_to_hbox
from ..records import (
    EMPTY_ANNOTATION,
    GARBLED_ANNOTATION,
    NO_OBJECTS,
    Report,
    SourceError,
    SourceImage,
    SourceObject,
)
from .base import (
    SkipImage,
    Source,
    Unit,
    check_hbox,
    pair_units,
    parse_number,
    select_splits,
)

LABEL_DIRS = ("labelTxt", "annfiles")
HEADER_KEYS = ("imagesource", "gsd")


def _label_dir(folder: Path) -> Path | None:
    for name in LABEL_DIRS:
        if (folder / name).is_dir():
            return folder / name
    return None


class DotaSource(Source):
    def _find_splits(self) -> dict[str, Path]:
        if _label_dir(self.root) is not None:
            return {"": self.root}
        found = {}
        for p in self.subfolders(self.root):
            try:
                if _label_dir(p) is not None:
                    found[p.name] = p
            except OSError as exc:
                self.unreadable(p, exc)
        if self.splits is not None:
            # An explicitly requested split may be label-less (DOTA test): its images are reported.
            for s in [self.splits] if isinstance(self.splits, str) else self.splits:
                if s not in found and (self.root / s / "images").is_dir():
                    found[s] = self.root / s
        if not found:
            raise SourceError(f"{self.root}: no DOTA layout found (expected labelTxt/ or <split>/labelTxt/)")
        return found

    def _list_units(self) -> list[Unit]:
        units = []
        for split, folder in select_splits(self._find_splits(), self.splits, "dota").items():
            labels = _label_dir(folder)
            ann = self.index(labels, ".txt") if labels is not None else {}
            units += pair_units(self.index(folder / "images"), ann, split or None)
        return units

    def _read(self, unit: Unit, report: Report) -> SourceImage:
        path = Path(unit.annotation_path)
        rel = self.rel(path)
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as exc:
            self.unreadable(path, exc, report)
            raise SkipImage from None
        except UnicodeDecodeError as exc:
            report.skip(GARBLED_ANNOTATION, rel, f"not UTF-8 text ({exc})")
            raise SkipImage from None
        width, height = self.image_size(unit, report, None, rel)
        image = SourceImage(unit.image_id, unit.image_path or path.parent.parent / "images" / f"{unit.image_id}.png",
                            width, height, annotation_path=path, split=unit.split)
        n_lines = n_object_lines = 0
        for lineno, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line:
                continue
            n_lines += 1
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() in HEADER_KEYS:
                image.extra[key.strip().lower()] = _header_value(key.strip().lower(), value.strip())
                continue
            n_object_lines += 1
            obj = self._parse_line(line, f"{rel}:{lineno}", width, height, report)
            if obj is not None:
                image.objects.append(obj)
        if n_lines == 0:
            report.note(EMPTY_ANNOTATION, rel, "empty label file: image has no objects")
        elif n_object_lines == 0:
            report.note(NO_OBJECTS, rel, "label file has header lines only: image has no objects")
        return image

    def _parse_line(self, line: str, where: str, width, height, report: Report) -> SourceObject | None:
        parts = line.split()
        if len(parts) not in (9, 10):
            report.skip(GARBLED_ANNOTATION, where, f"expected 8 coordinates, a class and an optional difficult flag, got {line!r}")
            return None
        coords = []
        for token in parts[:8]:
            value = parse_number(token, where, report)
            if value is None:
                return None
            coords.append(value)
        difficult = 0
        if len(parts) == 10:
            if parts[9] not in ("0", "1", "2"):
                report.skip(GARBLED_ANNOTATION, where, f"difficult flag must be 0, 1 or 2, got {parts[9]!r}")
                return None
            difficult = int(parts[9])
        cls = self.lookup_class(parts[8], where, report)
        if cls is None:
            return None
        polygon = np.asarray(coords, dtype=np.float64).reshape(4, 2)
        hbox = check_hbox(polygon_to_hbox(polygon), width, height, where, report)
        if hbox is None:
            return None
        return SourceObject(cls[0], cls[1], hbox, polygon=polygon, difficult=difficult == 1,
                            truncated=difficult == 2, where=where)


def _header_value(key: str, value: str):
    """``gsd`` as a float when it is one (some files hold ``null`` or text), else the raw text."""
    if key == "gsd":
        try:
            return float(value)
        except ValueError:
            return value
    return value
