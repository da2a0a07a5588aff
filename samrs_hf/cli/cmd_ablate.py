"""``samrs ablate``: the prompt study of Table 1 (mIoU_I / mIoU_P of Eq. 1 per prompt setting)."""

from __future__ import annotations

from dataclasses import dataclass

from ..common.options import option
from ..sam.options import DTYPES


@dataclass(kw_only=True)
class AblationArgs:
    """The options of ``samrs ablate`` and ``builders/ablate_hrsc.py``."""

    source: str = option(help="HRSC2016 folder, or a COCO JSON file/folder (--format coco)")
    format: str = option("hrsc2016", choices=("hrsc2016", "coco"), help="source format (default hrsc2016)")
    split: str = option("test", help="source split (default test; 'all' = every image)")
    images_dir: str | None = option(None, help="COCO only: folder with the image files")
    model: str = option("facebook/sam-vit-huge",
                        help="Hub id, save_pretrained folder, segment-anything .pth, or tiny-random (any SAM "
                             "generation: SAM, HQ-SAM, SAM 2.1, SAM 3, EdgeTAM; tiny-random-<family>)")
    models: str | None = option(None, metavar="M1,M2,...",
                                help="compare several models (comma list of --model values; replaces --model): "
                                     "each model's table1.* in OUT/NN-<model>/ and models.{md,csv,json} with a "
                                     "column group per model, the best setting per model and images/s")
    dtype: str = option("float32", choices=DTYPES, help="SAM compute dtype (default float32)")
    prompts: str = option("all", help='"all" (the 15 Table 1 settings) or a comma list, e.g. "H-Box,RH-Box+CP"')
    strict: bool = option(False, help="any skipped annotation is an error")
    out: str = option(help="output folder for table1.{md,csv,json} and instances.csv")


HELP = "Table 1 prompt study: SAM masks per prompt setting vs ground-truth masks (HRSC2016 or COCO)"
DESCRIPTION = (
    "Label every instance that has a ground-truth mask with each prompt setting (the 15 of Table 1 by "
    "default), encoding each image once, and write table1.md/.csv/.json (beside the paper's numbers) and "
    "instances.csv; with --models, the same per model plus models.md/.csv/.json comparing them. Instances without a ground-truth mask, with an empty one, or COCO crowd regions are "
    "counted and left out. Multi-GPU: `accelerate launch builders/ablate_hrsc.py` with the same options."
)
OPTIONS = AblationArgs


def run(args: AblationArgs) -> int:
    from ..analysis.ablation_models import main

    main(args)
    return 0
