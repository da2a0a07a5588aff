"""``samrs export-coco HUB_DIR_OR_BUILD --split train --out instances_train.json``."""

from __future__ import annotations

from dataclasses import dataclass

from ..common.options import option


@dataclass(kw_only=True)
class ExportCocoArgs:
    src: str = option(positional=True, metavar="HUB_DIR_OR_BUILD", help="a packaged dataset folder or a build folder")
    split: str = option("train", help="train / validation / test (default train)")
    out: str = option(help="output JSON path")
    images_dir: str | None = option(None, metavar="DIR", help=(
        "also write the split's image files into DIR (file_name is then relative to DIR), so the JSON and DIR are "
        "a self-contained COCO dataset"))
    val_fraction: float = option(0.05, help="for a build folder: the split rule used by `samrs package` (0.05)")
    seed: int = option(0, help="for a build folder: the split seed (0)")

HELP = "write a COCO instances JSON of one split (RLE masks, unique annotation ids)"
DESCRIPTION = (
    "Reads a packaged dataset folder (data/*.parquet) or a build folder. Category ids are the class ids "
    "(0-based, as in the semantic maps); annotation ids are the dataset's object ids."
)
OPTIONS = ExportCocoArgs


def run(args: ExportCocoArgs) -> int:
    from ..hub.coco_export import export_coco

    counts = export_coco(args.src, args.split, args.out, val_fraction=args.val_fraction, seed=args.seed,
                         images_dir=args.images_dir)
    print(f"wrote {args.out}: {counts['images']} images, {counts['annotations']} annotations"
          + (f" (image files in {args.images_dir})" if args.images_dir else "")
          + (f" ({counts['skipped']} images skipped)" if counts["skipped"] else ""))
    return 0
