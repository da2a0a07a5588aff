"""Class tables of the SAMRS subsets, their shared palette and name normalisation.

The id order is SAMRS's own (BboxToolkit / mmrotate order), not the source datasets' order:
the released ``gray/*.png`` maps store these ids, so every part of the package reads them here.
"""

from __future__ import annotations

from dataclasses import dataclass

IGNORE_INDEX = 255
"""Pixel value of ``gray/`` maps where no mask covers the pixel."""

UNLABELLED_COLOR = (255, 255, 255)

SOTA_CLASSES = (
    "large-vehicle", "swimming-pool", "helicopter", "bridge", "plane", "ship", "soccer-ball-field",
    "basketball-court", "ground-track-field", "small-vehicle", "baseball-diamond", "tennis-court",
    "roundabout", "storage-tank", "harbor", "container-crane", "airport", "helipad",
)

SIOR_CLASSES = (
    "airplane", "airport", "baseballfield", "basketballcourt", "bridge", "chimney",
    "expressway-service-area", "expressway-toll-station", "dam", "golffield", "groundtrackfield",
    "harbor", "overpass", "ship", "stadium", "storagetank", "tenniscourt", "trainstation", "vehicle",
    "windmill",
)

FAST_CLASSES = (
    "A220", "A321", "A330", "A350", "ARJ21", "Baseball-Field", "Basketball-Court", "Boeing737",
    "Boeing747", "Boeing777", "Boeing787", "Bridge", "Bus", "C919", "Cargo-Truck", "Dry-Cargo-Ship",
    "Dump-Truck", "Engineering-Ship", "Excavator", "Fishing-Boat", "Football-Field", "Intersection",
    "Liquid-Cargo-Ship", "Motorboat", "other-airplane", "other-ship", "other-vehicle",
    "Passenger-Ship", "Roundabout", "Small-Car", "Tennis-Court", "Tractor", "Trailer",
    "Truck-Tractor", "Tugboat", "Van", "Warship",
)

HRSC_CLASSES = ("ship",)

# Paper App. A.1 abbreviations, used for compact figure labels.
ABBREVIATIONS = {
    "sota": ("LV", "SP", "HC", "BR", "PL", "SH", "SBF", "BC", "GTF", "SV", "BD", "TC", "RA", "ST",
             "HA", "CC", "AP", "HP"),
    "sior": ("APL", "APO", "BF", "BC", "BR", "CH", "ESA", "ETS", "DA", "GF", "GTF", "HA", "OP", "SH",
             "STD", "STT", "TC", "TS", "VH", "WD"),
    "fast": ("A2", "A3", "A4", "A5", "ARJ", "BF", "BC", "B3", "B4", "B7", "B8", "BR", "BU", "C9", "CT",
             "DCS", "DT", "ES", "EV", "FB", "FF", "IN", "LCS", "MB", "OA", "OS", "OV", "PS", "RA", "SC",
             "TC", "TRT", "TRL", "TUT", "TB", "VA", "WS"),
    "hrsc2016": ("SH",),
}

PALETTE = (
    (0, 127, 255), (0, 63, 0), (0, 127, 63), (0, 63, 255), (0, 0, 127), (0, 127, 127), (0, 0, 63),
    (0, 63, 127), (0, 63, 191), (0, 191, 127), (0, 127, 191), (0, 63, 63), (0, 100, 155), (0, 0, 255),
    (0, 0, 191), (64, 191, 127), (64, 0, 191), (128, 63, 63), (128, 0, 63), (191, 63, 0), (255, 127, 0),
    (63, 0, 0), (127, 63, 0), (63, 255, 0), (0, 127, 0), (127, 127, 0), (63, 0, 63), (63, 127, 0),
    (63, 191, 0), (191, 127, 0), (127, 191, 0), (63, 63, 0), (100, 155, 0), (0, 255, 0), (0, 191, 0),
    (191, 127, 64), (0, 191, 64),
)
"""RGB colour of class id i (shared by all subsets); id 255 is white."""


def normalize_name(name: str) -> str:
    """Canonical lookup key: case-insensitive, spaces and underscores as '-'.

    DIOR spells some names capitalised (``Expressway-toll-station``) and FAIR1M writes
    ``Dry Cargo Ship``; both resolve through this key.
    """
    return "-".join(name.strip().replace("_", " ").split()).lower()


@dataclass(frozen=True)
class ClassTable:
    """One subset's classes: ids are positions in ``names``."""

    subset: str
    names: tuple[str, ...]

    def __post_init__(self):
        keys = [normalize_name(n) for n in self.names]
        if len(set(keys)) != len(keys):
            raise ValueError(f"class table {self.subset!r} has names that normalise to the same key")
        object.__setattr__(self, "_ids", {k: i for i, k in enumerate(keys)})

    def __len__(self) -> int:
        return len(self.names)

    def id_of(self, name: str) -> int | None:
        """Class id of a source name, or None when the subset has no such class."""
        return self._ids.get(normalize_name(name))

    def canonical(self, name: str) -> str | None:
        i = self.id_of(name)
        return None if i is None else self.names[i]

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        return tuple(color_of(i) for i in range(len(self.names)))

    def flat_palette(self) -> list[int]:
        """768-entry palette for Pillow ``P`` images (ids past the table and 255 are white)."""
        pal = [255] * 768
        for i, rgb in enumerate(self.palette):
            pal[3 * i: 3 * i + 3] = rgb
        return pal


CLASS_TABLES = {
    "sota": ClassTable("sota", SOTA_CLASSES),
    "sior": ClassTable("sior", SIOR_CLASSES),
    "fast": ClassTable("fast", FAST_CLASSES),
    "hrsc2016": ClassTable("hrsc2016", HRSC_CLASSES),
}

# The subset each source format feeds by default.
FORMAT_SUBSET = {
    "dota": "sota",
    "dior": "sior",
    "dior-r": "sior",
    "fair1m": "fast",
    "hrsc2016": "hrsc2016",
}


def get_class_table(subset: str) -> ClassTable:
    try:
        return CLASS_TABLES[subset.lower()]
    except KeyError:
        raise KeyError(f"unknown subset {subset!r}; known: {', '.join(CLASS_TABLES)}") from None


def class_table_from_names(subset: str, names) -> ClassTable:
    """A custom table (COCO 'bring your own data'); colours cycle the shared palette."""
    return ClassTable(subset, tuple(names))


def color_of(class_id: int) -> tuple[int, int, int]:
    if class_id == IGNORE_INDEX:
        return UNLABELLED_COLOR
    return PALETTE[class_id % len(PALETTE)]
