"""``samrs stats``: Fig. 5/6 statistics and the Table 2 row of a build or packaged dataset."""

from __future__ import annotations

from dataclasses import dataclass

from ..common.options import option


@dataclass(kw_only=True)
class FolderArgs:
    """The options of the commands that read a build or packaged folder and write files (stats, visualize)."""

    path: str = option(positional=True, metavar="BUILD_OR_HUB_DIR",
                       help="a samrs build folder or a packaged dataset folder")
    out: str = option(help="output folder (figures, tables, PNGs)")
    split: str | None = option(None, help="only this split (default: all, in train/validation/test order)")


HELP = "per-class pixel/instance counts, mask sizes, mask quality and the Table 2 row (PNG + CSV + JSON)"
DESCRIPTION = (
    "Statistics of a `samrs build` output or a `samrs package` folder, as in the paper's Figs. 5-6 and "
    "Table 2: class_pixels_instances.png, mask_sizes.png, per_class.csv, mask_sizes.csv, table2.csv/.md "
    "and stats.json; mask_quality.png/.csv: per-class quantiles of box_iou and fill (mask quality without "
    "ground truth)."
)
OPTIONS = FolderArgs


def run(args: FolderArgs) -> int:
    from ..analysis.stats import write_stats

    stats = write_stats(args.path, args.out, split=args.split, progress=True)
    t2 = stats["table2"]
    print(f"{t2['dataset']}: {t2['images']:,} images, {t2['categories']} classes, {t2['instances']:,} instances, "
          f"{t2['labelled_pixels']:,} labelled pixels, image size {t2['image_size']}"
          + (f", {stats['empty_masks']} empty masks left out" if stats["empty_masks"] else ""))
    print(f"wrote {', '.join(stats['files'].values())} to {args.out}")
    return 0
