"""``samrs visualize``: image | colour semantic map | instance overlay PNGs (paper Figs. 4, 8-10)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "visualize",
        help="write image | semantic | instance overlay PNGs of a build or packaged dataset",
        description="For the first N examples (sorted by name) write one PNG each: the image, the colour "
        "semantic map (shared palette, white unlabelled) and the instances (per-instance colours, "
        "contours, boxes, class names), side by side at the image's own pixel size.",
    )
    p.add_argument("path", metavar="BUILD_OR_HUB_DIR", help="a samrs build folder or a packaged dataset folder")
    p.add_argument("--out", required=True, help="folder for the PNGs")
    p.add_argument("--split", default=None, help="only this split (default: all, in train/validation/test order)")
    p.add_argument("--n", type=int, default=8, help="number of examples (default 8)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.visualize import visualize

    written = visualize(args.path, args.out, split=args.split, n=args.n, progress=True)
    print(f"wrote {len(written)} overlay PNG(s) to {args.out}")
    return 0
