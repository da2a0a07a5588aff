"""The published face of a pre-trained SEP model: its README.md model card (data, backbone, schedule,
SAMRS-validation mIoU) and the upload of its folder to the Hub."""

from __future__ import annotations

import os
from pathlib import Path

from .configuration_sep import SEPConfig

USAGE = ["## Use", "", "```python", "import samrs_hf.sep  # registers the 'sep' model type",
         "from transformers import AutoModelForSemanticSegmentation",
         "model = AutoModelForSemanticSegmentation.from_pretrained(PATH_OR_REPO)",
         "logits = model(pixel_values, subset=\"sota\").logits", "```", "",
         "`model.export(\"sota\", DIR)` writes a plain `UperNetForSemanticSegmentation` that loads without "
         "this package, with its image processor, so `pipeline(\"image-segmentation\", model=DIR)` runs it; "
         "`samrs_hf.sep.from_sep(PATH, num_labels)` starts fine-tuning from it.", ""]


def model_card(args, config: SEPConfig, scores: dict, lengths: dict | None = None,
               hparams: dict | None = None, recipe: dict | None = None) -> str:
    """README.md of a trained SEP model. ``args`` are its ``TrainArgs``; ``lengths`` the train images per
    subset, ``hparams`` the lr / weight_decay / min_lr it ran with (the options' values when not given) and
    ``recipe`` :meth:`SEPTrainer.recipe` (parameter groups, clipping, forward, per-subset batch)."""
    lengths = lengths or {}
    h = hparams or {k: getattr(args, k) for k in ("lr", "weight_decay", "min_lr")}
    hub_ids = [spec for spec in args.datasets.values() if not os.path.exists(spec)]
    front = ["---", "library_name: transformers", "pipeline_tag: image-segmentation",
             "tags: [semantic-segmentation, remote-sensing, samrs, sep, upernet]"]
    if hub_ids:
        front.append("datasets: [" + ", ".join(hub_ids) + "]")
    front.append("---")
    lines = front + [
        "", "# SEP: segmentation pre-training on SAMRS", "",
        "UperNet with one shared backbone and decoder and one 1x1 classifier per SAMRS subset, pre-trained as "
        "in *SAMRS: Scaling-up Remote Sensing Segmentation Dataset with Segment Anything Model* (NeurIPS 2023, "
        "Sec. 4.1).", "",
        "| setting | value |", "|---|---|",
        f"| backbone | `{args.backbone}` ({config.backbone_config.model_type}) |",
        f"| heads | {', '.join(f'{k}: {v} classes' for k, v in config.heads.items())} |",
        "| datasets | " + ", ".join(f"{k}=`{v}` ({lengths.get(k, '?')} train images)"
                                     for k, v in args.datasets.items()) + " |",
        f"| steps | {args.max_steps} x batch {args.batch_size} (proportional sampling), crop {args.crop_size} |",
        f"| optimizer | AdamW (0.9, 0.999), lr {h['lr']}, weight decay {h['weight_decay']}, cosine to {h['min_lr']} |",
        *recipe_lines(recipe),
        "", "## SAMRS validation (centre crops, mIoU %)", "",
    ]
    return "\n".join(lines + score_lines(args, scores) + [""] + USAGE)


def recipe_lines(recipe: dict | None) -> list[str]:
    """Table rows for the parts of the authors' recipe the run used."""
    if not recipe:
        return []
    groups = recipe["param_groups"]
    rule = {"plain": "one group, every parameter decayed",
            "no-decay-norms": "no weight decay on the backbone's norms, position embeddings and relative "
                              "position bias tables",
            "layer-decay": f"layer-wise lr decay {groups['layer_decay']}; no weight decay on 1-D tensors, biases "
                           "and position embeddings"}[groups["rule"]]
    clip = recipe["max_grad_norm"]
    return [f"| parameter groups | {rule} ({len(groups['no_decay'])} tensors without decay, "
            f"{len(groups['groups'])} group(s)) |",
            f"| gradient clipping | {f'total norm {clip}' if clip else 'none'} |",
            f"| forward | {recipe['forward']} |",
            "| images per subset and micro-batch | " + ", ".join(f"{k}: {v}" for k, v in recipe["subset_batch"].items())
            + f" ({recipe['batch_rounding']}, {recipe['num_processes']} process(es)) |"]


def score_lines(args, scores: dict) -> list[str]:
    if not scores:
        return ["No validation split was given, so there are no scores."]
    lines = ["| subset | images | mIoU | mF1 | OA |", "|---|---|---|---|---|"]
    for s, r in scores.items():
        lines.append(f"| {s} | {r['images']} | {100 * r['mIoU']:.2f} | {100 * r['mF1']:.2f} | {100 * r['OA']:.2f} |")
    lines.append(f"\nCrop size {args.eval_crop_size}" + (
        f", first {args.eval_max_samples} images per subset" if args.eval_max_samples else "") + ".")
    return lines


def push_folder(folder: Path, repo_id: str) -> None:
    """Upload the model folder (weights, config, card, scores; not the checkpoints) to the Hub."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, ignore_patterns=["checkpoints/*", "*.jsonl"])
