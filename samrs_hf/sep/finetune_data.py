"""Fine-tuning sets of the paper (App. A.6): ISPRS Potsdam and iSAID, read in their release layouts.

Potsdam: ``top_potsdam_<a>_<b>_RGB.tif`` tiles (``2_Ortho_RGB``) and colour labels
``top_potsdam_<a>_<b>_label.tif`` (``5_Labels_all``; ``..._label_noBoundary.tif`` from
``5_Labels_all_noBoundary`` is used when the full labels are absent), anywhere under the root.
Six ISPRS colours; clutter (red) and the black boundary of the eroded labels are ignored (255),
as in the paper. 24 train / 14 test tiles (mmseg's split), 512 crops with stride 320.

iSAID: ``<split>/images/P0000.png`` (DOTA images) with
``<split>/Semantic_masks/images/P0000_instance_color_RGB.png`` (the iSAID devkit layout), or the
mmseg-converted ``img_dir/<split>/*.png`` + ``ann_dir/<split>/*_instance_color_RGB.png`` (ids
0..15). 15 foreground classes; background is ignored. 896 crops with stride 512.

Crops are cut once per tile and cached as PNGs (image + class-id map), like mmseg's converters,
so training never decodes a 6000x6000 tile per sample.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..sources.classes import IGNORE_INDEX
from ..sources.imageio import image_size, open_rgb
from ..sources.records import MISSING_ANNOTATION, SIZE_MISMATCH, Report, SourceError

POTSDAM_CLASSES = ("impervious_surface", "building", "low_vegetation", "tree", "car")
POTSDAM_COLOURS = {(255, 255, 255): 0, (0, 0, 255): 1, (0, 255, 255): 2, (0, 255, 0): 3, (255, 255, 0): 4}
POTSDAM_IGNORED_COLOURS = ((255, 0, 0), (0, 0, 0))  # clutter/background, eroded boundary
POTSDAM_SPLITS = {
    "train": ("2_10", "2_11", "2_12", "3_10", "3_11", "3_12", "4_10", "4_11", "4_12", "5_10", "5_11", "5_12",
              "6_10", "6_11", "6_12", "6_7", "6_8", "6_9", "7_10", "7_11", "7_12", "7_7", "7_8", "7_9"),
    "test": ("2_13", "2_14", "3_13", "3_14", "4_13", "4_14", "4_15", "5_13", "5_14", "5_15", "6_13", "6_14",
             "6_15", "7_13"),
}

ISAID_CLASSES = ("ship", "storage_tank", "baseball_diamond", "tennis_court", "basketball_court",
                 "ground_track_field", "bridge", "large_vehicle", "small_vehicle", "helicopter", "swimming_pool",
                 "roundabout", "soccer_ball_field", "plane", "harbor")
# iSAID devkit colours of ids 1..15 (0 = background (0, 0, 0), ignored); our ids are one less.
ISAID_COLOURS = {c: i for i, c in enumerate((
    (0, 0, 63), (0, 63, 63), (0, 63, 0), (0, 63, 127), (0, 63, 191), (0, 63, 255), (0, 127, 63), (0, 127, 127),
    (0, 0, 127), (0, 0, 191), (0, 0, 255), (0, 191, 127), (0, 127, 191), (0, 127, 255), (0, 100, 155)))}

TASKS = {
    "potsdam": {"classes": POTSDAM_CLASSES, "crop": 512, "stride": 320, "splits": ("train", "test")},
    "isaid": {"classes": ISAID_CLASSES, "crop": 896, "stride": 512, "splits": ("train", "val")},
}

UNKNOWN_COLOUR = "unknown-label-colour"


@dataclass(frozen=True)
class Tile:
    name: str
    image_path: Path
    label_path: Path
    split: str


@dataclass(frozen=True)
class Crop:
    tile: Tile
    box: tuple[int, int, int, int]
    """(x0, y0, x1, y1); may reach past a small image (padded: pixels 0, labels 255)."""

    @property
    def name(self) -> str:
        x0, y0, x1, y1 = self.box
        return f"{self.tile.name}_{x0}_{y0}_{x1}_{y1}"


def axis_starts(length: int, size: int, stride: int) -> list[int]:
    """Window starts along one axis: every ``stride``, the last window flush with the end."""
    if length <= size:
        return [0]
    return sorted(set(range(0, length - size, stride)) | {length - size})


def windows(width: int, height: int, size: int, stride: int) -> list[tuple[int, int, int, int]]:
    return [(x, y, x + size, y + size) for y in axis_starts(height, size, stride)
            for x in axis_starts(width, size, stride)]


def colour_to_ids(rgb: np.ndarray, colours: dict, ignored=()) -> tuple[np.ndarray, int]:
    """Class ids of a colour label image and the number of pixels of colours in neither table."""
    key = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    out = np.full(key.shape, IGNORE_INDEX, dtype=np.uint8)
    known = np.zeros(key.shape, dtype=bool)
    for (r, g, b), i in colours.items():
        m = key == ((r << 16) | (g << 8) | b)
        out[m] = i
        known |= m
    for r, g, b in ignored:
        known |= key == ((r << 16) | (g << 8) | b)
    return out, int((~known).sum())


# -- tile discovery -------------------------------------------------------------------------------
_POTSDAM_RGB = re.compile(r"top_potsdam_(\d+)_(\d+)_RGB\.tif$", re.IGNORECASE)


def potsdam_tiles(root, split: str, report: Report | None = None) -> list[Tile]:
    """Tiles of ``split`` ("train"/"test"; "val" = "test" as in mmseg) found under ``root``."""
    report = report if report is not None else Report()
    split = "test" if split == "val" else split
    if split not in POTSDAM_SPLITS:
        raise ValueError(f"Potsdam split must be train or test, got {split!r}")
    root = Path(root)
    labels = {p.name.lower(): p for p in root.rglob("top_potsdam_*_label*.tif")}
    tiles = []
    for img in sorted(root.rglob("top_potsdam_*_RGB.tif")):
        m = _POTSDAM_RGB.search(img.name)
        tile_id = f"{m.group(1)}_{m.group(2)}"
        if tile_id not in POTSDAM_SPLITS[split]:
            continue
        stem = f"top_potsdam_{tile_id}_label"
        label = labels.get(f"{stem}.tif") or labels.get(f"{stem}_noboundary.tif")
        if label is None:
            report.skip(MISSING_ANNOTATION, str(img), f"no {stem}.tif or {stem}_noBoundary.tif under {root}")
            continue
        tiles.append(Tile(tile_id, img, label, split))
    if not tiles:
        raise SourceError(f"{root}: no Potsdam {split} tiles (top_potsdam_<a>_<b>_RGB.tif with labels) found")
    return tiles


def isaid_tiles(root, split: str, report: Report | None = None) -> list[Tile]:
    """Images of ``split`` ("train"/"val") in the iSAID devkit or the mmseg-converted layout."""
    report = report if report is not None else Report()
    root = Path(root)
    if (root / "img_dir" / split).is_dir():
        image_dir, label_dir = root / "img_dir" / split, root / "ann_dir" / split
    else:
        image_dir, label_dir = root / split / "images", root / split / "Semantic_masks" / "images"
    if not image_dir.is_dir():
        raise SourceError(f"{root}: no iSAID {split} images (expected {split}/images/ or img_dir/{split}/)")
    tiles = []
    for img in sorted(image_dir.glob("*.png")):
        if "_instance_" in img.name:
            continue
        label = label_dir / f"{img.stem}_instance_color_RGB.png"
        if not label.is_file():
            report.skip(MISSING_ANNOTATION, str(img), f"missing {label}")
            continue
        tiles.append(Tile(img.stem, img, label, split))
    if not tiles:
        raise SourceError(f"{image_dir}: no iSAID images with *_instance_color_RGB.png labels")
    return tiles


def find_tiles(task: str, root, split: str, report: Report | None = None) -> list[Tile]:
    if task == "potsdam":
        return potsdam_tiles(root, split, report)
    if task == "isaid":
        return isaid_tiles(root, split, report)
    raise ValueError(f"unknown task {task!r}: potsdam or isaid")


def read_label(task: str, path: Path, report: Report) -> np.ndarray:
    """HxW uint8 class ids (255 ignored) of one label file."""
    from PIL import Image

    with Image.open(path) as im:
        if task == "isaid" and im.mode in ("L", "P"):  # mmseg-converted ids 0..15, 0 = background
            ids = np.asarray(im).astype(np.int16) - 1
            return np.where((ids < 0) | (ids >= len(ISAID_CLASSES)), IGNORE_INDEX, ids).astype(np.uint8)
        rgb = np.asarray(im.convert("RGB"))
    if task == "potsdam":
        ids, unknown = colour_to_ids(rgb, POTSDAM_COLOURS, POTSDAM_IGNORED_COLOURS)
    else:
        ids, unknown = colour_to_ids(rgb, ISAID_COLOURS, ((0, 0, 0),))
    if unknown:
        report.note(UNKNOWN_COLOUR, str(path), f"{unknown} pixels of colours outside the {task} palette set to 255")
    return ids


# -- crops ------------------------------------------------------------------------------------------
def plan_crops(task: str, tiles: list[Tile], size: int | None = None, stride: int | None = None,
               report: Report | None = None) -> list[Crop]:
    """Sliding-window crops of every tile (image/label sizes checked from headers)."""
    report = report if report is not None else Report()
    size = size or TASKS[task]["crop"]
    stride = stride or TASKS[task]["stride"]
    crops = []
    for tile in tiles:
        w, h = image_size(tile.image_path)
        if image_size(tile.label_path) != (w, h):
            report.skip(SIZE_MISMATCH, str(tile.label_path),
                        f"label is {image_size(tile.label_path)}, image {tile.image_path.name} is {(w, h)}")
            continue
        crops.extend(Crop(tile, box) for box in windows(w, h, size, stride))
    return crops


def select_fraction(crops: list[Crop], fraction: float | None, seed: int = 0) -> list[Crop]:
    """Deterministic subset of ``round(fraction * n)`` crops (>= 1) for the low-data study."""
    if fraction is None:
        return list(crops)
    if not 0 < fraction <= 1:  # 5 is a typo for 5 %, not "all crops"
        raise ValueError(f"--train-fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return list(crops)
    ordered = sorted(crops, key=lambda c: c.name)
    k = max(1, round(fraction * len(ordered)))
    return sorted(random.Random(seed).sample(ordered, k), key=lambda c: c.name)


def materialize(task: str, crops: list[Crop], out_dir, report: Report | None = None) -> list[tuple[Path, Path]]:
    """Write each crop as ``images/<name>.png`` + ``labels/<name>.png`` (ids) once; returns the pairs."""
    from PIL import Image
    from tqdm.auto import tqdm

    report = report if report is not None else Report()
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)
    pairs, by_tile = [], {}
    for c in crops:
        by_tile.setdefault(c.tile, []).append(c)
    for tile, tile_crops in tqdm(by_tile.items(), desc=f"{task} crops", leave=False):
        todo = [c for c in tile_crops if not (out_dir / "labels" / f"{c.name}.png").is_file()]
        if todo:
            image = open_rgb(tile.image_path)
            labels = read_label(task, tile.label_path, report)
            for c in todo:
                img, lab = _cut(image, labels, c.box)
                Image.fromarray(img).save(out_dir / "images" / f"{c.name}.png")
                Image.fromarray(lab, mode="L").save(out_dir / "labels" / f"{c.name}.png")
        pairs.extend((out_dir / "images" / f"{c.name}.png", out_dir / "labels" / f"{c.name}.png") for c in tile_crops)
    return pairs


def _cut(image: np.ndarray, labels: np.ndarray, box):
    from .data import crop_or_pad

    x0, y0, x1, y1 = box
    return crop_or_pad(image, labels, x1 - x0, y0, x0)


class CropDataset:
    """Materialised crops as tensors: augmented (train) or as they are (evaluation)."""

    def __init__(self, pairs, crop_size: int, mean, std, train: bool, seed: int = 0):
        self.pairs, self.crop_size, self.mean, self.std = list(pairs), crop_size, mean, std
        self.train, self.seed = train, seed

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, key):
        from PIL import Image
        import torch

        from .data import augment, to_tensor

        # Training keys come from ProportionalBatchSampler: (subset, index, chunk, slot).
        _, index, chunk, slot = key if isinstance(key, tuple) else (0, key, 0, 0)
        img_path, lab_path = self.pairs[index]
        with Image.open(img_path) as im, Image.open(lab_path) as lab:
            im.load()
            lab.load()
            if self.train:
                rng = np.random.default_rng([self.seed, chunk, slot, 7919])
                x, y = augment(im, lab, self.crop_size, rng)
            else:
                x = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
                y = np.asarray(lab, dtype=np.int64)
        return to_tensor(x, self.mean, self.std), torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))


def load_task(task: str, root, split: str, cache_dir, *, fraction: float | None = None, seed: int = 0,
              report: Report | None = None, size: int | None = None, stride: int | None = None):
    """Find, crop (cached) and return ``(pairs, class_names)`` for one split of a fine-tuning task."""
    report = report if report is not None else Report()
    tiles = find_tiles(task, root, split, report)
    crops = select_fraction(plan_crops(task, tiles, size, stride, report), fraction, seed)
    pairs = materialize(task, crops, Path(cache_dir) / task / split, report)
    return pairs, list(TASKS[task]["classes"])
