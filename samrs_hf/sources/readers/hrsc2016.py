"""HRSC2016 XML -> single-class ``ship`` records, plus its ground-truth instance masks.

Layout: ``[HRSC2016/]FullDataSet/{AllImages/*.bmp, Annotations/*.xml, Segmentations/*.png}`` and
optionally ``ImageSets/{train,val,trainval,test}.txt`` (next to ``FullDataSet`` or inside it).
Without ``splits`` every annotation is read and ``SourceImage.split`` is ``trainval`` or ``test``
where ImageSets says so; with ``splits`` only the ids listed in those ImageSets files are read.

Per object: H-Box ``box_xmin..box_ymax``; R-Box ``(mbox_cx, mbox_cy, mbox_w, mbox_h, mbox_ang)``
with the angle in radians and ``w`` along ``(cos a, sin a)`` (y down), its corners from
:func:`geometry.rbox_to_polygon`; ``extra["bow"]`` = ``(header_x, header_y)``; ``extra["seg_color"]``
= ``(r, g, b)`` or None when the field is empty (only the 124 pixel-labelled test images fill it);
``extra["class_id"]`` = HRSC's fine class id and ``extra["class_name"]`` its short name from
``FullDataSet/sysdata.xml`` (None without it); all map to ``ship`` = 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..geometry import rbox_to_polygon
from ..imageio import open_rgb
from ..records import (
    GARBLED_ANNOTATION,
    MISSING_ANNOTATION,
    Report,
    SourceError,
    SourceImage,
    SourceObject,
)
from .base import (
    Unit,
    XmlSource,
    check_hbox,
    is_file,
    parse_number,
    parse_xml,
    select_splits,
    xml_flag,
)

HBOX_TAGS = ("box_xmin", "box_ymin", "box_xmax", "box_ymax")
RBOX_TAGS = ("mbox_cx", "mbox_cy", "mbox_w", "mbox_h", "mbox_ang")
SPLIT_FILES = ("trainval", "test", "train", "val")
"""ImageSets files, in the order that names an image's split when it appears in several."""
SEGMENTATION_DIR = "Segmentations"


class Hrsc2016Source(XmlSource):
    OBJECT_PATH = "HRSC_Objects/HRSC_Object"
    OBJECT_NAME = "HRSC_Object"
    SIZE_TAGS = ("Img_SizeWidth", "Img_SizeHeight")

    def _dataset_dir(self) -> Path:
        for d in (self.root / "FullDataSet", self.root):
            if (d / "Annotations").is_dir():
                return d
        raise SourceError(f"{self.root}: no HRSC2016 layout found (expected FullDataSet/Annotations/)")

    def _fine_classes(self) -> dict[str, str]:
        """HRSC's fine class id -> short name, from ``FullDataSet/sysdata.xml`` (empty when absent)."""
        if not hasattr(self, "_fine"):
            self._fine = {}
            path = self._dataset_dir() / "sysdata.xml"
            root = parse_xml(path, self.rel(path), self.report) if path.is_file() else None
            for c in root.iter("HRSC_Class") if root is not None else ():
                cid, name = (c.findtext("Class_ID") or "").strip(), (c.findtext("Class_ShortName") or "").strip()
                if cid and name:
                    self._fine[cid] = name
        return self._fine

    def _image_sets_dir(self, full: Path) -> Path | None:
        return next((d for d in (self.root / "ImageSets", full / "ImageSets") if d.is_dir()), None)

    def _image_sets(self, full: Path) -> dict[str, list[str]]:
        d = self._image_sets_dir(full)
        if d is None:
            return {}
        sets = {}
        for s in SPLIT_FILES:
            try:
                if (d / f"{s}.txt").is_file():
                    sets[s] = (d / f"{s}.txt").read_text().split()
            except OSError as exc:
                self.unreadable(d / f"{s}.txt", exc)
        return sets

    def _list_units(self) -> list[Unit]:
        full = self._dataset_dir()
        images = self.index(full / "AllImages")
        annotations = self.index(full / "Annotations", ".xml")
        sets = self._image_sets(full)
        split_of: dict[str, str] = {}
        for s in SPLIT_FILES:
            for i in sets.get(s, ()):
                split_of.setdefault(i, s)
        if self.splits is None:
            ids = sorted(set(images) | set(annotations))
        else:
            chosen = {s: set(ids) for s, ids in select_splits(sets, self.splits, "hrsc2016").items()}
            ids = sorted(set().union(*chosen.values()))
            split_of = {i: next(s for s in chosen if i in chosen[s]) for i in ids}
            lost = [i for i in ids if i not in images and i not in annotations]
            for i in lost:
                where = self.rel(self._image_sets_dir(full) / f"{split_of[i]}.txt")
                self.report.skip(MISSING_ANNOTATION, where,
                                 f"{i} is listed but has neither an image in AllImages/ nor an annotation")
                self.skipped_images += 1
            ids = [i for i in ids if i not in lost]
        return [Unit(i, images.get(i), annotations.get(i), split_of.get(i)) for i in ids]

    def _default_image_path(self, unit: Unit) -> Path:
        return Path(unit.annotation_path).parent.parent / "AllImages" / f"{unit.image_id}.bmp"

    def _image_extra(self, unit: Unit) -> dict:
        seg = Path(unit.annotation_path).parent.parent / SEGMENTATION_DIR / f"{unit.image_id}.png"
        return {"segmentation_path": seg if is_file(seg) else None}

    def _parse_object(self, node, where: str, width, height, report: Report) -> SourceObject | None:
        values = {}
        for tag in HBOX_TAGS + RBOX_TAGS:
            text = node.findtext(tag)
            if text is None:
                report.skip(GARBLED_ANNOTATION, where, f"object has no <{tag}>")
                return None
            values[tag] = parse_number(text, f"{where}/{tag}", report)
            if values[tag] is None:
                return None
        hbox = check_hbox(tuple(values[t] for t in HBOX_TAGS), width, height, where, report)
        if hbox is None:
            return None
        rbox = tuple(values[t] for t in RBOX_TAGS)
        class_id = (node.findtext("Class_ID") or "").strip() or None
        extra = {"seg_color": _seg_color(node.findtext("seg_color"), f"{where}/seg_color", report),
                 "class_id": class_id, "class_name": self._fine_classes().get(class_id)}
        bow = [node.findtext(t) for t in ("header_x", "header_y")]
        try:
            extra["bow"] = (float(bow[0]), float(bow[1]))
        except (TypeError, ValueError):
            extra["bow"] = None
        return SourceObject("ship", 0, hbox, polygon=rbox_to_polygon(*rbox), rbox=rbox,
                            difficult=xml_flag(node, "difficult"), truncated=xml_flag(node, "truncated"),
                            where=where, extra=extra)


def _seg_color(text, where: str, report: Report):
    """``"r,g,b"`` -> (r, g, b); empty -> None. A garbled colour is noted and the ship kept without a mask."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        rgb = tuple(int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        report.note(GARBLED_ANNOTATION, where, f"seg_color {text!r} is not 'r,g,b': ship kept without a mask")
        return None
    return rgb


def gt_instance_masks(image: SourceImage) -> list[np.ndarray | None]:
    """Ground-truth masks: pixels of the segmentation image equal to each ship's ``seg_color``.

    None for ships without a colour. Raises :class:`SourceError` naming the file when a coloured
    ship has no segmentation image, or when that image's size differs from the source image.
    """
    colors = [o.extra.get("seg_color") for o in image.objects]
    if all(c is None for c in colors):
        return [None] * len(colors)
    seg_path = image.extra.get("segmentation_path")
    if seg_path is None or not Path(seg_path).is_file():
        raise SourceError(f"{image.annotation_path}: ships have seg_color but there is no "
                          f"{SEGMENTATION_DIR}/{image.image_id}.png")
    seg = open_rgb(seg_path)
    if seg.shape[:2] != (image.height, image.width):
        raise SourceError(f"{seg_path}: segmentation image is {seg.shape[1]}x{seg.shape[0]}, "
                          f"the image is {image.width}x{image.height}")
    return [None if c is None else np.all(seg == np.asarray(c, dtype=np.uint8), axis=-1) for c in colors]
