"""``samrs inspect``: counts, sizes, planned patches and every problem of a source, before building."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..common.options import option
from ..sources.readers import FORMATS


@dataclass(kw_only=True)
class InspectArgs:
    source: str = option(positional=True, metavar="SOURCE_DIR",
                         help="source folder (COCO: a folder or the instances JSON)")
    format: str = option(choices=FORMATS, help="source format")
    json: bool = option(False, help="print the report as JSON")
    strict: bool = option(False, help="stop with an error (exit 2) at the first skip")
    splits: list[str] | None = option(None, metavar="SPLIT", help=(
        "source splits to read (dota: train val ...; dior: trainval test; fair1m: train validation; hrsc2016: "
        "ImageSets names; coco: JSON names); default: all present"))
    labels_only: bool = option(False, exclusive="pixels", help=(
        "yield annotations whose image is missing or unreadable (noted, not skipped); sizes then come from the "
        "annotation where it has one"))
    verify: bool = option(False, exclusive="pixels", help=(
        "decode every image in full (one thread per core): truncated or corrupt pixel data is a corrupt-image "
        "skip (default: headers only)"))
    subset: str | None = option(None, help="class table name (coco: name of the table built from the categories)")
    images_dir: str | None = option(None, help="coco: folder holding the image files")
    tile_size: int | None = option(None, metavar="PX",
                                   help="override the format's window size (0 = uncut); default: SAMRS's preset")
    gap: int | None = option(None, metavar="PX", help="override the overlap between windows")
    iof_thr: float | None = option(None, metavar="F", help="override the share of an object a window must hold")
    max_problems: int = option(0, metavar="N",
                               help="text output: list at most N problems per kind (default 0 = all)")


HELP = "summarise a source dataset: classes, images, sizes, patches, problems"
DESCRIPTION = (
    "Read a source dataset the way `samrs build` would and report per-class object counts, image counts "
    "and sizes, the patches the tiling would produce, and every problem found (grouped by kind, with "
    "file:line or file:element). Exit code 2 with --strict when a skip occurs."
)
OPTIONS = InspectArgs


def run(args: InspectArgs) -> int:
    from ..sources.inspection import format_inspection, inspect_source
    from ..sources.readers import open_source
    from ..sources.tiling import tiling_config

    cfg = tiling_config(args.format, args.tile_size, args.gap, args.iof_thr)
    # The report below lists every problem: the reader does not log them a second time.
    source = open_source(args.format, args.source, strict=args.strict, splits=args.splits, subset=args.subset,
                         check_images=not args.labels_only, images_dir=args.images_dir, log_problems=False)
    result = inspect_source(source, cfg, progress=not args.json, verify=args.verify)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_inspection(result, args.max_problems))
    return 0
