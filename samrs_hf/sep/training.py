"""The training step SEP pre-training and fine-tuning share: AdamW with transformers' cosine schedule, the
proportional data loader, one optimizer step over gradient-accumulation micro-batches that clips the
gradient norm and stops on a NaN/inf loss, and the step loop with its progress bar.

One optimizer step consumes ``gradient_accumulation_steps`` micro-batches per process; the scheduler is
stepped by hand once per optimizer step (Accelerate would step it once per process).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..common.errors import SamrsError
from .data import ProportionalBatchSampler


class NonFiniteLossError(SamrsError, RuntimeError):
    """Training hit a NaN/inf loss; the message names the step (pre-training: the subsets and the kept
    checkpoint). ``losses`` holds the per-part losses of the micro-batch that failed."""

    def __init__(self, message: str, losses: torch.Tensor | None = None):
        super().__init__(message)
        self.losses = losses


def build_optimizer(model, lr: float, weight_decay: float, min_lr: float, max_steps: int, params=None):
    """AdamW (0.9, 0.999) and a cosine from ``lr`` at step 0 to ``min_lr`` at ``max_steps``, no warmup
    (Table 8). The rate is passed rather than ``min_lr`` so that ``lr`` 0 gives a zero floor, not 1/0.
    ``params``: parameter groups (:func:`.param_groups.param_groups`; each group's own lr and weight decay
    and the same cosine shape, floor ``min_lr / lr`` of its lr); default one group of every parameter."""
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    optimizer = torch.optim.AdamW(model.parameters() if params is None else params, lr=lr, betas=(0.9, 0.999),
                                  weight_decay=weight_decay)
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, num_warmup_steps=0, num_training_steps=max_steps, min_lr_rate=min_lr / lr if lr else 0.0)
    return optimizer, scheduler


def resolve_hparams(args, defaults: dict) -> dict:
    """``lr`` / ``weight_decay`` / ``min_lr`` of the options, each defaulting to Table 8's value."""
    return {k: getattr(args, k) if getattr(args, k) is not None else defaults[k]
            for k in ("lr", "weight_decay", "min_lr")}


def micro_batch_size(batch_size: int, num_processes: int, accumulation: int) -> int:
    """What one process feeds per accumulation step: the global batch split evenly."""
    if batch_size % (num_processes * accumulation):
        raise ValueError(f"--batch-size {batch_size} must divide evenly over {num_processes} "
                         f"process(es) x {accumulation} accumulation step(s)")
    return batch_size // (num_processes * accumulation)


def proportional_loader(dataset, lengths: list[int], micro_batch: int, args, accelerator, collate_fn,
                        start_step: int = 0, rounding: str = "largest-remainder"):
    """Micro-batches of this process from optimizer step ``start_step`` to ``args.max_steps``."""
    g = args.gradient_accumulation_steps
    sampler = ProportionalBatchSampler(
        lengths, micro_batch, seed=args.seed, start_step=start_step * g, num_steps=(args.max_steps - start_step) * g,
        num_replicas=accelerator.num_processes, rank=accelerator.process_index, rounding=rounding)
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_fn,
                                       **loader_options(args, accelerator))


def loader_options(args, accelerator) -> dict:
    """The DataLoader settings of ``--num-workers``, ``--pin-memory`` (only when the device is CUDA) and
    ``--prefetch-factor``. Workers need not persist: a training loader makes one pass over its sampler."""
    return {"num_workers": args.num_workers, "pin_memory": bool(args.pin_memory and accelerator.device.type == "cuda"),
            "prefetch_factor": args.prefetch_factor if args.num_workers else None}


def optimizer_step(accelerator, model, optimizer, scheduler, micro_batches, loss_fn: Callable, step: int,
                   label: str, max_grad_norm: float = 0.0) -> torch.Tensor:
    """One optimizer step over its micro-batches; ``loss_fn(batch)`` gives (the loss to back-propagate, the
    losses to check and report). Returns the latter averaged over the micro-batches. ``max_grad_norm`` > 0
    clips the gradients' total norm before the update, through Accelerate (unscaled under fp16, all
    processes' gradients already reduced).

    BatchNorm running stats change in the forward, before the loss can be checked: a non-finite loss
    restores the step's starting buffers (the weights still hold the last good update) and raises
    :class:`NonFiniteLossError` before anything is back-propagated."""
    buffers = [b.detach().clone() for b in model.buffers()]
    total = 0.0
    for batch in micro_batches:
        with accelerator.accumulate(model):
            loss, parts = loss_fn(batch)
            parts = parts.detach()
            if not bool(torch.isfinite(parts).all()):
                with torch.no_grad():
                    for b, saved in zip(model.buffers(), buffers):
                        b.copy_(saved)
                raise NonFiniteLossError(f"non-finite loss at {label} step {step}", parts)
            total = total + parts / len(micro_batches)
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                if max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
    return total


def log_due(step: int, every: int, max_steps: int) -> bool:
    """``--log-every N``: every N steps and the last one (0: the last step only)."""
    return bool(every and step % every == 0) or step == max_steps


def run_steps(loader, start_step: int, max_steps: int, accumulation: int, step_fn: Callable,
              after_step: Callable, desc: str, main_process: bool = True) -> None:
    """Optimizer steps ``start_step + 1 .. max_steps``: ``step_fn(micro_batches, step)`` gives the losses,
    then ``after_step(step, losses)`` logs, evaluates or saves and may return a progress-bar postfix."""
    from tqdm.auto import tqdm

    batches = iter(loader)
    bar = tqdm(total=max_steps, initial=start_step, desc=desc, disable=not main_process)
    for step in range(start_step + 1, max_steps + 1):
        losses = step_fn([next(batches) for _ in range(accumulation)], step)
        postfix = after_step(step, losses)
        if postfix:
            bar.set_postfix(postfix)
        bar.update(1)
    bar.close()
