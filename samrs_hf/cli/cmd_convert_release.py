"""``samrs convert-release RELEASE_DIR --subset sota --to HUB_DIR``: official SAMRS zips -> Hub folder."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert-release",
        help="convert an official SAMRS release folder (gray/, color/, ins/*.pkl) to the packaged layout",
        description="Reads the release (pickles through samrs_hf.common.safe_load, which "
        "allows only plain data and numpy arrays of the file's own bytes: any other pickle is refused, never run, and "
        "counted as an unsafe-file skip) and writes the same parquet + README layout as `samrs package`.",
    )
    p.add_argument("release_dir", metavar="RELEASE_DIR", help="folder holding the images, gray/, color/ and ins/")
    p.add_argument("--subset", required=True, choices=("sota", "sior", "fast"))
    p.add_argument("--to", required=True, metavar="HUB_DIR")
    p.add_argument("--name", default=None, help="dataset name (default: the subset)")
    p.add_argument("--shard-size", default="500MB")
    p.add_argument("--val-fraction", type=float, default=0.05)
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
                             stats=None if args.no_stats else write_stats)
    print_result(result)
    return 0
