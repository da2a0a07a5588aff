"""Reader of the official SAMRS release layout (image folder + ``gray/``, ``color/``, ``ins/*.pkl``).

Pickle runs code while loading, so the ``ins/*.pkl`` files are read with
:func:`samrs_hf.common.safe_load.load_pickle` (re-exported here as :func:`safe_load_pickle`): plain data
and numpy arrays of the file's own bytes only. A refused file is an ``unsafe-file`` skip naming the
file and what it asked for (an error under ``strict``), like any other unusable item.

Rows come out in the packaged features (``samrs_hf.hub.features``), so a converted release and a
packaged build are the same kind of dataset. :class:`SamrsReleaseBuilder` wraps the reader as a
``datasets.GeneratorBasedBuilder``, subclassed per subset by ``samrs_hf/loading_scripts/{sota,sior,fast}.py``
(this module never imports them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import datasets
import numpy as np

from . import splits as split_rules
from ..sources.classes import get_class_table
from ..sources.imageio import CorruptImageError, image_size
from ..build.layout import IMAGE_EXTENSIONS, is_build_dir, read_report
from .checks import instance_ok, make_object
from .features import FIRST_OBJECT_ID, dataset_example
from .rows import Row
from ..sources.records import (
    CORRUPT_IMAGE,
    GARBLED_ANNOTATION,
    MISSING_IMAGE,
    SIZE_MISMATCH,
    UNREADABLE_FILE,
    UNSAFE_FILE,
    Report,
    SourceError,
)
from ..common.safe_load import CorruptPickleError, UnsafePickleError
from ..common.safe_load import load_pickle as safe_load_pickle

GRAY, COLOR, INS = "gray", "color", "ins"
IMAGE_FOLDER_PREFERENCE = ("images", "img", "imgs", "image", "JPEGImages", "trainval")
ID_STRIDE = 2**20
"""Object ids are ``item_index * ID_STRIDE + k + FIRST_OBJECT_ID``: unique over the release, whatever the split."""
DIOR_FIRST_TEST_ID = 11726

# ------------------------------------------------------------------------------------------ layout

def image_folders(root: Path) -> list[Path]:
    """Folders that may hold the images: the usual names first, then any other non-label folder."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and p.name not in (GRAY, COLOR, INS)
                     and not p.name.startswith("."))
    rank = {n.lower(): i for i, n in enumerate(IMAGE_FOLDER_PREFERENCE)}
    return sorted(subdirs, key=lambda p: (rank.get(p.name.lower(), len(rank)), p.name))


def find_release_image(folders: list[Path], name: str) -> Path | None:
    for folder in folders:
        for ext in IMAGE_EXTENSIONS:
            p = folder / f"{name}{ext}"
            if p.is_file():
                return p
    return None


def source_of(name: str, subset: str) -> tuple[str, str | None]:
    """(source image id, source split) from a release file name.

    BboxToolkit patches are ``<source>__<size>__<x>___<y>``; DIOR images 11726-23463 are its test set.
    """
    source = name.split("__")[0]
    if subset == "sior" and source.isdigit() and int(source) >= DIOR_FIRST_TEST_ID:
        return source, "test"
    return source, None


def release_names(root) -> list[str]:
    root = Path(root)
    if not (root / INS).is_dir() or not (root / GRAY).is_dir():
        raise SourceError(f"{root}: not a SAMRS release folder (needs gray/ and ins/)")
    names = sorted(p.stem for p in (root / INS).glob("*.pkl"))
    if not names:
        raise SourceError(f"{root / INS}: no *.pkl instance files (a `samrs build` without --pkl? use `samrs package`)")
    return names


def _box(entry: dict):
    if entry.get("bbox") is not None:
        return [float(v) for v in np.asarray(entry["bbox"], dtype=np.float64).reshape(-1)[:4]]
    if entry.get("rhbox") is not None:
        return [float(v) for v in np.asarray(entry["rhbox"], dtype=np.float64).reshape(-1)[:4]]
    corners = np.asarray(entry["rbox"], dtype=np.float64).reshape(4, 2)
    return [*corners.min(0).tolist(), *corners.max(0).tolist()]


def _objects(entries, table, w: int, h: int, first_id: int, where: str, report: Report) -> list[dict] | None:
    from pycocotools import mask as mask_utils

    if not isinstance(entries, (list, tuple)):
        report.skip(GARBLED_ANNOTATION, where, f"expected a list of instances, got {type(entries).__name__}")
        return None
    if len(entries) >= ID_STRIDE:
        raise SourceError(f"{where}: {len(entries)} instances exceed the id stride {ID_STRIDE}")
    objects = []
    for k, entry in enumerate(entries):
        at = f"{where}:[{k}]"
        try:
            category = entry.get("category")
            class_id = table.id_of(str(category)) if category is not None else int(entry["label"])
            rle = entry["mask"]
            if not instance_ok(table, class_id, category, rle, (w, h), at, report):
                return None
            counts = rle["counts"]
            area = entry.get("size")
            if area is None:
                area = mask_utils.area({"size": [h, w], "counts": counts.encode() if isinstance(counts, str) else counts})
            rbox = entry.get("rbox")
            rbox = None if rbox is None else np.asarray(rbox, dtype=np.float64).reshape(-1).tolist()
            if rbox is not None and len(rbox) != 8:
                raise ValueError(f"rbox has {len(rbox)} values")
            objects.append(make_object(first_id + k, class_id, _box(entry), rbox, rle, int(area),
                                       entry.get("score"), entry.get("truncated")))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            report.skip(GARBLED_ANNOTATION, at, f"bad instance ({exc!r})")
            return None
    return objects


@dataclass(frozen=True)
class ReleaseItem:
    index: int
    """Position in the sorted release: fixes the object ids whatever split is read."""
    name: str
    source_image: str
    split: str


def plan_release(root, subset: str, *, val_fraction: float = 0.05, seed: int = 0,
                 report: Report | None = None) -> list[ReleaseItem]:
    """Every release image with its split, from names alone (plus ``ins/<name>.json`` when a
    ``samrs build --pkl`` folder provides it): cheap, no pickle is opened."""
    import json

    root = Path(root)
    report = report if report is not None else Report()
    items = []
    for index, name in enumerate(release_names(root)):
        source, source_split = source_of(name, subset)
        sidecar = root / INS / f"{name}.json"
        if sidecar.is_file():
            try:
                meta = json.loads(sidecar.read_text(encoding="utf-8"))
                source, source_split = str(meta.get("source_image", source)), meta.get("split", source_split)
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
                report.skip(GARBLED_ANNOTATION, str(sidecar), f"corrupt instance file ({exc})")
                continue
            except OSError as exc:
                report.skip(UNREADABLE_FILE, str(sidecar), f"cannot read the instance file ({exc.strerror or exc})")
                continue
        split = split_rules.assign_split(source, source_split, val_fraction=val_fraction, seed=seed)
        items.append(ReleaseItem(index, name, source, split))
    return items


def read_release_item(root, item: ReleaseItem, subset: str, report: Report) -> Row | None:
    """The row of one planned item, or None (counted in ``report``)."""
    root = Path(root)
    table = get_class_table(subset)
    ins_path = root / INS / f"{item.name}.pkl"
    where = str(ins_path)
    gray = root / GRAY / f"{item.name}.png"
    folders = image_folders(root)
    image = find_release_image(folders, item.name)
    if image is None:
        report.skip(MISSING_IMAGE, where, f"no image named {item.name} in {', '.join(f.name for f in folders) or root}")
        return None
    try:
        w, h = image_size(gray)
        if image_size(image) != (w, h):
            report.skip(SIZE_MISMATCH, where, f"{image} is {image_size(image)}, {gray} is {(w, h)}")
            return None
    except (CorruptImageError, FileNotFoundError, OSError) as exc:
        report.skip(CORRUPT_IMAGE, where, f"unreadable image or gray map: {exc}")
        return None
    try:
        entries = safe_load_pickle(ins_path)
    except UnsafePickleError as exc:
        report.skip(UNSAFE_FILE, where, str(exc).removeprefix(f"{ins_path}: "))
        return None
    except CorruptPickleError as exc:
        report.skip(GARBLED_ANNOTATION, where, str(exc).removeprefix(f"{ins_path}: "))
        return None
    except OSError as exc:
        report.skip(UNREADABLE_FILE, where, f"cannot read the instance file ({exc.strerror or exc})")
        return None
    objects = _objects(entries, table, w, h, item.index * ID_STRIDE + FIRST_OBJECT_ID, where, report)
    if objects is None:
        return None
    example = dataset_example(image={"bytes": image.read_bytes(), "path": image.name},
                              semantic={"bytes": gray.read_bytes(), "path": gray.name}, objects=objects,
                              name=item.name, source_image=item.source_image, width=w, height=h, subset=subset)
    return Row(item.split, example, where)


def release_splits(root, subset: str, *, val_fraction: float = 0.05, seed: int = 0,
                   report: Report | None = None) -> dict[str, list[ReleaseItem]]:
    """The planned items per split, only splits that have images (an empty one has no data file)."""
    plan = plan_release(root, subset, val_fraction=val_fraction, seed=seed, report=report)
    by_split = {s: [item for item in plan if item.split == s] for s in split_rules.SPLITS}
    return {s: items for s, items in by_split.items() if items}


def release_examples(root, items, subset: str, report: Report) -> Iterator[tuple[str, dict]]:
    """``(file_name, example)`` of the usable items, in order: what the builder and the converter both write."""
    for item in items:
        row = read_release_item(root, item, subset, report)
        if row is not None:
            yield row.example["file_name"], row.example


# ----------------------------------------------------------------------------------------- builder

class SamrsReleaseConfig(datasets.BuilderConfig):
    def __init__(self, *args, val_fraction: float = 0.05, seed: int = 0, strict: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.val_fraction = val_fraction
        self.seed = seed
        self.strict = strict


class SamrsReleaseBuilder(datasets.GeneratorBasedBuilder):
    """Official SAMRS release folder (``data_dir``) -> train / validation / test in our features."""

    SUBSET: str = ""
    BUILDER_CONFIG_CLASS = SamrsReleaseConfig
    VERSION = datasets.Version("1.0.0")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.report = Report(strict=self.config.strict)

    def _info(self):
        from .card import CITATION
        from .features import samrs_features

        return datasets.DatasetInfo(
            description=f"SAMRS {self.SUBSET.upper()} (official release layout, read with a restricted unpickler)",
            features=samrs_features(self.SUBSET), citation=CITATION,
            homepage="https://github.com/ViTAE-Transformer/SAMRS",
        )

    def _split_generators(self, dl_manager):
        if not self.config.data_dir:
            raise ValueError(f"{type(self).__name__}: pass data_dir=<SAMRS release folder>")
        root = str(Path(self.config.data_dir))
        by_split = release_splits(root, self.SUBSET, val_fraction=self.config.val_fraction, seed=self.config.seed,
                                  report=self.report)
        return [datasets.SplitGenerator(name=s, gen_kwargs={"root": root, "items": items})
                for s, items in by_split.items()]

    def _generate_examples(self, root, items):
        yield from release_examples(root, items, self.SUBSET, self.report)


def convert_release(root, subset: str, to, *, name: str | None = None, shard_size="500MB",
                    val_fraction: float = 0.05, seed: int = 0, strict: bool = False, progress: bool = True,
                    stats=None):
    """``samrs convert-release``: release folder -> the same parquet + README layout as ``package``."""
    from tqdm.auto import tqdm

    from .packaging import write_hub_dir

    root = Path(root)
    report = Report(strict=strict)
    by_split = release_splits(root, subset, val_fraction=val_fraction, seed=seed, report=report)

    def rows():
        bar = tqdm(total=sum(map(len, by_split.values())), desc=f"converting {root.name}", unit="img",
                   disable=not progress)
        for split, items in by_split.items():
            for file_name, example in release_examples(root, items, subset, report):
                bar.update(1)
                yield Row(split, example, file_name)
        bar.close()

    if is_build_dir(root):  # a `samrs build --pkl` folder: its report says which model made the masks
        info = dict(read_report(root), path=str(root))
    else:
        info = {"path": str(root), "format": "samrs-release", "prompt": "as released",
                "model": {"spec": "SAM ViT-H (sam_vit_h_4b8939.pth, official release)", "random": False}}
    return write_hub_dir(rows(), to, name=name or subset, table=get_class_table(subset), builds=[info],
                         report=report, shard_size=shard_size, val_fraction=val_fraction, seed=seed, stats=stats)
