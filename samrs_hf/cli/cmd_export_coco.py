"""``samrs export-coco HUB_DIR_OR_BUILD --split train --out instances_train.json``."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export-coco", help="write a COCO instances JSON of one split (RLE masks, unique annotation ids)",
        description="Reads a packaged dataset folder (data/*.parquet) or a build folder. Category ids are the "
        "class ids (0-based, as in the semantic maps); annotation ids are the dataset's object ids.")
    p.add_argument("src", metavar="HUB_DIR_OR_BUILD")
    p.add_argument("--split", default="train", help="train / validation / test (default train)")
    p.add_argument("--out", required=True, help="output JSON path")
    p.add_argument("--images-dir", metavar="DIR",
                   help="also write the split's image files into DIR (file_name is then relative to DIR), "
                        "so the JSON and DIR are a self-contained COCO dataset")
    p.add_argument("--val-fraction", type=float, default=0.05,
                   help="for a build folder: the split rule used by `samrs package` (0.05)")
    p.add_argument("--seed", type=int, default=0, help="for a build folder: the split seed (0)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..hub.coco_export import export_coco

    counts = export_coco(args.src, args.split, args.out, val_fraction=args.val_fraction, seed=args.seed,
                         images_dir=args.images_dir)
    print(f"wrote {args.out}: {counts['images']} images, {counts['annotations']} annotations"
          + (f" (image files in {args.images_dir})" if args.images_dir else "")
          + (f" ({counts['skipped']} images skipped)" if counts["skipped"] else ""))
    return 0
