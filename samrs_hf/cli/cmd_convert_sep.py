"""``samrs convert-sep CKPT.pth --backbone resnet50 --to DIR``: an official SAMRS SEP checkpoint -> transformers."""

from __future__ import annotations

from dataclasses import dataclass

from ..common.options import option


@dataclass(kw_only=True)
class ConvertSepArgs:
    checkpoint: str = option(positional=True, metavar="CKPT.pth", help="the downloaded official checkpoint")
    # No argparse choices: the converter checks the name (its list needs torch) and says why a backbone is refused.
    backbone: str = option(help=(
        "the checkpoint's backbone: resnet50 (IMP+SEP, RSP+SEP UperNet) and swin-t (IMP+SEP UperNet) convert, "
        "resnet / swin accept other sizes read from the keys; vit-b, vitaev2-s, internimage-t, vit-adapter-b and "
        "vit-b-rvsa are refused with what is missing"))
    to: str = option(metavar="DIR", help="new or empty output folder")
    init: str | None = option(None, choices=("imp", "rsp", "none"), help=(
        "what the authors started the encoder from (IMP, RSP, none): picks the model card's Table 9 row"))
    push_to_hub: str | None = option(None, metavar="REPO", help="also upload the folder to this Hub model repo")


HELP = "convert an official SAMRS SEP checkpoint (.pth) into a transformers SEP model folder"
DESCRIPTION = (
    "Reads a checkpoint released by the SAMRS authors (read through samrs_hf.common.safe_load: plain data, tensors "
    "and numpy arrays only), maps every tensor onto SEPForSemanticSegmentation (a ..._encoder.pth onto a "
    "transformers ResNetBackbone or SwinBackbone), checks the outputs against a plain-torch restatement of the "
    "official forward, and writes the folder with its image processor and model card. Only exact conversions: "
    "other backbones, UNet and Mask2Former checkpoints are refused with the reason."
)
OPTIONS = ConvertSepArgs


def run(args: ConvertSepArgs) -> int:
    from ..sep.convert import convert_sep_checkpoint

    result = convert_sep_checkpoint(args.checkpoint, args.backbone, args.to, init=args.init,
                                    push_to_hub=args.push_to_hub)
    kind = "SEP model" if result.form == "full" else "backbone"
    print(f"{args.checkpoint} -> {result.out_dir} ({kind}, {result.tensors} tensors, sha256 {result.sha256[:16]}...)")
    print("max |difference| from the official forward: "
          + ", ".join(f"{k} {v:.2e}" for k, v in result.max_diff.items()))
    for key, reason in result.dropped.items():
        print(f"left out {key}: {reason}")
    for key, reason in result.added.items():
        print(f"added {key}: {reason}")
    if result.pushed_to:
        print(f"pushed to {result.pushed_to}")
    return 0
