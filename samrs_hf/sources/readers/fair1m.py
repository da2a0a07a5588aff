"""FAIR1M 1.0 / 2.0 XML -> FAST records.

Layout: ``train/part1/{images,labelXml}``, ``train/part2/...`` (or ``train/{images,labelXml}``)
and ``validation/{images,labelXml}``; a root holding ``images/`` + ``labelXml/`` directly is one
unnamed split. Validation file names (0...8286) collide with train names, so, as SAMRS did, ids
are prefixed ``train_`` / ``valid_`` (no prefix for the unnamed split).

Object: ``<possibleresult><name>`` (spaces, any case: looked up in the FAST table) and
``<points>`` with 5 ``x,y`` points whose 5th repeats the 1st. The closing repeat is dropped; a
polygon that does not come down to exactly 4 corners is a ``garbled-annotation`` skip (FAIR1M
never has one). Start point and winding are kept as given; zero-area polygons are kept (their
H-Box goes through :func:`records.check_box`). ``extra["points"]`` holds all raw points.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..geometry import polygon_to_hbox
from ..records import GARBLED_ANNOTATION, Report, SourceError, SourceObject
from .base import (
    Unit,
    XmlSource,
    check_hbox,
    is_dir,
    pair_units,
    parse_number,
    select_splits,
)

SPLIT_DIRS = {"train": "train", "validation": "validation"}
ID_PREFIX = {"train": "train_", "validation": "valid_"}
LABEL_DIR = "labelXml"


class Fair1mSource(XmlSource):
    OBJECT_PATH = "objects/object"

    def _find_splits(self) -> dict[str, list[Path]]:
        """split -> folders holding ``labelXml/`` (train may have part1, part2, ...)."""
        if (self.root / LABEL_DIR).is_dir():
            return {"": [self.root]}
        found = {}
        for split, name in SPLIT_DIRS.items():
            top = self.root / name
            if not top.is_dir():
                continue
            try:
                parts = [top] if (top / LABEL_DIR).is_dir() or (top / "images").is_dir() else []
            except OSError as exc:
                self.unreadable(top, exc)
                continue
            parts += [p for p in self.subfolders(top) if is_dir(p / LABEL_DIR)]
            if parts:
                found[split] = parts
        if not found:
            raise SourceError(f"{self.root}: no FAIR1M layout found (expected train/, validation/ or labelXml/)")
        return found

    def _list_units(self) -> list[Unit]:
        units = []
        for split, folders in select_splits(self._find_splits(), self.splits, "fair1m").items():
            for folder in folders:
                units += pair_units(self.index(folder / "images"), self.index(folder / LABEL_DIR, ".xml"),
                                    split or None, ID_PREFIX.get(split, ""))
        return units

    def _default_image_path(self, unit: Unit) -> Path:
        return Path(unit.annotation_path).parent.parent / "images" / f"{Path(unit.annotation_path).stem}.tif"

    def _image_extra(self, unit: Unit) -> dict:
        return {"file_stem": Path(unit.annotation_path).stem}

    def _parse_object(self, node, where: str, width, height, report: Report) -> SourceObject | None:
        name = (node.findtext("possibleresult/name") or "").strip()
        if not name:
            report.skip(GARBLED_ANNOTATION, where, "object has no <possibleresult><name>")
            return None
        points = []
        for k, p in enumerate(node.findall("points/point"), start=1):
            xy = (p.text or "").split(",")
            if len(xy) != 2:
                report.skip(GARBLED_ANNOTATION, f"{where}/point[{k}]", f"expected 'x,y', got {p.text!r}")
                return None
            pair = []
            for v in xy:  # the first bad number drops the object: one skip, not one per number
                value = parse_number(v, f"{where}/point[{k}]", report)
                if value is None:
                    return None
                pair.append(value)
            points.append(pair)
        raw = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        corners = raw[:-1] if len(raw) > 1 and np.array_equal(raw[0], raw[-1]) else raw
        if len(corners) != 4:
            report.skip(GARBLED_ANNOTATION, where,
                        f"expected 4 corners (+ the closing repeat of the first), got {len(raw)} points")
            return None
        cls = self.lookup_class(name, where, report)
        if cls is None:
            return None
        hbox = check_hbox(polygon_to_hbox(corners), width, height, where, report)
        if hbox is None:
            return None
        return SourceObject(cls[0], cls[1], hbox, polygon=corners.copy(), where=where, extra={"points": raw})
