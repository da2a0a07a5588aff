"""``samrs package BUILD_DIR [BUILD_DIR ...] --to HUB_DIR``: build folders -> Hub dataset folder."""

from __future__ import annotations

from dataclasses import dataclass

from ..common.options import option


@dataclass(kw_only=True)
class HubFolderArgs:
    """The options of every command that writes a packaged dataset folder (package, convert-release)."""

    to: str = option(metavar="HUB_DIR", help=(
        "output folder: new, empty, or an earlier package (only its own files are replaced)"))
    name: str | None = option(None, help="dataset name (default: the subset, e.g. sota)")
    shard_size: str = option("500MB", help="target parquet shard size (default 500MB)")
    row_group_size: str = option("100MB", help=(
        "largest parquet row group, what a reader holds in memory per open split (default 100MB, datasets' own)"))
    val_fraction: float = option(0.05, help="validation share of source images for the hash split (0.05)")
    seed: int = option(0, help="seed of the split hash (0)")
    strict: bool = option(False, help="fail on the first unusable image or object instead of skipping it")
    stats: bool = option(True, help="do not draw statistics figures")
    min_score: float | None = option(None, metavar="S", help=(
        "drop objects whose SAM score (predicted IoU) is below S (objects without a score are kept)"))
    min_box_iou: float | None = option(None, metavar="T", help=(
        "drop objects whose box_iou (IoU of the mask's tight box with the prompt box) is below T; the semantic "
        "map is painted again where their masks were"))


@dataclass(kw_only=True)
class PackageArgs(HubFolderArgs):
    build_dirs: list[str] = option(positional=True, nargs="+", metavar="BUILD_DIR",
                                   help="outputs of `samrs build` (one subset)")


HELP = "package build folders as parquet shards + README (loads with datasets.load_dataset)"
DESCRIPTION = (
    "Write HUB_DIR/data/<split>-XXXXX-of-YYYYY.parquet (images embedded) and README.md (YAML configs + "
    "dataset_info, dataset card, figures/)."
)
OPTIONS = PackageArgs


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
    drops = result.quality_drops
    if drops is not None and drops.total:
        per_class = ", ".join(f"{result.table.names[c]}: {n}" for c, n in sorted(drops.dropped.items()))
        print(f"dropped {drops.total} objects below {result.quality_filter.describe()} ({per_class}); listed in README.md")


def package_kwargs(args: HubFolderArgs) -> dict:
    """The keyword arguments ``package`` and ``convert_release`` share."""
    from ..analysis.stats import write_stats

    return dict(name=args.name, shard_size=args.shard_size, row_group_size=args.row_group_size,
                val_fraction=args.val_fraction, seed=args.seed,
                strict=args.strict, stats=write_stats if args.stats else None, min_score=args.min_score,
                min_box_iou=args.min_box_iou)


def run(args: PackageArgs) -> int:
    from ..hub.packaging import package

    print_result(package(args.build_dirs, args.to, **package_kwargs(args)))
    return 0
