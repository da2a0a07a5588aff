"""``samrs inspect``: counts, sizes, planned patches and every problem of a source, before building."""

from __future__ import annotations

import json

from ..sources.readers import FORMATS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="summarise a source dataset: classes, images, sizes, patches, problems",
        description="Read a source dataset the way `samrs build` would and report per-class object counts, "
                    "image counts and sizes, the patches the tiling would produce, and every problem found "
                    "(grouped by kind, with file:line or file:element). Exit code 2 with --strict when a "
                    "skip occurs.",
    )
    p.add_argument("source", metavar="SOURCE_DIR", help="source folder (COCO: a folder or the instances JSON)")
    p.add_argument("--format", required=True, choices=FORMATS, help="source format")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--strict", action="store_true", help="stop with an error (exit 2) at the first skip")
    p.add_argument("--splits", nargs="+", metavar="SPLIT",
                   help="source splits to read (dota: train val ...; dior: trainval test; fair1m: train "
                        "validation; hrsc2016: ImageSets names; coco: JSON names); default: all present")
    pixels = p.add_mutually_exclusive_group()
    pixels.add_argument("--labels-only", action="store_true",
                        help="yield annotations whose image is missing or unreadable (noted, not skipped); "
                             "sizes then come from the annotation where it has one")
    pixels.add_argument("--verify", action="store_true",
                        help="decode every image in full (one thread per core): truncated or corrupt pixel "
                             "data is a corrupt-image skip (default: headers only)")
    p.add_argument("--subset", help="class table name (coco: name of the table built from the categories)")
    p.add_argument("--images-dir", help="coco: folder holding the image files")
    p.add_argument("--tile-size", type=int, metavar="PX",
                   help="override the format's window size (0 = uncut); default: SAMRS's preset")
    p.add_argument("--gap", type=int, metavar="PX", help="override the overlap between windows")
    p.add_argument("--iof-thr", type=float, metavar="F", help="override the share of an object a window must hold")
    p.add_argument("--max-problems", type=int, default=0, metavar="N",
                   help="text output: list at most N problems per kind (default 0 = all)")
    p.set_defaults(func=run)


def run(args) -> int:
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
