"""``samrs export-sep SEP_DIR --subset sota --out DIR``: one head of an SEP model as a stock UperNet."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export-sep", help="write one head of an SEP model as a plain UperNetForSemanticSegmentation folder",
        description="Writes the subset's head with the shared backbone and decoder as a stock transformers "
        "UperNetForSemanticSegmentation (config.json, model.safetensors), its image processor "
        "(preprocessor_config.json) and a model card (README.md: base model, datasets and the subset's "
        "scores from the SEP card): it loads without samrs_hf and runs in pipeline('image-segmentation').")
    p.add_argument("model", metavar="SEP_DIR", help="SEP model folder or Hub id (train_sep.py output)")
    p.add_argument("--subset", required=True, help="the head to export (sota, sior, fast, ...)")
    p.add_argument("--out", required=True, help="output folder (new or empty; see --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty --out (its config, weights, processor and card are replaced; "
                        "nothing is deleted)")
    p.set_defaults(func=run)


def run(args) -> int:
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
