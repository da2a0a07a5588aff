"""``samrs convert-release RELEASE_DIR --subset sota --to HUB_DIR``: official SAMRS zips -> Hub folder.

RELEASE_DIR is the subset's root as unpacked: the flat layout, the release's ``images/`` beside a
``*_segs_init/{gray,color,ins}/`` folder (up to two levels down), or the COCO-JSON variant."""

from __future__ import annotations

from dataclasses import dataclass

from ..common.options import option
from .cmd_package import HubFolderArgs, package_kwargs, print_result


@dataclass(kw_only=True)
class ConvertReleaseArgs(HubFolderArgs):
    release_dir: str = option(positional=True, metavar="RELEASE_DIR", help=(
        "the subset's root: images beside gray/ and ins/, beside a *_segs_init/ folder holding them (e.g. "
        "dotav2_1024/trainval/hbox_segs_init), or beside *_ins_segmentation.json files"))
    subset: str = option(choices=("sota", "sior", "fast"), help="which SAMRS subset the release folder holds")
    images_dir: list[str] | None = option(None, action="append", metavar="DIR", help=(
        "image folder (repeat for several, e.g. DIOR's JPEGImages-trainval and JPEGImages-test); default: the "
        "image folders beside the label folder"))
    labels_dir: str | None = option(None, metavar="DIR", help=(
        "the label folder holding gray/ (and ins/), e.g. .../trainval/rhbox_segs_init; required when the root "
        "holds two (hbox_segs_init and rhbox_segs_init)"))
    variant: str = option("auto", choices=("auto", "pkl", "coco"), help=(
        "instances from ins/*.pkl or from the COCO *_ins_segmentation.json files (auto: the pickles when a label "
        "folder has ins/)"))


HELP = "convert an official SAMRS release (ins/*.pkl or *_ins_segmentation.json) to the packaged layout"
DESCRIPTION = (
    "Reads the release (pickles through samrs_hf.common.safe_load, which allows only plain data and numpy "
    "arrays of the file's own bytes: any other pickle is refused, never run, and counted as an unsafe-file "
    "skip) and writes the same parquet + README layout as `samrs package`. --val-fraction and --seed apply "
    "only when the release has no train.txt / valid.txt."
)
OPTIONS = ConvertReleaseArgs


def run(args: ConvertReleaseArgs) -> int:
    from ..hub.release import convert_release

    result = convert_release(args.release_dir, args.subset, args.to, images_dir=args.images_dir,
                             labels_dir=args.labels_dir, variant=args.variant, **package_kwargs(args))
    print_result(result)
    return 0
