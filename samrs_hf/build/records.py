"""The one typed record of ``ins/<name>.json``: written by the build writer, read by packaging,
statistics, overlays and the COCO export.

The JSON form is a contract (README, "Output layout"): keys, their order and their types are fixed
here and nowhere else, so a field added later is added once and every reader sees it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..sources.records import SourceError
from .layout import json_bytes

PATCH_KEYS = ("image", "source_image", "offset", "width", "height", "instances")
"""Keys every ``ins/*.json`` has (``split`` came later: older builds lack it)."""


@dataclass
class InstanceRecord:
    """One labelled object in patch pixels (README's ``ins/<name>.json`` instance)."""

    category: str
    label: int
    bbox: list[float]
    """The box given to SAM (H-Box or RH-Box), xyxy; the H-Box for prompts without a box."""
    rbox: list[float] | None
    """The 4 corners (8 floats) where the source has an oriented box."""
    segmentation: dict[str, Any]
    """COCO RLE ``{"size": [h, w], "counts": str}``."""
    area: int
    score: float | None
    truncated: bool = False
    difficult: bool = False
    box_iou: float | None = None
    """IoU of the mask's tight box with ``bbox`` (:mod:`.quality`); None in builds made before it existed."""
    fill: float | None = None
    """Mask area / ``bbox`` area (:mod:`.quality`); None in builds made before it existed."""

    def to_json(self) -> dict:
        return {
            "category": self.category,
            "label": int(self.label),
            "bbox": [float(v) for v in self.bbox],
            "rbox": None if self.rbox is None else [float(v) for v in self.rbox],
            "segmentation": {"size": [int(v) for v in self.segmentation["size"]],
                             "counts": str(self.segmentation["counts"])},
            "area": int(self.area),
            "score": None if self.score is None else float(self.score),
            "truncated": bool(self.truncated),
            "difficult": bool(self.difficult),
            "box_iou": _rounded(self.box_iou),
            "fill": _rounded(self.fill),
        }

    @classmethod
    def from_json(cls, data: dict) -> "InstanceRecord":
        """Raises KeyError/TypeError/ValueError on a garbled instance: readers count it as a skip."""
        if not isinstance(data, dict):
            raise TypeError(f"instance is a {type(data).__name__}, not an object")
        return cls(
            category=data["category"], label=data.get("label"), bbox=data["bbox"], rbox=data.get("rbox"),
            segmentation=data["segmentation"], area=data["area"], score=data.get("score"),
            truncated=bool(data.get("truncated", False)), difficult=bool(data.get("difficult", False)),
            box_iou=_optional_float(data.get("box_iou")), fill=_optional_float(data.get("fill")),
        )


def _rounded(value: float | None) -> float | None:
    """6 decimals: far below float32's resolution near 1, and the files stay short."""
    return None if value is None else round(float(value), 6)


def _optional_float(value) -> float | None:
    """Older builds lack the key (None); a non-number raises, so the instance counts as garbled."""
    return None if value is None else float(value)


@dataclass
class PatchRecord:
    """One labelled image of a build: ``ins/<name>.json``."""

    image: str
    """The patch name (file stem of its image, gray, color and ins files)."""
    source_image: str
    """The full source image id (patch names of over-long ids are shortened; this is not)."""
    offset: tuple[int, int]
    width: int
    height: int
    split: str | None = None
    instances: list[dict] = field(default_factory=list)
    """Raw instance dicts as stored: :meth:`objects` parses them one by one, so one garbled
    instance drops that object only."""

    def to_json(self) -> dict:
        return {
            "image": self.image,
            "source_image": self.source_image,
            "offset": [int(self.offset[0]), int(self.offset[1])],
            "width": int(self.width),
            "height": int(self.height),
            "split": self.split,
            "instances": [i.to_json() if isinstance(i, InstanceRecord) else i for i in self.instances],
        }

    def to_bytes(self) -> bytes:
        """The file's bytes: compact, key order fixed, one line (resume compares files byte for byte)."""
        return json_bytes(self.to_json())

    @classmethod
    def from_json(cls, data: dict, where: str = "") -> "PatchRecord":
        if not isinstance(data, dict):
            raise SourceError(f"{where}: instance file holds a {type(data).__name__}, not an object")
        missing = set(PATCH_KEYS) - set(data)
        if missing:
            raise SourceError(f"{where}: instance file lacks {sorted(missing)}")
        if not isinstance(data["instances"], list):
            raise SourceError(f"{where}: 'instances' is a {type(data['instances']).__name__}, not a list")
        return cls(image=data["image"], source_image=data["source_image"], offset=tuple(data["offset"]),
                   width=data["width"], height=data["height"], split=data.get("split"),
                   instances=list(data["instances"]))

    @classmethod
    def read(cls, path: Path) -> "PatchRecord":
        """Errors name the file."""
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise SourceError(f"{path}: missing instance file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SourceError(f"{path}: corrupt instance file ({exc})") from None
        return cls.from_json(data, str(path))
