"""``samrs package BUILD_DIR [BUILD_DIR ...] --to HUB_DIR``: build folders -> Hub dataset folder."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "package",
        help="package build folders as parquet shards + README (loads with datasets.load_dataset)",
        description="Write HUB_DIR/data/<split>-XXXXX-of-YYYYY.parquet (images embedded) and README.md "
        "(YAML configs + dataset_info, dataset card, figures/).",
    )
    p.add_argument("build_dirs", nargs="+", metavar="BUILD_DIR", help="outputs of `samrs build` (one subset)")
    p.add_argument("--to", required=True, metavar="HUB_DIR",
                   help="output folder: new, empty, or an earlier package (only its own files are replaced)")
    p.add_argument("--name", default=None, help="dataset name (default: the builds' subset, e.g. sota)")
    p.add_argument("--shard-size", default="500MB", help="target parquet shard size (default 500MB)")
    p.add_argument("--val-fraction", type=float, default=0.05, help="validation share of source images (0.05)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split hash (0)")
    p.add_argument("--strict", action="store_true",
                   help="fail on the first unusable image or object instead of skipping it")
    p.add_argument("--no-stats", action="store_true", help="do not draw statistics figures")
    p.set_defaults(func=run)


def print_result(result) -> None:
    splits = ", ".join(f"{s}: {n}" for s, n in result.splits.items())
    print(f"packaged {result.num_rows} images of {result.table.subset} into {result.to} ({splits})")
    for name, skips in result.build_skips():
        if skips is not None and skips.total:
            print(f"the build {name} had skipped {skips.describe()}")
    if result.skips.total:
        print(f"packaging skipped {result.skips.describe()}; listed in README.md")
        for p in result.report.skips[:10]:
            print(f"  {p}")


def run(args) -> int:
    from ..analysis.stats import write_stats
    from ..hub.packaging import package

    result = package(args.build_dirs, args.to, name=args.name, shard_size=args.shard_size,
                     val_fraction=args.val_fraction, seed=args.seed, strict=args.strict, stats=None if args.no_stats else write_stats)
    print_result(result)
    return 0
