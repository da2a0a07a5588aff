"""``samrs ablate``: the prompt study of Table 1 (mIoU_I / mIoU_P of Eq. 1 per prompt setting)."""

from __future__ import annotations


def add_arguments(parser) -> None:
    """Options shared by ``samrs ablate`` and ``builders/ablate_hrsc.py``."""
    parser.add_argument("--source", required=True, help="HRSC2016 folder, or a COCO JSON file/folder (--format coco)")
    parser.add_argument("--format", default="hrsc2016", choices=("hrsc2016", "coco"),
                        help="source format (default hrsc2016)")
    parser.add_argument("--split", default="test", help="source split (default test; 'all' = every image)")
    parser.add_argument("--images-dir", default=None, help="COCO only: folder with the image files")
    parser.add_argument("--model", default="facebook/sam-vit-huge",
                        help="Hub id, save_pretrained folder, segment-anything .pth, or tiny-random")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--prompts", default="all",
                        help='"all" (the 15 Table 1 settings) or a comma list, e.g. "H-Box,RH-Box+CP"')
    parser.add_argument("--strict", action="store_true", help="any skipped annotation is an error")
    parser.add_argument("--out", required=True, help="output folder for table1.{md,csv,json} and instances.csv")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ablate",
        help="Table 1 prompt study: SAM masks per prompt setting vs ground-truth masks (HRSC2016 or COCO)",
        description="Label every instance that has a ground-truth mask with each prompt setting (the 15 of "
        "Table 1 by default), encoding each image once, and write table1.md/.csv/.json (beside the "
        "paper's numbers) and instances.csv. Instances without a ground-truth mask, with an empty one, "
        "or COCO crowd regions are counted and left out. Multi-GPU: "
        "`accelerate launch builders/ablate_hrsc.py` with the same options.",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.ablation import main

    main(args)
    return 0
