"""``samrs export-sep SEP_DIR --subset sota --out DIR``: one head of an SEP model as a stock UperNet."""

from __future__ import annotations

from dataclasses import dataclass

from ..common.options import option


@dataclass(kw_only=True)
class ExportSepArgs:
    model: str = option(positional=True, metavar="SEP_DIR", help="SEP model folder or Hub id (train_sep.py output)")
    subset: str = option(help="the head to export (sota, sior, fast, ...)")
    out: str = option(help="output folder (new or empty; see --overwrite)")
    overwrite: bool = option(False, help=(
        "write into a non-empty --out (its config, weights, processor and card are replaced; nothing is deleted)"))

HELP = "write one head of an SEP model as a plain UperNetForSemanticSegmentation folder"
DESCRIPTION = (
    "Writes the subset's head with the shared backbone and decoder as a stock transformers "
    "UperNetForSemanticSegmentation (config.json, model.safetensors), its image processor "
    "(preprocessor_config.json) and a model card (README.md: base model, datasets and the subset's scores from "
    "the SEP card): it loads without samrs_hf and runs in pipeline('image-segmentation')."
)
OPTIONS = ExportSepArgs


def run(args: ExportSepArgs) -> int:
    from pathlib import Path

    from ..sep.modeling_sep import load_sep

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise ValueError(f"--out {out}: not empty (pass --overwrite to write the export into it)")
    model = load_sep(args.model, heads=[args.subset])
    model.export(args.subset, out)
    print(f"wrote {out}: UperNetForSemanticSegmentation for {args.subset} "
          f"({model.config.heads[args.subset]} classes) with preprocessor_config.json and README.md")
    return 0
