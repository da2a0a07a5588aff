"""SEP pre-training loop (paper Sec. 4.1.2) on Accelerate.

One optimizer step consumes ``gradient_accumulation_steps`` micro-batches per process; each
micro-batch holds B_i examples of every subset (proportional sampling) and goes through the
backbone and decoder once, each head on its slice; loss = sum of per-head losses. AdamW with
cosine decay to the minimum LR. Checkpoints are Accelerate states (model, optimizer, scheduler,
RNG) plus ``sep_state.json`` (step and a fingerprint of everything that decides the run), so
``--resume`` replays the same sampling and augmentation and refuses a different setup.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..build.layout import atomic_write
from .configuration_sep import (BACKBONE_PRESETS, TINY_BACKBONES, SEPConfig, pretrained_config, resolve_backbone,
                                table8_defaults)
from .data import ProportionalBatchSampler, SEPTrainDataset, collate, load_subsets
from .modeling_sep import SEPForSemanticSegmentation, load_backbone_weights

STATE_FILE = "sep_state.json"
logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training hit a NaN/inf loss; the message names the step, the subsets and the kept checkpoint."""


@dataclass
class TrainArgs:
    datasets: dict[str, str]
    output_dir: str
    backbone: str = "resnet50"
    max_steps: int = 80000
    batch_size: int = 96
    crop_size: int = 224
    lr: float | None = None
    weight_decay: float | None = None
    min_lr: float | None = None
    hidden_size: int = 512
    mixed_precision: str = "no"
    gradient_accumulation_steps: int = 1
    checkpoint_every: int = 1000
    resume: bool = False
    num_workers: int = 4
    seed: int = 0
    eval_every: int = 0
    eval_crop_size: int = 512
    eval_batch_size: int = 8
    eval_max_samples: int | None = None
    log_every: int = 10
    report_to: str = "none"
    push_to_hub: str | None = None
    cpu: bool = False
    keep_checkpoints: int = 0
    overwrite: bool = False


def cosine_factor(step: int, max_steps: int, lr: float, min_lr: float) -> float:
    """LR multiplier: cosine from ``lr`` at step 0 to ``min_lr`` at ``max_steps``."""
    t = min(step, max_steps) / max(max_steps, 1)
    floor = min_lr / lr if lr else 0.0
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


def build_optimizer(model, lr: float, weight_decay: float, min_lr: float, max_steps: int):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_factor(s, max_steps, lr, min_lr))
    return optimizer, scheduler


def _same_setting(saved, now) -> bool:
    """Equal, and for dicts in the same order: the --dataset order numbers the subsets, which seeds
    their sampling and breaks B_i ties, so the same subsets in another order are another run."""
    return saved == now and (not isinstance(now, dict) or list(saved) == list(now))


def checkpoint_dirs(output_dir) -> list[Path]:
    root = Path(output_dir) / "checkpoints"
    return sorted((p for p in root.glob("step-*") if (p / STATE_FILE).is_file()), key=lambda p: p.name)


def read_state(path: Path) -> dict:
    """A checkpoint's ``sep_state.json``; ValueError naming the file when it is empty or corrupt."""
    state_file = path / STATE_FILE
    try:
        state = json.loads(state_file.read_text())
        if not (isinstance(state, dict) and isinstance(state.get("fingerprint"), dict)):
            raise ValueError("no 'step' and 'fingerprint'")
        state["step"] = int(state["step"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{state_file}: not a complete checkpoint state ({type(exc).__name__}: {exc})") from None
    return state


def newest_usable_checkpoint(output_dir) -> tuple[Path, dict]:
    """The newest checkpoint whose state file reads; newer ones that do not are skipped with a warning."""
    found = checkpoint_dirs(output_dir)
    if not found:
        raise ValueError(f"--resume: no checkpoint under {Path(output_dir) / 'checkpoints'}")
    problems = []
    for path in reversed(found):
        try:
            state = read_state(path)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        for problem in problems:
            logger.warning("--resume: skipping %s; resuming from %s", problem, path.name)
        return path, state
    raise ValueError(f"--resume: no usable checkpoint under {Path(output_dir) / 'checkpoints'}: {'; '.join(problems)}")


# What a run writes into its --output-dir, and nothing else is deleted by --overwrite. A folder with
# weights or checkpoints of an earlier run is only written over with --overwrite.
SEP_RUN_FILES = ("model*.safetensors", "model.safetensors.index.json", "config.json", "preprocessor_config.json",
                 "README.md", "eval_results.json", "train_log.jsonl")
FINETUNE_RUN_FILES = ("model*.safetensors", "model.safetensors.index.json", "config.json",
                      "preprocessor_config.json", "finetune_results.json")


def earlier_run(output_dir, patterns, overwrite: bool) -> list[Path]:
    """An earlier run's files and ``checkpoints/step-*`` in ``output_dir`` ([] when it holds no weights or
    checkpoints), for :func:`remove_run` once the new run is set up; refused unless ``overwrite``."""
    out = Path(output_dir)
    files = sorted({p for pattern in patterns for p in out.glob(pattern) if p.is_file()})
    steps = sorted(p for p in (out / "checkpoints").glob("step-*") if p.is_dir())
    if not steps and not any(p.suffix == ".safetensors" for p in files):
        return []
    found = files + steps
    if not overwrite:
        names = ", ".join(str(p.relative_to(out)) for p in found[:4]) + (", ..." if len(found) > 4 else "")
        raise ValueError(f"{out} holds an earlier run ({names}): pass --resume to continue it, --overwrite to "
                         f"replace it, or another --output-dir")
    return found


def remove_run(paths: list[Path], output_dir) -> None:
    """Delete what :func:`earlier_run` found (and ``checkpoints/`` when that leaves it empty), nothing else."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    checkpoints = Path(output_dir) / "checkpoints"
    if checkpoints.is_dir() and not any(checkpoints.iterdir()):
        checkpoints.rmdir()
    if paths:
        logger.warning("--overwrite: removed the earlier run's %d file(s) and checkpoint(s) in %s", len(paths),
                       output_dir)


class SEPTrainer:
    """Set up with ``SEPTrainer(args)`` (all checks happen here), then ``train()``."""

    def __init__(self, args: TrainArgs, accelerator=None):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.args = args
        self.output_dir = Path(args.output_dir)
        if args.max_steps < 1 or args.batch_size < 1 or args.gradient_accumulation_steps < 1:
            raise ValueError("--max-steps, --batch-size and --gradient-accumulation-steps must be positive")
        if args.resume and args.overwrite:
            raise ValueError("--resume continues the run in --output-dir and --overwrite replaces it: pass one")
        self.accelerator = accelerator or Accelerator(
            mixed_precision=args.mixed_precision, gradient_accumulation_steps=args.gradient_accumulation_steps,
            log_with=None if args.report_to == "none" else args.report_to, project_dir=str(self.output_dir),
            cpu=args.cpu)
        acc = self.accelerator
        # refused before minutes of loading; deleted once everything below has passed
        earlier = [] if args.resume else earlier_run(self.output_dir, SEP_RUN_FILES, args.overwrite)
        with acc.main_process_first():  # one process builds the datasets cache, the others reuse it
            self.train_sets, self.class_names = load_subsets(args.datasets, "train")
            self.val_sets = {}
            for subset, spec in args.datasets.items():  # per subset: one without validation keeps the others
                try:
                    self.val_sets.update(load_subsets({subset: spec}, "validation")[0])
                except ValueError as exc:  # train anyway; the card and eval_results.json lack its scores
                    logger.warning("%s: no validation scores: %s", subset, exc)
        self.subsets = list(self.train_sets)
        self.lengths = [len(self.train_sets[s]) for s in self.subsets]

        replicas = acc.num_processes * args.gradient_accumulation_steps
        if args.batch_size % replicas:
            raise ValueError(f"--batch-size {args.batch_size} must divide evenly over {acc.num_processes} "
                             f"process(es) x {args.gradient_accumulation_steps} accumulation step(s)")
        self.micro_batch = args.batch_size // replicas
        ProportionalBatchSampler(self.lengths, self.micro_batch)  # raises when a subset cannot get 1 slot

        backbone_config, checkpoint = resolve_backbone(args.backbone)
        defaults = table8_defaults(backbone_config.model_type)
        self.lr = args.lr if args.lr is not None else defaults["lr"]
        self.weight_decay = args.weight_decay if args.weight_decay is not None else defaults["weight_decay"]
        self.min_lr = args.min_lr if args.min_lr is not None else defaults["min_lr"]
        config = SEPConfig(backbone_config=backbone_config, backbone_checkpoint=checkpoint,
                           heads={s: len(self.class_names[s]) for s in self.subsets},
                           head_labels=self.class_names, hidden_size=args.hidden_size)
        set_seed(args.seed)  # same initial weights (and torch/numpy/random state) for the same seed
        self.model = SEPForSemanticSegmentation(config)

        self.start_step = 0
        self.resume_dir = None
        if args.resume:
            self.resume_dir, saved = newest_usable_checkpoint(self.output_dir)
            diff = {k: (saved["fingerprint"].get(k), v) for k, v in self.fingerprint().items()
                    if not _same_setting(saved["fingerprint"].get(k), v)}
            if diff:
                raise ValueError(f"--resume: {self.resume_dir} was written by another configuration; "
                                 f"differences (checkpoint, now): {diff}")
            self.start_step = saved["step"]
        elif checkpoint is not None:
            load_backbone_weights(self.model.backbone, checkpoint)

        if acc.num_processes > 1 and acc.device.type == "cuda":
            # Per-GPU micro-batches are small; BatchNorm statistics over the whole global batch.
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.optimizer, self.scheduler = build_optimizer(self.model, self.lr, self.weight_decay, self.min_lr,
                                                         args.max_steps)
        # The scheduler is stepped by hand once per optimizer step (Accelerate would step it
        # once per process); it is registered so save_state/load_state carry it.
        self.model, self.optimizer = acc.prepare(self.model, self.optimizer)
        acc.register_for_checkpointing(self.scheduler)
        if self.resume_dir is not None:
            acc.load_state(str(self.resume_dir))
        if acc.is_main_process:
            remove_run(earlier, self.output_dir)
        acc.wait_for_everyone()
        self.history: list[dict] = []
        self.last_checkpoint: Path | None = self.resume_dir

    # -- bookkeeping -------------------------------------------------------------------------
    def fingerprint(self) -> dict:
        """Everything that decides the trajectory; a resume must match it exactly."""
        a = self.args
        return {"backbone": a.backbone, "datasets": {s: n for s, n in zip(self.subsets, self.lengths)},
                "heads": {s: len(self.class_names[s]) for s in self.subsets}, "batch_size": a.batch_size,
                "crop_size": a.crop_size, "lr": self.lr, "weight_decay": self.weight_decay, "min_lr": self.min_lr,
                "max_steps": a.max_steps, "hidden_size": a.hidden_size, "seed": a.seed,
                "gradient_accumulation_steps": a.gradient_accumulation_steps,
                "num_processes": self.accelerator.num_processes, "mixed_precision": a.mixed_precision}

    def save_checkpoint(self, step: int) -> Path:
        path = self.output_dir / "checkpoints" / f"step-{step:08d}"
        self.accelerator.save_state(str(path))
        if self.accelerator.is_main_process:
            # written last and atomically: a checkpoint with a readable state file is complete
            atomic_write(path / STATE_FILE, json.dumps({"step": step, "fingerprint": self.fingerprint()},
                                                       indent=2).encode())
            if self.args.keep_checkpoints:
                clean_checkpoints(self.output_dir, self.args.keep_checkpoints)
        self.accelerator.wait_for_everyone()
        self.last_checkpoint = path
        return path

    def batches(self, start_step: int):
        """Micro-batches from optimizer step ``start_step`` on, for this process."""
        a, acc = self.args, self.accelerator
        sampler = ProportionalBatchSampler(
            self.lengths, self.micro_batch, seed=a.seed, start_step=start_step * a.gradient_accumulation_steps,
            num_steps=(a.max_steps - start_step) * a.gradient_accumulation_steps,
            num_replicas=acc.num_processes, rank=acc.process_index)
        config = self.unwrapped.config
        dataset = SEPTrainDataset([self.train_sets[s] for s in self.subsets], a.crop_size, config.image_mean,
                                  config.image_std, seed=a.seed)
        return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                                           num_workers=a.num_workers, pin_memory=torch.cuda.is_available(),
                                           persistent_workers=False, prefetch_factor=4 if a.num_workers else None)

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
        acc, device = self.accelerator, self.accelerator.device
        head_losses = torch.zeros(len(self.subsets), device=device)
        # BatchNorm running stats change in the forward, before the loss can be checked: keep
        # the step's starting buffers so a non-finite loss leaves a clean last-good state.
        buffers = [b.detach().clone() for b in self.model.buffers()]
        for batch in micro_batches:
            with acc.accumulate(self.model):
                out = self.model(batch["pixel_values"].to(device, non_blocking=True),
                                 labels=batch["labels"].to(device, non_blocking=True),
                                 subset=self.subsets, subset_sizes=batch["subset_sizes"])
                losses = out.head_losses.detach()
                if not bool(torch.isfinite(losses).all()):
                    with torch.no_grad():
                        for b, saved in zip(self.model.buffers(), buffers):
                            b.copy_(saved)
                    self._stop_non_finite(step, losses)
                head_losses += losses / len(micro_batches)
                acc.backward(out.loss)
                if acc.sync_gradients:
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
        return head_losses

    def _stop_non_finite(self, step: int, losses: torch.Tensor):
        bad = [s for s, v in zip(self.subsets, losses.tolist()) if not math.isfinite(v)]
        # Weights still hold step-1's update (the bad loss was never applied): keep them.
        kept = self.last_checkpoint
        if step - 1 > 0 and (kept is None or not kept.name.endswith(f"{step - 1:08d}")):
            kept = self.save_checkpoint(step - 1)
        raise NonFiniteLossError(f"non-finite loss at step {step} in subset(s) {', '.join(bad)}; "
                                 f"last good checkpoint: {kept if kept is not None else 'none (failed at step 1)'}")

    def train(self) -> dict:
        from tqdm.auto import tqdm

        a, acc = self.args, self.accelerator
        if a.report_to != "none":
            acc.init_trackers("sep", config={k: v for k, v in asdict(a).items() if k != "datasets"})
        log_path = self.output_dir / "train_log.jsonl"
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        self.history = start_log(log_path, self.start_step, acc.is_main_process)
        self.model.train()
        loader = iter(self.batches(self.start_step))
        bar = tqdm(total=a.max_steps, initial=self.start_step, desc="SEP", disable=not acc.is_main_process)
        t0, samples = time.perf_counter(), 0
        for step in range(self.start_step + 1, a.max_steps + 1):
            micro = [next(loader) for _ in range(a.gradient_accumulation_steps)]
            head_losses = self.train_step(micro, step)
            samples += a.batch_size
            if (a.log_every and step % a.log_every == 0) or step == a.max_steps:  # 0: the last step only
                elapsed = time.perf_counter() - t0
                record = {"step": step, "lr": self.scheduler.get_last_lr()[0],
                          "loss": float(head_losses.sum()), "samples_per_s": samples / elapsed,
                          **{f"loss/{s}": float(v) for s, v in zip(self.subsets, head_losses.tolist())}}
                self._log(record, log_path, step)
                bar.set_postfix({s: f"{v:.3f}" for s, v in zip(self.subsets, head_losses.tolist())})
                t0, samples = time.perf_counter(), 0
            bar.update(1)
            if a.eval_every and step % a.eval_every == 0 and step != a.max_steps:
                self._log_eval(step, log_path)
            if a.checkpoint_every and step % a.checkpoint_every == 0:
                self.save_checkpoint(step)
        bar.close()
        return self.finish(log_path)

    def _log(self, record: dict, log_path: Path, step: int):
        self.history.append(record)
        if self.accelerator.is_main_process:
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        if self.args.report_to != "none":
            self.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)

    def _log_eval(self, step: int, log_path: Path):
        scores = self.evaluate() if self.accelerator.is_main_process else {}
        if scores:
            self._log({"step": step, **{f"val_mIoU/{s}": r["mIoU"] for s, r in scores.items()}}, log_path, step)
        self.accelerator.wait_for_everyone()

    def finish(self, log_path: Path) -> dict:
        acc = self.accelerator
        acc.wait_for_everyone()
        result = {"steps": self.args.max_steps, "output_dir": str(self.output_dir), "history": self.history}
        if acc.is_main_process:
            model = self.unwrapped
            model.save_pretrained(self.output_dir)
            scores = self.evaluate()
            from .evaluation import json_safe

            (self.output_dir / "eval_results.json").write_text(json.dumps(json_safe(scores), indent=2))
            (self.output_dir / "README.md").write_text(model_card(self.args, model.config, scores, self))
            result["scores"] = scores
            if self.args.push_to_hub:
                try:
                    push_folder(self.output_dir, self.args.push_to_hub)
                except OSError as exc:  # offline, not logged in, no write access: the run itself is kept
                    raise OSError(f"the model is saved in {self.output_dir}, but pushing it to "
                                  f"{self.args.push_to_hub} failed: {exc}") from exc
        if self.args.report_to != "none":
            acc.end_training()
        return result


def start_log(log_path: Path, start_step: int, main_process: bool = True) -> list[dict]:
    """The log records up to ``start_step``, and the file cut back to them: a resumed run replays the
    steps after its checkpoint, and a new run starts an empty log, so each step is logged once."""
    kept = []
    if start_step and log_path.is_file():
        for n, line in enumerate(log_path.read_text().splitlines(), 1):
            try:
                record = json.loads(line)
                step = int(record["step"])
            except (ValueError, KeyError, TypeError) as exc:  # e.g. the half-written line of a crash
                logger.warning("%s:%d: unreadable log line dropped (%s: %s)", log_path, n, type(exc).__name__, exc)
                continue
            if step <= start_step:
                kept.append(record)
    if main_process:
        atomic_write(log_path, "".join(json.dumps(r) + "\n" for r in kept).encode())
    return kept


def push_folder(folder: Path, repo_id: str) -> None:
    """Upload the model folder (weights, config, card, scores; not the checkpoints) to the Hub."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, ignore_patterns=["checkpoints/*", "*.jsonl"])


def model_card(args: TrainArgs, config: SEPConfig, scores: dict, trainer: SEPTrainer | None = None) -> str:
    """README.md of a trained SEP model: data, backbone, schedule and SAMRS-validation mIoU."""
    hub_ids = [spec for spec in args.datasets.values() if not os.path.exists(spec)]
    front = ["---", "library_name: transformers", "pipeline_tag: image-segmentation",
             "tags: [semantic-segmentation, remote-sensing, samrs, sep, upernet]"]
    if hub_ids:
        front.append("datasets: [" + ", ".join(hub_ids) + "]")
    front.append("---")
    lengths = dict(zip(trainer.subsets, trainer.lengths)) if trainer else {}
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
        f"| optimizer | AdamW (0.9, 0.999), lr {trainer.lr if trainer else args.lr}, weight decay "
        f"{trainer.weight_decay if trainer else args.weight_decay}, cosine to {trainer.min_lr if trainer else args.min_lr} |",
        "", "## SAMRS validation (centre crops, mIoU %)", "",
    ]
    if scores:
        lines += ["| subset | images | mIoU | mF1 | OA |", "|---|---|---|---|---|"]
        for s, r in scores.items():
            lines.append(f"| {s} | {r['images']} | {100 * r['mIoU']:.2f} | {100 * r['mF1']:.2f} | {100 * r['OA']:.2f} |")
        lines.append(f"\nCrop size {args.eval_crop_size}" + (
            f", first {args.eval_max_samples} images per subset" if args.eval_max_samples else "") + ".")
    else:
        lines.append("No validation split was given, so there are no scores.")
    lines += ["", "## Use", "", "```python", "import samrs_hf.sep  # registers the 'sep' model type",
              "from transformers import AutoModelForSemanticSegmentation",
              "model = AutoModelForSemanticSegmentation.from_pretrained(PATH_OR_REPO)",
              "logits = model(pixel_values, subset=\"sota\").logits", "```", "",
              "`model.export(\"sota\", DIR)` writes a plain `UperNetForSemanticSegmentation` that loads without "
              "this package, with its image processor, so `pipeline(\"image-segmentation\", model=DIR)` runs it; "
              "`samrs_hf.sep.from_sep(PATH, num_labels)` starts fine-tuning from it.", ""]
    return "\n".join(lines)


def clean_checkpoints(output_dir, keep: int) -> None:
    """Remove all but the newest ``keep`` checkpoints."""
    for path in checkpoint_dirs(output_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)


# -- fine-tuning (paper Sec. 4.2, Tables 3-6) --------------------------------------------------------
@dataclass
class FinetuneArgs:
    task: str
    root: str
    init: str
    output_dir: str
    train_fraction: float | None = None
    max_steps: int = 80000
    batch_size: int = 8
    crop_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    min_lr: float | None = None
    mixed_precision: str = "no"
    gradient_accumulation_steps: int = 1
    num_workers: int = 4
    seed: int = 0
    cache_dir: str | None = None
    eval_batch_size: int = 4
    log_every: int = 50
    cpu: bool = False
    overwrite: bool = False


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


def run_finetune(args: FinetuneArgs) -> dict:
    """Fine-tune on Potsdam / iSAID crops and report OA / mF1 / mIoU on the evaluation split."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from ..sources.records import Report
    from .evaluation import IMAGENET_MEAN, IMAGENET_STD, confusion_for, json_safe
    from .finetune_data import TASKS, CropDataset, load_task
    from .modeling_sep import segmentation_loss
    from .processing import image_processor
    from ..analysis.metrics import scores_from_confusion

    if args.task not in TASKS:
        raise ValueError(f"--task must be one of {sorted(TASKS)}, got {args.task!r}")
    acc = Accelerator(mixed_precision=args.mixed_precision, cpu=args.cpu,
                      gradient_accumulation_steps=args.gradient_accumulation_steps)
    out = Path(args.output_dir)
    earlier = earlier_run(out, FINETUNE_RUN_FILES, args.overwrite)  # before minutes of cutting crops
    cache = Path(args.cache_dir) if args.cache_dir else out / "crops"
    report = Report()
    train_split, eval_split = TASKS[args.task]["splits"]
    with acc.main_process_first():
        train_pairs, names = load_task(args.task, args.root, train_split, cache, fraction=args.train_fraction,
                                       seed=args.seed, report=report)
        eval_pairs, _ = load_task(args.task, args.root, eval_split, cache, report=report)
    set_seed(args.seed)
    model, init_kind = finetune_model(args.init, names)
    defaults = table8_defaults(model.config.backbone_config.model_type, finetune=True)
    lr = args.lr if args.lr is not None else defaults["lr"]
    wd = args.weight_decay if args.weight_decay is not None else defaults["weight_decay"]
    min_lr = args.min_lr if args.min_lr is not None else defaults["min_lr"]
    replicas = acc.num_processes * args.gradient_accumulation_steps
    if args.batch_size % replicas:
        raise ValueError(f"--batch-size {args.batch_size} must divide over {replicas} process x accumulation steps")
    crop = args.crop_size or TASKS[args.task]["crop"]
    optimizer, scheduler = build_optimizer(model, lr, wd, min_lr, args.max_steps)
    model, optimizer = acc.prepare(model, optimizer)
    sampler = ProportionalBatchSampler([len(train_pairs)], args.batch_size // replicas, seed=args.seed,
                                       num_steps=args.max_steps * args.gradient_accumulation_steps,
                                       num_replicas=acc.num_processes, rank=acc.process_index)
    train_set = CropDataset(train_pairs, crop, IMAGENET_MEAN, IMAGENET_STD, train=True, seed=args.seed)
    loader = iter(torch.utils.data.DataLoader(
        train_set, batch_sampler=sampler, num_workers=args.num_workers,
        collate_fn=pair_collate))
    if acc.is_main_process:
        remove_run(earlier, out)
    model.train()
    history = []
    for step in tqdm(range(1, args.max_steps + 1), desc=f"fine-tune {args.task}", disable=not acc.is_main_process):
        for _ in range(args.gradient_accumulation_steps):
            x, y = next(loader)
            with acc.accumulate(model):
                logits = model(pixel_values=x.to(acc.device)).logits
                loss = segmentation_loss(logits, y.to(acc.device))
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(f"non-finite loss at fine-tuning step {step}")
                acc.backward(loss)
                if acc.sync_gradients:
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
        if (args.log_every and step % args.log_every == 0) or step == args.max_steps:
            history.append({"step": step, "loss": float(loss.detach()), "lr": scheduler.get_last_lr()[0]})
    acc.wait_for_everyone()
    result = {"task": args.task, "init": args.init, "init_kind": init_kind, "train_fraction": args.train_fraction,
              "train_crops": len(train_pairs), "eval_crops": len(eval_pairs), "steps": args.max_steps,
              "lr": lr, "weight_decay": wd, "min_lr": min_lr, "history": history, "problems": report.to_dict()}
    if acc.is_main_process:
        model = acc.unwrap_model(model)
        eval_set = CropDataset(eval_pairs, crop, IMAGENET_MEAN, IMAGENET_STD, train=False)
        cm = confusion_for(model, torch.utils.data.DataLoader(eval_set, batch_size=args.eval_batch_size),
                           len(names), device=acc.device, desc=f"eval {args.task} {eval_split}")
        result["scores"] = scores_from_confusion(cm, names)
        result["confusion_matrix"] = cm.tolist()
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        image_processor(IMAGENET_MEAN, IMAGENET_STD).save_pretrained(out)  # what CropDataset used
        (out / "finetune_results.json").write_text(json.dumps(json_safe(result), indent=2))
    return result
