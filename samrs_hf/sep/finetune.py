"""Fine-tuning (paper Sec. 4.2, Tables 3-6): its options (:class:`FinetuneArgs`), the model it starts from
(:func:`finetune_model`: an SEP encoder + decoder with a fresh head, or a plain backbone) and the run on
Potsdam / iSAID crops (:func:`run_finetune`), which reports OA / mF1 / mIoU on the evaluation split."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from . import checkpoints as ckpt
from .configuration_sep import (BACKBONE_PRESETS, TINY_BACKBONES, SEPConfig, pretrained_config, resolve_backbone,
                                table8_defaults)
from .modeling_sep import load_backbone_weights
from .options import RunArgs, check_at_least
from .training import (build_optimizer, log_due, micro_batch_size, optimizer_step, proportional_loader,
                       resolve_hparams, run_steps)


@dataclass(kw_only=True)
class FinetuneArgs(RunArgs):
    """``builders/finetune.py``'s options."""

    task: Literal["potsdam", "isaid"] = field(metadata={"help": "the fine-tuning dataset"})
    root: str = field(metadata={"help": "dataset root in its release layout (see finetune_data.py)"})
    init: str = field(metadata={"help": "SEP model folder / Hub id, or a backbone spec (resnet50, ...)"})
    train_fraction: float | None = field(default=None, metadata={
        "help": "train on this deterministic fraction of crops (0.01/0.03/0.05)"})
    batch_size: int = field(default=8, metadata={"help": "global batch over all processes and accumulation"})
    crop_size: int | None = field(default=None, metadata={"help": "training crop (default: 512 Potsdam, 896 iSAID)"})
    cache_dir: str | None = field(default=None, metadata={"help": "where crops are written (default: OUTPUT_DIR/crops)"})
    eval_batch_size: int = field(default=4, metadata={"help": "evaluation batch size"})
    log_every: int = field(default=50, metadata={"help": "steps between loss records (0: the last step only)"})

    def __post_init__(self):
        from .finetune_data import TASKS

        super().__post_init__()
        if self.task not in TASKS:
            raise ValueError(f"--task must be one of {sorted(TASKS)}, got {self.task!r}")
        if self.train_fraction is not None and not 0 < self.train_fraction <= 1:  # 5 is a typo for 5 %
            raise ValueError(f"--train-fraction must be in (0, 1], got {self.train_fraction}")
        check_at_least(self, 1, "batch_size", "crop_size", "eval_batch_size")
        check_at_least(self, 0, "log_every")


def pair_collate(items):
    return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


def finetune_model(init: str, class_names: list[str]):
    """UperNet for fine-tuning: SEP encoder+decoder with a fresh head, or a backbone (IMP baseline)."""
    from transformers import UperNetConfig, UperNetForSemanticSegmentation

    from .modeling_sep import from_sep

    id2label = dict(enumerate(class_names))
    # Backbone names are not looked up as SEP repos (a Hub request for a repo that does not exist).
    named_backbone = init in BACKBONE_PRESETS or init in TINY_BACKBONES
    if not named_backbone and pretrained_config(init, f"--init {init!r}", "--init").model_type == SEPConfig.model_type:
        return from_sep(init, len(class_names), id2label), "sep"
    backbone_config, checkpoint = resolve_backbone(init, option="--init", sep=not named_backbone)
    config = UperNetConfig(backbone_config=backbone_config.to_dict(), use_auxiliary_head=False, id2label=id2label,
                           label2id={v: k for k, v in id2label.items()})
    model = UperNetForSemanticSegmentation(config)
    if checkpoint is not None:
        load_backbone_weights(model.backbone, checkpoint)
    return model, "backbone"


def finetune_base_model(init: str, init_kind: str) -> str | None:
    """The backbone's Hub id (a card's ``base_model``): an SEP model's recorded backbone checkpoint, a
    preset's checkpoint or the backbone id given; None for local and random backbones."""
    from .card import hub_id

    if init_kind == "sep":
        return hub_id(pretrained_config(init, f"--init {init!r}", "--init").backbone_checkpoint)
    return hub_id(BACKBONE_PRESETS.get(init, (init, None))[0])


def run_finetune(args: FinetuneArgs) -> dict:
    """Fine-tune on the task's training crops, then evaluate and save on the main process."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from ..sources.records import Report
    from .evaluation import IMAGENET_MEAN, IMAGENET_STD
    from .finetune_data import TASKS, CropDataset, load_task
    from .modeling_sep import segmentation_loss

    acc = Accelerator(mixed_precision=args.mixed_precision, cpu=args.cpu,
                      gradient_accumulation_steps=args.gradient_accumulation_steps)
    out = Path(args.output_dir)
    earlier = ckpt.earlier_run(out, ckpt.FINETUNE_RUN_FILES, args.overwrite)  # before minutes of cutting crops
    cache = Path(args.cache_dir) if args.cache_dir else out / "crops"
    report = Report()
    train_split, eval_split = TASKS[args.task]["splits"]
    with acc.main_process_first():
        train_pairs, names = load_task(args.task, args.root, train_split, cache, fraction=args.train_fraction,
                                       seed=args.seed, report=report)
        eval_pairs, _ = load_task(args.task, args.root, eval_split, cache, report=report)
    set_seed(args.seed)
    model, init_kind = finetune_model(args.init, names)
    hparams = resolve_hparams(args, table8_defaults(model.config.backbone_config.model_type, finetune=True))
    micro = micro_batch_size(args.batch_size, acc.num_processes, args.gradient_accumulation_steps)
    crop = args.crop_size or TASKS[args.task]["crop"]
    optimizer, scheduler = build_optimizer(model, hparams["lr"], hparams["weight_decay"], hparams["min_lr"],
                                           args.max_steps)
    model, optimizer = acc.prepare(model, optimizer)
    train_set = CropDataset(train_pairs, crop, IMAGENET_MEAN, IMAGENET_STD, train=True, seed=args.seed)
    loader = proportional_loader(train_set, [len(train_pairs)], micro, args, acc, pair_collate)
    if acc.is_main_process:
        ckpt.remove_run(earlier, out)

    def loss_fn(batch):
        x, y = batch
        loss = segmentation_loss(model(pixel_values=x.to(acc.device)).logits, y.to(acc.device))
        return loss, loss.reshape(1)

    def step_fn(micro_batches, step):
        return optimizer_step(acc, model, optimizer, scheduler, micro_batches, loss_fn, step, "fine-tuning")

    history = []

    def after_step(step, losses):
        if log_due(step, args.log_every, args.max_steps):
            history.append({"step": step, "loss": float(losses.sum()), "lr": scheduler.get_last_lr()[0]})

    model.train()
    run_steps(loader, 0, args.max_steps, args.gradient_accumulation_steps, step_fn, after_step,
              f"fine-tune {args.task}", acc.is_main_process)
    acc.wait_for_everyone()
    result = {"task": args.task, "init": args.init, "init_kind": init_kind, "train_fraction": args.train_fraction,
              "train_crops": len(train_pairs), "eval_crops": len(eval_pairs), "steps": args.max_steps,
              **hparams, "history": history, "problems": report.to_dict()}
    if acc.is_main_process:
        evaluate_and_save(acc.unwrap_model(model), args, result, eval_pairs, names, crop, acc.device)
    return result


def evaluate_and_save(model, args: FinetuneArgs, result: dict, eval_pairs, names, crop: int, device) -> None:
    """Scores and confusion matrix on the evaluation crops into ``result``; the model, its image
    processor (what CropDataset fed) and ``finetune_results.json`` into ``--output-dir``."""
    from ..analysis.metrics import scores_from_confusion
    from .evaluation import IMAGENET_MEAN, IMAGENET_STD, confusion_for, json_safe
    from .finetune_data import TASKS, CropDataset
    from .card import finetune_card
    from .processing import image_processor

    eval_split = TASKS[args.task]["splits"][1]
    eval_set = CropDataset(eval_pairs, crop, IMAGENET_MEAN, IMAGENET_STD, train=False)
    cm = confusion_for(model, torch.utils.data.DataLoader(eval_set, batch_size=args.eval_batch_size),
                       len(names), device=device, desc=f"eval {args.task} {eval_split}")
    result["scores"] = scores_from_confusion(cm, names)
    result["confusion_matrix"] = cm.tolist()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    image_processor(IMAGENET_MEAN, IMAGENET_STD).save_pretrained(out)
    (out / "README.md").write_text(finetune_card(args, result, finetune_base_model(args.init, result["init_kind"])))
    (out / "finetune_results.json").write_text(json.dumps(json_safe(result), indent=2))
