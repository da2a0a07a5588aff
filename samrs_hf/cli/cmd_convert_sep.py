"""``samrs convert-sep CKPT.pth --backbone resnet50 --to DIR``: an official SAMRS SEP checkpoint -> transformers."""

from __future__ import annotations

BACKBONES = ("resnet50", "resnet", "swin-t", "swin", "vit-b", "vitaev2-s", "internimage-t", "vit-adapter-b", "vit-b-rvsa")
"""Kept in step with ``samrs_hf.sep.convert.support.BACKBONE_CHOICES`` (a test checks it); listed here so
``samrs --help`` does not import torch."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert-sep", help="convert an official SAMRS SEP checkpoint (.pth) into a transformers SEP model folder",
        description="Reads a checkpoint released by the SAMRS authors (read through samrs_hf.common.safe_load: plain "
        "data, tensors and numpy arrays only), maps every tensor onto SEPForSemanticSegmentation (a "
        "..._encoder.pth onto a transformers ResNetBackbone or SwinBackbone), checks the outputs against a plain-torch "
        "restatement of the official forward, and writes the folder with its image processor and model card. "
        "Only exact conversions: other backbones, UNet and Mask2Former checkpoints are refused with the reason.")
    p.add_argument("checkpoint", metavar="CKPT.pth", help="the downloaded official checkpoint")
    p.add_argument("--backbone", required=True, choices=BACKBONES,
                   help="the checkpoint's backbone: resnet50 (IMP+SEP, RSP+SEP UperNet) and swin-t (IMP+SEP UperNet) "
                        "convert, resnet / swin accept other sizes read from the keys; the others are refused with "
                        "what is missing")
    p.add_argument("--to", required=True, metavar="DIR", help="new or empty output folder")
    p.add_argument("--init", choices=("imp", "rsp", "none"),
                   help="what the authors started the encoder from (IMP, RSP, none): picks the model card's Table 9 row")
    p.add_argument("--push-to-hub", metavar="REPO", help="also upload the folder to this Hub model repo")
    p.set_defaults(func=run)


def run(args) -> int:
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
