"""SEP pre-training (paper Sec. 4.1.2) on Accelerate: its options (:class:`TrainArgs`) and the run
(:class:`SEPTrainer`). The defaults are the authors' pre-training code (``main_pretrain.py``) where it and
the paper's text differ: gradient clipping at 5, parameter groups per backbone family, ResNet's lr scaled
with the batch, floored per-subset batch sizes, one forward per subset, validation on the training crop size
every 1,000 then 5,000 steps with the best model kept in ``best/``.

Each micro-batch holds B_i examples of every subset (proportional sampling); each head runs on its slice
and loss = sum of per-head losses. Checkpoints and the fingerprint in them let ``--resume`` replay the same
sampling and augmentation and refuse a different setup.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch

from . import checkpoints as ckpt
from .card import model_card, push_folder
from .configuration_sep import SEPConfig, backbone_family, resolve_backbone, table8_defaults
from .data import BATCH_ROUNDINGS, SEPTrainDataset, collate, load_subsets, parse_dataset_args, proportional_sizes
from .decode_cache import open_decode_cache
from .evaluation import json_safe
from .modeling_sep import SEPForSemanticSegmentation, load_backbone_weights
from .options import AppendString, InputArgs, RunArgs, check_at_least, parse_eval_schedule
from .param_groups import param_groups, rule_of
from .photometric_device import device_batches
from .streaming import StreamingSEPDataset, load_streaming, open_streams, streaming_loader
from .training import (NonFiniteLossError, build_optimizer, log_due, micro_batch_size, optimizer_step,
                       proportional_loader, resolve_hparams, run_steps)

logger = logging.getLogger(__name__)
ForwardMode = Literal["per-subset", "collective"]
BatchRounding = Literal["floor", "largest-remainder"]


@dataclass(kw_only=True)
class TrainArgs(InputArgs, RunArgs):
    """``builders/train_sep.py``'s options (``--dataset`` repeated gives ``datasets``)."""

    datasets: dict[str, str] = field(metadata={
        "aliases": ["--dataset"], "action": AppendString, "metavar": "SUBSET=PATH_OR_REPO",
        "help": "a packaged SAMRS subset (local folder or Hub dataset id); repeat per subset"})
    backbone: str = field(default="resnet50", metadata={
        "help": "resnet50 | swin-t | convnext-t | vit-b | tiny-resnet | tiny-convnext | Hub id | local folder"})
    batch_size: int = field(default=96, metadata={"help": "global batch B over all processes and accumulation"})
    crop_size: int = field(default=224, metadata={"help": "training crop"})
    hidden_size: int = field(default=512, metadata={"help": "UperNet decoder channels"})
    checkpoint_every: int = field(default=1000, metadata={"help": "steps between checkpoints (0: none)"})
    keep_checkpoints: int = field(default=0, metadata={"help": "keep only the newest N checkpoints (0: all)"})
    resume: bool = field(default=False, metadata={"help": "continue from the newest checkpoint in --output-dir"})
    max_grad_norm: float = field(default=5.0, metadata={
        "help": "clip the gradients' total norm to this every step, as the authors' code does (0: no clipping)"})
    layer_decay: float | None = field(default=None, metadata={
        "help": "layer-wise lr decay of ViT-like backbones (None: the family's, ViT 0.9; 1.0: none)"})
    forward: ForwardMode = field(default="per-subset", metadata={
        "help": "per-subset: backbone and decoder run once per subset's slice (authors' code, BatchNorm "
                "statistics per subset); collective: once on the whole batch (paper's text)"})
    batch_rounding: BatchRounding = field(default="floor", metadata={
        "help": "per-subset batch B_i: floor of B*L_i/sum(L) (authors' code; may sum to less than B) or "
                "largest-remainder (sums to B)"})
    eval_every: str = field(default="official", metadata={
        "help": "validation on a centre crop of --crop-size during training, keeping the best model in best/: "
                "'official' (every 1000 steps up to 10000, then every 5000), N, N:UNTIL,M, or 0 (none)"})
    eval_crop_size: int = field(default=512, metadata={"help": "central crop of the final validation (Table 9)"})
    eval_batch_size: int = field(default=8, metadata={"help": "validation batch size"})
    eval_max_samples: int | None = field(default=None, metadata={
        "help": "validate on the first N images per subset"})
    log_every: int = field(default=10, metadata={"help": "steps between log lines (0: the last step only)"})
    report_to: str = field(default="none", metadata={"help": "Accelerate tracker: tensorboard, wandb, all, none"})
    push_to_hub: str | None = field(default=None, metadata={
        "metavar": "REPO", "help": "upload the final model folder to this Hub repo"})

    def __post_init__(self):
        super().__post_init__()
        self.check_input()
        if not isinstance(self.datasets, dict):  # the --dataset strings
            self.datasets = parse_dataset_args(self.datasets)
        check_at_least(self, 1, "batch_size", "crop_size", "hidden_size", "eval_crop_size", "eval_batch_size",
                       "eval_max_samples")
        check_at_least(self, 0, "checkpoint_every", "keep_checkpoints", "log_every", "max_grad_norm")
        self.eval_every = str(self.eval_every)
        parse_eval_schedule(self.eval_every)
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise ValueError(f"--layer-decay must be in (0, 1], got {self.layer_decay}")
        for name, allowed in (("forward", get_args(ForwardMode)), ("batch_rounding", BATCH_ROUNDINGS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"--{name.replace('_', '-')} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.resume and self.overwrite:
            raise ValueError("--resume continues the run in --output-dir and --overwrite replaces it: pass one")


class SEPTrainer:
    """Set up with ``SEPTrainer(args)`` (data, model and resume are checked here), then ``train()``."""

    def __init__(self, args: TrainArgs, accelerator=None):
        from accelerate import Accelerator

        self.args = args
        self.output_dir = Path(args.output_dir)
        self.accelerator = accelerator or Accelerator(
            mixed_precision=args.mixed_precision, gradient_accumulation_steps=args.gradient_accumulation_steps,
            log_with=None if args.report_to == "none" else args.report_to, project_dir=str(self.output_dir),
            cpu=args.cpu)
        # refused before minutes of loading; deleted once everything below has passed
        earlier = [] if args.resume else ckpt.earlier_run(self.output_dir, ckpt.SEP_RUN_FILES, args.overwrite)
        self._load_data()
        self.micro_batch = micro_batch_size(args.batch_size, self.accelerator.num_processes,
                                            args.gradient_accumulation_steps)
        # what each process feeds per subset and micro-batch; raises naming a subset that gets no image
        self.sizes = proportional_sizes(self.lengths, self.micro_batch, args.batch_rounding, self.subsets)
        checkpoint = self._build_model()
        self.start_step, self.resume_dir = 0, None
        if args.resume:
            self._check_resume()
        elif checkpoint is not None:
            load_backbone_weights(self.model.backbone, checkpoint)
        self._prepare()
        self.forward_mode = self._forward_mode()
        if self.accelerator.is_main_process:
            ckpt.remove_run(earlier, self.output_dir)
        self.accelerator.wait_for_everyone()
        self.history: list[dict] = []
        self.last_checkpoint: Path | None = self.resume_dir
        self.eval_schedule = parse_eval_schedule(args.eval_every)
        self.best = ckpt.read_best(self.output_dir, self.start_step) if args.resume else None

    def _load_data(self):
        self.caches = None
        if self.args.streaming:
            self.train_sets, self.class_names, self.lengths, self.val_sets = load_streaming(
                self.args.datasets, self.args.eval_max_samples)
            self.subsets = list(self.train_sets)
            return
        with self.accelerator.main_process_first():  # one process builds the datasets cache, the others reuse it
            self.train_sets, self.class_names = load_subsets(self.args.datasets, "train")
            self.val_sets = {}
            for subset, spec in self.args.datasets.items():  # per subset: one without validation keeps the others
                try:
                    self.val_sets.update(load_subsets({subset: spec}, "validation")[0])
                except ValueError as exc:  # train anyway; the card and eval_results.json lack its scores
                    logger.warning("%s: no validation scores: %s", subset, exc)
        self.subsets = list(self.train_sets)
        self.lengths = [len(self.train_sets[s]) for s in self.subsets]
        if self.args.decode_cache:  # the main process decodes, the others then read its cache
            with self.accelerator.main_process_first():
                self.caches = [open_decode_cache(self.args.decode_cache, s, self.train_sets[s], os.cpu_count() or 1,
                                                 self.accelerator.is_main_process) for s in self.subsets]

    def _build_model(self):
        """The SEP model (seeded) and Table 8's defaults for its backbone; returns the backbone's weights."""
        from accelerate.utils import set_seed

        a = self.args
        backbone_config, checkpoint = resolve_backbone(a.backbone)
        self.family = backbone_family(backbone_config.model_type)
        self.hparams = resolve_hparams(a, table8_defaults(backbone_config.model_type, batch_size=a.batch_size))
        self.lr, self.weight_decay, self.min_lr = (self.hparams[k] for k in ("lr", "weight_decay", "min_lr"))
        config = SEPConfig(backbone_config=backbone_config, backbone_checkpoint=checkpoint,
                           heads={s: len(self.class_names[s]) for s in self.subsets},
                           head_labels=self.class_names, hidden_size=a.hidden_size)
        set_seed(a.seed)  # same initial weights (and torch/numpy/random state) for the same seed
        self.model = SEPForSemanticSegmentation(config)
        return checkpoint

    def _check_resume(self):
        self.resume_dir, saved = ckpt.newest_usable_checkpoint(self.output_dir)
        diff = ckpt.fingerprint_diff(saved["fingerprint"], self.fingerprint())
        if diff:
            raise ValueError(f"--resume: {self.resume_dir} was written by another configuration; "
                             f"differences (checkpoint, now): {diff}")
        self.start_step = saved["step"]

    def _prepare(self):
        acc = self.accelerator
        if acc.num_processes > 1 and acc.device.type == "cuda":
            # Per-GPU micro-batches are small; BatchNorm statistics over the whole global batch.
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        groups, self.param_groups = param_groups(self.model, self.family, self.lr, self.weight_decay,
                                                 self.args.layer_decay)
        self.optimizer, self.scheduler = build_optimizer(self.model, self.lr, self.weight_decay, self.min_lr,
                                                         self.args.max_steps, params=groups)
        # The scheduler is stepped by hand; registered so save_state/load_state carry it.
        self.model, self.optimizer = acc.prepare(self.model, self.optimizer)
        acc.register_for_checkpointing(self.scheduler)
        if self.resume_dir is not None:
            acc.load_state(str(self.resume_dir))

    def _forward_mode(self) -> str:
        """``--forward``, except that per-subset cannot train BatchNorm on a one-image slice of a process
        without synchronised BatchNorm (PPM's 1x1 pooling has one value per channel): such a run goes
        collective, with a warning, and the run config and card say so."""
        a = self.args
        single = [s for s, b in zip(self.subsets, self.sizes) if b < 2]
        plain_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in self.model.modules())
        if a.forward == "per-subset" and single and plain_bn:
            logger.warning("--forward per-subset: subset(s) %s get 1 image per micro-batch and process, too few "
                           "for BatchNorm statistics without synchronised BatchNorm across GPUs; running "
                           "collective instead (raise --batch-size for per-subset)", ", ".join(single))
            return "collective"
        return a.forward

    # -- bookkeeping -------------------------------------------------------------------------
    def fingerprint(self) -> dict:
        """Everything that decides the trajectory; a resume must match it exactly."""
        a = self.args
        return {"backbone": a.backbone, "datasets": {s: n for s, n in zip(self.subsets, self.lengths)},
                "heads": {s: len(self.class_names[s]) for s in self.subsets}, "batch_size": a.batch_size,
                "crop_size": a.crop_size, "lr": self.lr, "weight_decay": self.weight_decay, "min_lr": self.min_lr,
                "max_steps": a.max_steps, "hidden_size": a.hidden_size, "seed": a.seed,
                "gradient_accumulation_steps": a.gradient_accumulation_steps,
                "num_processes": self.accelerator.num_processes, "mixed_precision": a.mixed_precision,
                "max_grad_norm": a.max_grad_norm, "forward": a.forward, "batch_rounding": a.batch_rounding,
                "param_groups": rule_of(self.family), "layer_decay": a.layer_decay,
                **({"streaming": {"shuffle_buffer": a.shuffle_buffer}} if a.streaming else {})}

    def recipe(self) -> dict:
        """What the run trains with beyond its options (resolved lr, parameter groups, per-subset batch,
        augmentation), for ``run_config.json`` and the model card."""
        from .augmentation import AUGMENTATION

        a = self.args
        return {"hparams": self.hparams, "param_groups": self.param_groups, "max_grad_norm": a.max_grad_norm,
                "forward": self.forward_mode, "batch_rounding": a.batch_rounding, "micro_batch": self.micro_batch,
                "subset_batch": dict(zip(self.subsets, self.sizes)),
                "train_images": dict(zip(self.subsets, self.lengths)),
                "num_processes": self.accelerator.num_processes, "eval_every": a.eval_every,
                "augmentation": AUGMENTATION}

    def save_checkpoint(self, step: int) -> Path:
        self.last_checkpoint = ckpt.save_checkpoint(self.accelerator, self.output_dir, step, self.fingerprint(),
                                                    self.args.keep_checkpoints)
        return self.last_checkpoint

    def batches(self, start_step: int):
        """Micro-batches from optimizer step ``start_step`` on, for this process."""
        a, config, acc = self.args, self.unwrapped.config, self.accelerator
        on_device = a.augment_on == "device"
        if a.streaming:
            streams = open_streams(self.train_sets, a.seed, a.shuffle_buffer, acc.process_index, acc.num_processes)
            dataset = StreamingSEPDataset(a.crop_size, config.image_mean, config.image_std, seed=a.seed,
                                          photometric_on_device=on_device)
            loader = streaming_loader(streams, self.sizes, dataset, a, acc, collate, start_step)
        else:
            dataset = SEPTrainDataset([self.train_sets[s] for s in self.subsets], a.crop_size, config.image_mean,
                                      config.image_std, seed=a.seed, caches=self.caches,
                                      photometric_on_device=on_device)
            loader = proportional_loader(dataset, self.lengths, self.micro_batch, a, acc, collate, start_step,
                                         rounding=a.batch_rounding)
        return device_batches(loader, acc.device, config.image_mean, config.image_std) if on_device else loader

    @property
    def unwrapped(self) -> SEPForSemanticSegmentation:
        return self.accelerator.unwrap_model(self.model)

    def evaluate(self, crop_size: int | None = None) -> dict:
        from .evaluation import evaluate

        if not self.val_sets:
            return {}
        a = self.args
        return evaluate(self.unwrapped, self.val_sets, self.class_names, crop_size=crop_size or a.eval_crop_size,
                        batch_size=a.eval_batch_size, max_samples=a.eval_max_samples,
                        device=self.accelerator.device, progress=self.accelerator.is_main_process)

    # -- the loop ----------------------------------------------------------------------------
    def train_step(self, micro_batches, step: int) -> torch.Tensor:
        """One optimizer step over its micro-batches; returns the per-head losses (summed)."""
        device = self.accelerator.device

        def loss_fn(batch):
            out = self.model(batch["pixel_values"].to(device, non_blocking=True),
                             labels=batch["labels"].to(device, non_blocking=True),
                             subset=self.subsets, subset_sizes=batch["subset_sizes"],
                             per_subset=self.forward_mode == "per-subset")
            return out.loss, out.head_losses

        try:
            return optimizer_step(self.accelerator, self.model, self.optimizer, self.scheduler, micro_batches,
                                  loss_fn, step, "pre-training", self.args.max_grad_norm)
        except NonFiniteLossError as exc:
            self._stop_non_finite(step, exc.losses)

    def _stop_non_finite(self, step: int, losses: torch.Tensor):
        bad = [s for s, v in zip(self.subsets, losses.tolist()) if not math.isfinite(v)]
        # Weights still hold step-1's update (the bad loss was never applied): keep them.
        kept = self.last_checkpoint
        if step - 1 > 0 and (kept is None or not kept.name.endswith(f"{step - 1:08d}")):
            kept = self.save_checkpoint(step - 1)
        raise NonFiniteLossError(f"non-finite loss at step {step} in subset(s) {', '.join(bad)}; "
                                 f"last good checkpoint: {kept if kept is not None else 'none (failed at step 1)'}",
                                 losses) from None

    def train(self) -> dict:
        a, acc = self.args, self.accelerator
        if a.report_to != "none":
            acc.init_trackers("sep", config={k: v for k, v in asdict(a).items() if k != "datasets"})
        self.log_path = self.output_dir / "train_log.jsonl"
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            run_config = {"args": asdict(a), **self.recipe()}
            (self.output_dir / "run_config.json").write_text(json.dumps(run_config, indent=2))
        self.history = ckpt.start_log(self.log_path, self.start_step, acc.is_main_process)
        self.model.train()
        self._clock = (time.perf_counter(), 0)
        run_steps(self.batches(self.start_step), self.start_step, a.max_steps, a.gradient_accumulation_steps,
                  self.train_step, self._after_step, "SEP", acc.is_main_process)
        return self.finish(self.log_path)

    def _after_step(self, step: int, head_losses: torch.Tensor) -> dict | None:
        """Log (loss per head, lr, samples/s), validate and checkpoint as the options ask."""
        a, postfix = self.args, None
        per_step = sum(self.sizes) * self.accelerator.num_processes * a.gradient_accumulation_steps
        t0, samples = self._clock[0], self._clock[1] + per_step  # since the last log line
        self._clock = (t0, samples)
        if log_due(step, a.log_every, a.max_steps):
            per_head = dict(zip(self.subsets, head_losses.tolist()))
            record = {"step": step, "lr": max(self.scheduler.get_last_lr()), "loss": float(head_losses.sum()),
                      "samples_per_s": samples / (time.perf_counter() - t0),
                      **{f"loss/{s}": float(v) for s, v in per_head.items()}}
            self._log(record, step)
            postfix = {s: f"{v:.3f}" for s, v in per_head.items()}
            self._clock = (time.perf_counter(), 0)
        if self.eval_schedule.due(step):
            self._log_eval(step)
        if a.checkpoint_every and step % a.checkpoint_every == 0:
            self.save_checkpoint(step)
        return postfix

    def _log(self, record: dict, step: int):
        self.history.append(record)
        if self.accelerator.is_main_process:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        if self.args.report_to != "none":
            self.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)

    def _log_eval(self, step: int):
        """Validation on a centre crop of the training crop size (the authors' code); a better mean mIoU
        over the subsets replaces ``best/``."""
        acc = self.accelerator
        scores = self.evaluate(self.args.crop_size) if acc.is_main_process else {}
        if scores:
            mean = float(np.nanmean([r["mIoU"] for r in scores.values()]))
            self._log({"step": step, "val_mIoU": mean, **{f"val_mIoU/{s}": r["mIoU"] for s, r in scores.items()}},
                      step)
            if not math.isnan(mean) and (self.best is None or mean > self.best["mIoU"]):
                self.best = {"step": step, "mIoU": mean, "crop_size": self.args.crop_size,
                             "subsets": {s: r["mIoU"] for s, r in scores.items()}}
                best_dir = self.output_dir / ckpt.BEST_DIR
                self.unwrapped.save_pretrained(best_dir)
                (best_dir / ckpt.BEST_RESULTS).write_text(json.dumps(json_safe(self.best), indent=2))
        acc.wait_for_everyone()

    def finish(self, log_path: Path | None = None) -> dict:
        """Save the model, its scores and card (and push it) on the main process; the run's result."""
        acc = self.accelerator
        acc.wait_for_everyone()
        result = {"steps": self.args.max_steps, "output_dir": str(self.output_dir), "history": self.history}
        if acc.is_main_process:
            result["scores"] = self._save_model()
        if self.args.report_to != "none":
            acc.end_training()
        return result

    def _save_model(self) -> dict:
        a, model = self.args, self.unwrapped
        model.save_pretrained(self.output_dir)
        scores = self.evaluate()
        (self.output_dir / "eval_results.json").write_text(json.dumps(json_safe(scores), indent=2))
        card = model_card(a, model.config, scores, dict(zip(self.subsets, self.lengths)), self.hparams,
                          self.recipe())
        (self.output_dir / "README.md").write_text(card)
        if a.push_to_hub:
            try:
                push_folder(self.output_dir, a.push_to_hub)
            except OSError as exc:  # offline, not logged in, no write access: the run itself is kept
                raise OSError(f"the model is saved in {self.output_dir}, but pushing it to "
                              f"{a.push_to_hub} failed: {exc}") from exc
        return scores
