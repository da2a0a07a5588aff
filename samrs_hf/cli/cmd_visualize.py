"""``samrs visualize``: image | colour semantic map | instance overlay PNGs (paper Figs. 4, 8-10)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "visualize",
        help="write image | semantic | instance overlay PNGs of a build or packaged dataset",
        description="For the first N examples (sorted by name) write one PNG each: the image, the colour "
        "semantic map (shared palette, white unlabelled) and the instances (per-instance colours, "
        "contours, boxes, class names), side by side at the image's own pixel size, each panel titled; a "
        "folder made with random SAM weights gets a red RANDOM WEIGHTS mark.",
    )
    p.add_argument("path", metavar="BUILD_OR_HUB_DIR", help="a samrs build folder or a packaged dataset folder")
    p.add_argument("--out", required=True, help="folder for the PNGs")
    p.add_argument("--split", default=None, help="only this split (default: all, in train/validation/test order)")
    p.add_argument("--n", type=int, default=8, help="number of examples (default 8)")
    p.add_argument("--no-names", dest="show_names", action="store_false",
                   help="draw no class names (dense scenes); names that would overlap are left out anyway")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.visualize import visualize

    written = visualize(args.path, args.out, split=args.split, n=args.n, progress=True,
                        show_names=args.show_names)
    print(f"wrote {len(written)} overlay PNG(s) to {args.out}")
    return 0
