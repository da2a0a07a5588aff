"""``samrs visualize``: image | colour semantic map | instance overlay PNGs (paper Figs. 4, 8-10)."""

from __future__ import annotations

from dataclasses import dataclass

from ..common.options import option
from .cmd_stats import FolderArgs


@dataclass(kw_only=True)
class VisualizeArgs(FolderArgs):
    n: int = option(8, help="number of examples (default 8)")
    show_names: bool = option(True, negate="--no-names", help=(
        "draw no class names (dense scenes); names that would overlap are left out anyway"))


HELP = "write image | semantic | instance overlay PNGs of a build or packaged dataset"
DESCRIPTION = (
    "For the first N examples (sorted by name) write one PNG each: the image, the colour semantic map (shared "
    "palette, white unlabelled) and the instances (per-instance colours, contours, boxes, class names), side by "
    "side at the image's own pixel size, each panel titled; a folder made with random SAM weights gets a red "
    "RANDOM WEIGHTS mark."
)
OPTIONS = VisualizeArgs


def run(args: VisualizeArgs) -> int:
    from ..analysis.visualize import visualize

    written = visualize(args.path, args.out, split=args.split, n=args.n, progress=True,
                        show_names=args.show_names)
    print(f"wrote {len(written)} overlay PNG(s) to {args.out}")
    return 0
