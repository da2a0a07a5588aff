"""DIOR (horizontal VOC XML, format ``dior``) and DIOR-R (``robndbox``, format ``dior-r``) -> SIOR.

Layout: ``JPEGImages-trainval/*.jpg``, ``JPEGImages-test/*.jpg``, ``Annotations/Horizontal Bounding
Boxes/*.xml`` and ``Annotations/Oriented Bounding Boxes/*.xml`` (the original DIOR release with
horizontal XMLs directly in ``Annotations/`` is read too). Splits: ``trainval`` and ``test``. An
annotation's split is the image folder holding its image, else ``ImageSets/Main/{train,val,test}.txt``,
else DIOR's numbering (ids up to 11725 are trainval).

Quirks handled: class names are matched case-insensitively (``Expressway-toll-station``); DIOR-R
corners may be negative, beyond 800 or a literal ``-0`` (kept unclipped); ``<size>`` is only
checked against the image header (33 DIOR-R files say 800x802); zero-width boxes follow
:func:`records.check_box`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..geometry import polygon_to_hbox
from ..records import GARBLED_ANNOTATION, Report, SourceError, SourceObject
from .base import Unit, XmlSource, check_hbox, parse_number, select_splits, xml_flag

SPLITS = ("trainval", "test")
IMAGE_DIRS = {"trainval": "JPEGImages-trainval", "test": "JPEGImages-test"}
ANNOTATION_DIRS = {"dior": "Horizontal Bounding Boxes", "dior-r": "Oriented Bounding Boxes"}
LAST_TRAINVAL_ID = 11725
HBOX_TAGS = ("xmin", "ymin", "xmax", "ymax")
RBOX_TAGS = ("x_left_top", "y_left_top", "x_right_top", "y_right_top",
             "x_right_bottom", "y_right_bottom", "x_left_bottom", "y_left_bottom")


class DiorSource(XmlSource):
    def _annotation_dir(self) -> Path:
        ann = self.root / "Annotations"
        sub = ann / ANNOTATION_DIRS[self.format]
        if sub.is_dir():
            return sub
        if self.format == "dior" and ann.is_dir() and any(ann.glob("*.xml")):
            return ann
        raise SourceError(f"{self.root}: no DIOR annotations (expected Annotations/{ANNOTATION_DIRS[self.format]}/)")

    def _image_sets(self) -> dict[str, str]:
        """image id -> trainval/test from ImageSets/Main (empty when absent)."""
        out = {}
        for name, split in (("train", "trainval"), ("val", "trainval"), ("test", "test")):
            f = self.root / "ImageSets" / "Main" / f"{name}.txt"
            try:
                names = f.read_text().split() if f.is_file() else []
            except OSError as exc:
                self.unreadable(f, exc)
                continue
            for line in names:
                out[line.strip()] = split
        return out

    def _list_units(self) -> list[Unit]:
        wanted = select_splits(dict.fromkeys(SPLITS), self.splits, self.format)
        images = {split: self.index(self.root / IMAGE_DIRS[split]) for split in SPLITS}
        annotations = self.index(self._annotation_dir(), ".xml")
        sets = None
        units = []
        for stem in sorted(set(annotations) | set(images["trainval"]) | set(images["test"])):
            split = next((s for s in SPLITS if stem in images[s]), None)
            if split is None:
                sets = self._image_sets() if sets is None else sets
                split = sets.get(stem) or _split_by_number(stem)
            # Ids whose split cannot be told (no image, no ImageSets, not a DIOR number) are read
            # when all splits are, and left out when specific splits are asked for.
            if split in wanted or (split is None and self.splits is None):
                image_path = images[split].get(stem) if split else None
                units.append(Unit(stem, image_path, annotations.get(stem), split))
        return units

    def _default_image_path(self, unit: Unit) -> Path:
        return self.root / IMAGE_DIRS.get(unit.split or "trainval", IMAGE_DIRS["trainval"]) / f"{unit.image_id}.jpg"

    def _parse_object(self, node, where: str, width, height, report: Report) -> SourceObject | None:
        name = (node.findtext("name") or "").strip()
        if not name:
            report.skip(GARBLED_ANNOTATION, where, "object has no <name>")
            return None
        oriented = self.format == "dior-r"
        box_tag, tags = ("robndbox", RBOX_TAGS) if oriented else ("bndbox", HBOX_TAGS)
        box = node.find(box_tag)
        if box is None:
            report.skip(GARBLED_ANNOTATION, where, f"object has no <{box_tag}>")
            return None
        values = []
        for tag in tags:
            text = box.findtext(tag)
            if text is None:
                report.skip(GARBLED_ANNOTATION, where, f"<{box_tag}> has no <{tag}>")
                return None
            value = parse_number(text, f"{where}/{tag}", report)
            if value is None:
                return None
            values.append(value)
        cls = self.lookup_class(name, where, report)
        if cls is None:
            return None
        polygon, extra = None, {}
        if oriented:
            polygon = np.asarray(values, dtype=np.float64).reshape(4, 2)
            raw_hbox = polygon_to_hbox(polygon)
            angle = node.findtext("angle")
            if angle is not None and angle.strip():
                angle_value = parse_number(angle, f"{where}/angle", report, "angle")
                if angle_value is None:
                    return None
                extra["angle_deg"] = angle_value
        else:
            raw_hbox = tuple(values)
        hbox = check_hbox(raw_hbox, width, height, where, report)
        if hbox is None:
            return None
        return SourceObject(cls[0], cls[1], hbox, polygon=polygon, difficult=xml_flag(node, "difficult"),
                            truncated=xml_flag(node, "truncated"), where=where, extra=extra)


def _split_by_number(stem: str) -> str | None:
    """DIOR numbers its trainval images 00001-11725 and its test images 11726-23463."""
    try:
        return "trainval" if int(stem) <= LAST_TRAINVAL_ID else "test"
    except ValueError:
        return None
