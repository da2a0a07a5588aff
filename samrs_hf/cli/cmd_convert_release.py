"""``samrs convert-release RELEASE_DIR --subset sota --to HUB_DIR``: official SAMRS zips -> Hub folder.

RELEASE_DIR is the subset's root as unpacked: the flat layout, the release's ``images/`` beside a
``*_segs_init/{gray,color,ins}/`` folder (up to two levels down), or the COCO-JSON variant."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert-release",
        help="convert an official SAMRS release (ins/*.pkl or *_ins_segmentation.json) to the packaged layout",
        description="Reads the release (pickles through samrs_hf.common.safe_load, which "
        "allows only plain data and numpy arrays of the file's own bytes: any other pickle is refused, never run, and "
        "counted as an unsafe-file skip) and writes the same parquet + README layout as `samrs package`.",
    )
    p.add_argument("release_dir", metavar="RELEASE_DIR",
                   help="the subset's root: images beside gray/ and ins/, beside a *_segs_init/ folder holding them "
                   "(e.g. dotav2_1024/trainval/hbox_segs_init), or beside *_ins_segmentation.json files")
    p.add_argument("--images-dir", action="append", default=None, metavar="DIR",
                   help="image folder (repeat for several, e.g. DIOR's JPEGImages-trainval and JPEGImages-test); "
                   "default: the image folders beside the label folder")
    p.add_argument("--labels-dir", default=None, metavar="DIR",
                   help="the label folder holding gray/ (and ins/), e.g. .../trainval/rhbox_segs_init; required "
                   "when the root holds two (hbox_segs_init and rhbox_segs_init)")
    p.add_argument("--variant", default="auto", choices=("auto", "pkl", "coco"),
                   help="instances from ins/*.pkl or from the COCO *_ins_segmentation.json files "
                   "(auto: the pickles when a label folder has ins/)")
    p.add_argument("--subset", required=True, choices=("sota", "sior", "fast"))
    p.add_argument("--to", required=True, metavar="HUB_DIR")
    p.add_argument("--name", default=None, help="dataset name (default: the subset)")
    p.add_argument("--shard-size", default="500MB")
    p.add_argument("--val-fraction", type=float, default=0.05,
                   help="validation share of the hash split, used only when the release has no train.txt / valid.txt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strict", action="store_true", help="fail on the first unusable image or refused pickle instead of skipping it")
    p.add_argument("--no-stats", action="store_true", help="do not draw statistics figures")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.stats import write_stats
    from ..hub.release import convert_release
    from .cmd_package import print_result

    result = convert_release(args.release_dir, args.subset, args.to, name=args.name, shard_size=args.shard_size,
                             val_fraction=args.val_fraction, seed=args.seed, strict=args.strict,
                             stats=None if args.no_stats else write_stats, images_dir=args.images_dir,
                             labels_dir=args.labels_dir, variant=args.variant)
    print_result(result)
    return 0
