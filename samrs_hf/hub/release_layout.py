"""Where the pieces of an official SAMRS release lie, found from the subset's root folder.

The release is downloaded by hand (its hosting refuses scripts) and unpacked wherever the user likes,
in one of these forms (names matched case-insensitively, up to two levels below the root):

- flat: the images, ``gray/``, ``color/`` and ``ins/*.pkl`` in one folder (``samrs build --pkl``);
- SOTA / FAST: ``trainval/images/`` beside a label folder ``trainval/{hbox,rhbox}_segs_init/{gray,color,ins}/``;
- SIOR: ``JPEGImages-trainval/`` and ``JPEGImages-test/`` beside ``hbox_segs_trainvaltest_init/``;
- the authors' later multi-task release: ``trainval/images/`` with COCO JSON instance files
  ``<subset>[_rbb]_{train,valid}_ins_segmentation.json`` and rotated boxes in ``trainval/rbbtxts/``.

Split lists (``train.txt`` / ``valid.txt``) are looked for beside the images. ``--images-dir`` and
``--labels-dir`` replace the search; two label folders under one root are an error naming both.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..build.layout import IMAGE_EXTENSIONS
from ..sources.records import SourceError

GRAY, COLOR, INS = "gray", "color", "ins"
RBBTXTS = "rbbtxts"
IMAGE_FOLDER_PREFERENCE = ("images", "img", "imgs", "image", "jpegimages", "jpegimages-trainval",
                           "jpegimages-test", "trainval")
LABEL_FOLDER = re.compile(r"\w*segs\w*_init", re.IGNORECASE)
"""``hbox_segs_init``, ``rhbox_segs_init``, ``hbox_segs_trainvaltest_init``, ..."""
COCO_JSON = re.compile(r".*_(train|valid|val|test)_ins_segmentation\.json", re.IGNORECASE)
SPLIT_LIST_NAMES = {"train": ("train.txt",), "validation": ("valid.txt", "val.txt")}
VARIANTS = ("auto", "pkl", "coco")
MAX_DEPTH = 2


class ReleaseLayoutError(SourceError):
    """The root does not hold a release in any known layout, or holds more than one."""


@dataclass(frozen=True)
class ReleaseLayout:
    """The pieces of one release, found or given."""

    root: Path
    variant: str
    """``pkl`` (``ins/*.pkl``) or ``coco`` (``*_ins_segmentation.json``)"""
    images: tuple[Path, ...]
    """image folders, in lookup order (the first holding a name wins)"""
    labels: Path | None = None
    """the folder holding ``gray/`` (and ``ins/`` for the pkl variant)"""
    coco_files: tuple[tuple[str, Path], ...] = ()
    """(split, json file) of the COCO variant"""
    rbbtxts: Path | None = None
    split_lists: dict = field(default_factory=dict)
    """split -> list file (``train.txt``, ``valid.txt``)"""

    @property
    def ins(self) -> Path | None:
        return None if self.labels is None else self.labels / INS

    @property
    def gray(self) -> Path | None:
        gray = None if self.labels is None else self.labels / GRAY
        return gray if gray is not None and gray.is_dir() else None


def _subdirs(folder: Path) -> list[Path]:
    """Sub-folders (``scandir``'s cached types: no stat per file in a folder of 100k images)."""
    try:
        with os.scandir(folder) as it:
            return sorted(Path(e.path) for e in it if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return []


def _walk(root: Path, depth: int = MAX_DEPTH):
    """``root`` and its folders up to ``depth`` levels down (label folders' insides excluded)."""
    yield root
    if depth == 0:
        return
    for sub in _subdirs(root):
        if sub.name.lower() not in (GRAY, COLOR, INS):
            yield from _walk(sub, depth - 1)


def is_flat_labels(folder: Path) -> bool:
    return (folder / GRAY).is_dir() and (folder / INS).is_dir()


def has_images(folder: Path) -> bool:
    """Whether the folder directly holds an image file (stops at the first one)."""
    try:
        with os.scandir(folder) as it:
            return any(e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS for e in it)
    except OSError:
        return False


def image_folders(parent: Path, exclude=()) -> list[Path]:
    """Folders of ``parent`` holding images: the usual names first, label folders never."""
    exclude = {p.resolve() for p in exclude}
    found = [p for p in _subdirs(parent) if p.resolve() not in exclude and p.name.lower() not in (GRAY, COLOR, INS)
             and not LABEL_FOLDER.fullmatch(p.name) and has_images(p)]
    rank = {n: i for i, n in enumerate(IMAGE_FOLDER_PREFERENCE)}
    return sorted(found, key=lambda p: (rank.get(p.name.lower(), len(rank)), p.name))


def _label_folders(root: Path) -> list[Path]:
    return [d for d in _walk(root) if is_flat_labels(d) and (d == root or LABEL_FOLDER.fullmatch(d.name))]


def _coco_files(root: Path) -> list[tuple[str, Path]]:
    found = []
    for d in _walk(root):
        for p in sorted(d.glob("*.json")):
            m = COCO_JSON.fullmatch(p.name)
            if m:
                split = {"valid": "validation", "val": "validation"}.get(m.group(1).lower(), m.group(1).lower())
                found.append((split, p))
    return found


def _find_named(folder: Path, names) -> Path | None:
    lower = {n.lower() for n in names}
    try:
        return next((p for p in sorted(folder.iterdir()) if p.name.lower() in lower), None)
    except OSError:
        return None


def _split_lists(*folders: Path) -> dict:
    """``train.txt`` / ``valid.txt`` from the first folder that has either."""
    for folder in folders:
        lists = {s: p for s, names in SPLIT_LIST_NAMES.items() if (p := _find_named(folder, names)) and p.is_file()}
        if lists:
            return lists
    return {}


def _ambiguous(root: Path, what: str, found, option: str) -> ReleaseLayoutError:
    listed = ", ".join(str(p) for p in found)
    return ReleaseLayoutError(f"{root}: {len(found)} {what} found ({listed}); choose one with {option}")


def find_release(root, *, images_dir=None, labels_dir=None, variant: str = "auto") -> ReleaseLayout:
    """The release under ``root``: pickles when a label folder has ``ins/``, else the COCO JSON files."""
    root = Path(root)
    if variant not in VARIANTS:
        raise ReleaseLayoutError(f"--variant: {variant!r} is not one of {', '.join(VARIANTS)}")
    if not root.is_dir():
        raise ReleaseLayoutError(f"{root}: no such folder")
    given_images = [Path(p) for p in ([images_dir] if isinstance(images_dir, (str, Path)) else images_dir or ())]
    for p in given_images:
        if not p.is_dir():
            raise ReleaseLayoutError(f"--images-dir: {p} is not a folder")
    labels = Path(labels_dir) if labels_dir else None
    if labels is not None and not (labels / GRAY).is_dir():
        raise ReleaseLayoutError(f"--labels-dir: {labels} has no gray/ folder")
    if variant != "coco" and labels is None:
        found = _label_folders(root)
        if len(found) > 1:
            raise _ambiguous(root, "label folders", found, "--labels-dir")
        labels = found[0] if found else None
    coco = _coco_files(root) if variant == "coco" or (variant == "auto" and not _has_pkl(labels)) else []
    if variant == "coco" or (coco and not _has_pkl(labels)):
        if not coco:
            raise ReleaseLayoutError(f"{root}: no *_ins_segmentation.json files (COCO variant)")
        splits = [s for s, _ in coco]
        if len(set(splits)) != len(splits):
            raise _ambiguous(root, "COCO files of one split", [p for _, p in coco], "a root holding one set")
        base = coco[0][1].parent
        if labels is None:
            found = [d for d in _walk(base, 1) if d != base and LABEL_FOLDER.fullmatch(d.name) and (d / GRAY).is_dir()]
            if len(found) > 1:
                raise _ambiguous(base, "label folders", found, "--labels-dir")
            labels = found[0] if found else None
        images = given_images or image_folders(base, exclude=[labels] if labels else ())
        rbb = _find_named(base, (RBBTXTS,))
        return ReleaseLayout(root, "coco", tuple(images), labels, tuple(coco), rbb if rbb and rbb.is_dir() else None,
                             _split_lists(base))
    if labels is None:
        raise ReleaseLayoutError(f"{root}: not a SAMRS release folder (needs gray/ and ins/, a *_segs_init/ "
                                 f"folder holding them, or *_ins_segmentation.json files); see --labels-dir")
    # The label folder's siblings are searched only inside the root: a --labels-dir elsewhere reads nothing
    # beside it (images and split lists come from the root, or from --images-dir).
    inside = labels != root and labels.resolve().is_relative_to(root.resolve())
    parent = labels.parent if inside else root
    images = given_images or image_folders(parent, exclude=[labels]) or image_folders(labels)
    return ReleaseLayout(root, "pkl", tuple(images), labels, split_lists=_split_lists(parent, root))


def _has_pkl(labels: Path | None) -> bool:
    return labels is not None and (labels / INS).is_dir() and next((labels / INS).glob("*.pkl"), None) is not None
