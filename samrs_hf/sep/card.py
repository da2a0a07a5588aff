"""The published face of SEP models: the README.md model cards of a pre-trained SEP folder, an exported
UperNet and a fine-tuned one, and the upload of a folder to the Hub.

The YAML is ``huggingface_hub``'s ``ModelCardData`` (``model-index`` from its ``EvalResult``), so the Hub
reads the scores, the datasets and the base model (the backbone). ``pipeline_tag`` is set only where
``pipeline("image-segmentation")`` runs the folder: an export or a fine-tuned UperNet, not a multi-head
SEP model (it needs ``subset=``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from .configuration_sep import SEPConfig

LICENSE = {"license": "other", "license_name": "samrs-terms",
           "license_link": "https://github.com/ViTAE-Transformer/SAMRS"}
"""Trained on SAMRS, whose sources (DOTA, DIOR, FAIR1M) allow academic use only."""
METRICS = (("mIoU", "mean_iou", "mIoU"), ("mF1", "f1", "mF1"), ("OA", "accuracy", "OA"))
"""(our score key, the Hub's metric type, its display name); values in %."""

USAGE = ["## Use", "", "```python", "import samrs_hf.sep  # registers the 'sep' model type",
         "from transformers import AutoModelForSemanticSegmentation",
         "model = AutoModelForSemanticSegmentation.from_pretrained(PATH_OR_REPO)",
         "logits = model(pixel_values, subset=\"sota\").logits", "```", "",
         "`model.export(\"sota\", DIR)` (or `samrs export-sep PATH_OR_REPO --subset sota --out DIR`) writes a "
         "plain `UperNetForSemanticSegmentation` that loads without this package, with its image processor "
         "and card, so `pipeline(\"image-segmentation\", model=DIR)` runs it; "
         "`samrs_hf.sep.from_sep(PATH, num_labels)` starts fine-tuning from it.", ""]


def model_card(args, config: SEPConfig, scores: dict, lengths: dict | None = None,
               hparams: dict | None = None, recipe: dict | None = None) -> str:
    """README.md of a trained SEP model. ``args`` are its ``TrainArgs``; ``lengths`` the train images per
    subset, ``hparams`` the lr / weight_decay / min_lr it ran with (the options' values when not given) and
    ``recipe`` :meth:`SEPTrainer.recipe` (parameter groups, clipping, forward, per-subset batch)."""
    lengths = lengths or {}
    h = hparams or {k: getattr(args, k) for k in ("lr", "weight_decay", "min_lr")}
    results = [r for subset, spec in args.datasets.items() if subset in scores
               for r in eval_results(scores[subset], dataset_id(spec, subset), f"SAMRS {subset.upper()}",
                                     "validation")]
    data = card_data(f"SEP {args.backbone}", base_model=hub_id(config.backbone_checkpoint), pipeline=False,
                     datasets=[hub for hub in args.datasets.values() if hub_id(hub)], results=results,
                     tags=["sep"])
    lines = [front_matter(data)] + [
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


def hub_id(spec) -> str | None:
    """``spec`` when it names a Hub repo (``org/name``, not a local path), else None."""
    spec = None if spec is None else str(spec)
    return spec if spec and spec.count("/") == 1 and not spec.startswith((".", "/", "~")) \
        and not os.path.exists(spec) else None


def dataset_id(spec, subset: str) -> str:
    return hub_id(spec) or f"samrs-{subset}"


def eval_results(scores: dict, dataset_type: str, dataset_name: str, split: str) -> list:
    """``EvalResult``s (in %) of one dataset's OA / mF1 / mIoU; scores that are not finite are left out."""
    from huggingface_hub import EvalResult

    return [EvalResult(task_type="image-segmentation", task_name="Semantic Segmentation", dataset_type=dataset_type,
                       dataset_name=dataset_name, dataset_split=split, metric_type=kind, metric_name=name,
                       metric_value=round(100 * float(scores[key]), 2))
            for key, kind, name in METRICS if key in scores and math.isfinite(float(scores[key]))]


def card_data(model_name: str, *, base_model: str | None, pipeline: bool, datasets=(), results=(), tags=()):
    """The YAML of every SEP-family card (``ModelCardData``; ``model-index`` when there are results)."""
    from huggingface_hub import ModelCardData

    return ModelCardData(
        model_name=model_name if results else None, library_name="transformers", **LICENSE, base_model=base_model,
        datasets=list(datasets) or None, pipeline_tag="image-segmentation" if pipeline else None,
        tags=["semantic-segmentation", "remote-sensing", "samrs", "upernet", *tags],
        eval_results=list(results) or None)


def front_matter(data) -> str:
    return "---\n" + data.to_yaml() + "\n---"


PIPELINE_USE = ["## Use", "", "```python", "from transformers import pipeline",
                "segment = pipeline(\"image-segmentation\", model=PATH_OR_REPO)",
                "masks = segment(\"image.png\")  # one {{label, mask}} per class present", "```", "",
                "The image processor keeps the image's resolution (no resize); the model was scored on {crop} crops, "
                "so cut large scenes into such crops.", ""]


def export_card(config: SEPConfig, subset: str, source=None) -> str:
    """README.md of ``SEPForSemanticSegmentation.export(subset)``: datasets and ``subset``'s scores are
    taken from the card of the SEP folder it came from (``source``, when it has one)."""
    src = source_card_data(source)
    name = f"SAMRS {subset.upper()}"
    results = [r for r in (src.eval_results or []) if r.dataset_name == name] if src else []
    data = card_data(f"UperNet {name} (SEP export)", base_model=hub_id(config.backbone_checkpoint), pipeline=True,
                     datasets=(src.datasets or []) if src else [], results=results, tags=["sep-export"])
    labels = config.labels_of(subset)
    lines = [front_matter(data), "", f"# UperNet for {name}, exported from SEP", "",
             f"The `{subset}` head of an SEP model (*SAMRS*, NeurIPS 2023, Sec. 4.1) with its shared backbone "
             f"(`{config.backbone_config.model_type}`) and decoder, as a stock `UperNetForSemanticSegmentation`: "
             "it loads with transformers alone" + (f" (from `{source}`)." if source else "."), "",
             f"Classes ({len(labels)}): " + ", ".join(f"{i} {n}" for i, n in enumerate(labels)) + "; 255 unlabelled.",
             ""]
    lines += (["## SAMRS validation (from the SEP card, %)", "", "| metric | value |", "|---|---|"]
              + [f"| {r.metric_name} | {r.metric_value:.2f} |" for r in results] + [""]) if results else []
    return "\n".join(lines + [x.format(crop="512x512 centre") for x in PIPELINE_USE])


TASK_NAMES = {"potsdam": "ISPRS Potsdam", "isaid": "iSAID"}


def finetune_card(args, result: dict, base_model: str | None) -> str:
    """README.md of a ``finetune.py`` output: the task, where it started, its scores as ``model-index``."""
    from .finetune_data import TASKS

    split = TASKS[args.task]["splits"][1]
    scores = result.get("scores") or {}
    sep = source_card_data(args.init) if result["init_kind"] == "sep" else None  # its pre-training data
    data = card_data(f"UperNet {args.task} ({result['init_kind']} init)", base_model=base_model, pipeline=True,
                     datasets=(sep.datasets or []) if sep else [], tags=["sep-finetune"],
                     results=eval_results(scores, args.task, TASK_NAMES[args.task], split))
    init = f"the SEP model `{args.init}`" if result["init_kind"] == "sep" else f"the backbone `{args.init}`"
    lines = [front_matter(data), "", f"# UperNet fine-tuned on {args.task}", "",
             f"Fine-tuned from {init} as in *SAMRS* (NeurIPS 2023, Sec. 4.2): {result['steps']} steps, "
             f"{result['train_crops']} training crops" + (f" ({100 * args.train_fraction:g} % of them)"
                                                           if args.train_fraction else "")
             + f", lr {result['lr']}, weight decay {result['weight_decay']}.", "",
             f"## {split} crops ({result['eval_crops']}, %)", "", "| OA | mF1 | mIoU |", "|---|---|---|",
             "| " + " | ".join(f"{100 * float(scores.get(k, math.nan)):.2f}" for k in ("OA", "mF1", "mIoU")) + " |",
             "", "| class | IoU | F1 |", "|---|---|---|"]
    lines += [f"| {n} | {_pct(v)} | {_pct((scores.get('F1') or {}).get(n))} |"
              for n, v in (scores.get("IoU") or {}).items()]
    crop = TASKS[args.task]["crop"]
    return "\n".join(lines + [""] + [x.format(crop=f"{crop}x{crop}") for x in PIPELINE_USE])


def _pct(v) -> str:
    return "-" if v is None or not math.isfinite(float(v)) else f"{100 * float(v):.2f}"


def source_card_data(source):
    """The ``ModelCardData`` of a local model folder's README, or of a Hub model's cached README (no request)."""
    from huggingface_hub import ModelCard, try_to_load_from_cache

    if source is None:
        return None
    path = Path(source) / "README.md"
    if not path.is_file():
        cached = try_to_load_from_cache(str(source), "README.md") if hub_id(source) else None
        if not isinstance(cached, str):
            return None
        path = Path(cached)
    return ModelCard.load(path).data


def push_folder(folder: Path, repo_id: str) -> None:
    """Upload the model folder (weights, config, card, scores; not the checkpoints) to the Hub."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, ignore_patterns=["checkpoints/*", "*.jsonl"])
