"""Source readers: one module per detection format, all yielding :class:`records.SourceImage`.

>>> src = open_source("dota", "DOTA/")          # doctest: +SKIP
>>> for image in src.images(): ...              # lazy, sorted by image_id, re-iterable
>>> src.report.counts()                         # every skip and note found while reading

See :mod:`samrs_hf.sources.readers.base` for ``check_images`` (label-only reads) and the layout notes in
each format's module.
"""

from __future__ import annotations

from pathlib import Path

from ..classes import FORMAT_SUBSET, get_class_table
from ..records import Report, SourceError
from .base import Source
from .coco import CocoSource
from .dior import DiorSource
from .dota import DotaSource
from .fair1m import Fair1mSource
from .hrsc2016 import Hrsc2016Source, gt_instance_masks

FORMATS = ("dota", "dior", "dior-r", "fair1m", "hrsc2016", "coco")

_READERS = {
    "dota": DotaSource,
    "dior": DiorSource,
    "dior-r": DiorSource,
    "fair1m": Fair1mSource,
    "hrsc2016": Hrsc2016Source,
}


def open_source(fmt: str, root, *, strict: bool = False, splits=None, subset: str | None = None,
                check_images: bool = True, images_dir=None, log_problems: bool = True) -> Source:
    """Open a source folder (or a COCO JSON file) of format ``fmt`` without reading it yet.

    ``splits``: source splits to read (None = all present); ``subset``: class table to use instead
    of the format's default (for COCO: the name given to the table built from its categories);
    ``check_images``: False yields images whose file is missing or unreadable (label-only reads);
    ``images_dir``: COCO only, where the image files are; ``log_problems``: False when the caller
    prints ``source.report`` itself (see :class:`records.Report`).
    """
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown source format {fmt!r}; known: {', '.join(FORMATS)}")
    root = Path(root)
    if not root.exists():
        raise SourceError(f"{root}: no such source folder")
    if isinstance(splits, str):
        splits = (splits,)
    splits = tuple(splits) if splits else None
    report = Report(strict=strict, log=log_problems)
    if fmt == "coco":
        return CocoSource.open(root, report=report, splits=splits, subset=subset, check_images=check_images,
                               images_dir=images_dir)
    if images_dir is not None:
        raise ValueError("images_dir applies to the coco format only")
    if not root.is_dir():
        raise SourceError(f"{root}: a {fmt} source must be a folder")
    table = get_class_table(subset or FORMAT_SUBSET[fmt])
    return _READERS[fmt](fmt, root, table, report, check_images, splits)


__all__ = ["FORMATS", "Source", "open_source", "gt_instance_masks"]
