"""SEP training throughput: our loop (SEPTrainer.train_step on Accelerate) vs a plain PyTorch loop.

Same model config, same initial weights, same in-memory batches, the same recipe (forward per subset or
collective, gradient clipping); blocks of steps are
interleaved so machine load hits both alike. Prints steps/s and the ratio ours/plain (target >= 0.9).

Then the full pipeline in steady state (after --warmup steps: DataLoader workers started, caches warm):
the trainer's own micro-batches (PNG decode + augmentation in --workers workers) into train_step, and its
ratio to the plain loop; with --new-pipeline also the run with ``--decode-cache`` and ``--augment-on
device`` (the cache is built before the timing; its build time is printed), and its ratio (issue 20
target 4: >= 0.9).

    python benchmarks/bench_sep.py [--steps 30] [--rounds 3] [--batch-size 12] [--crop 64] [--threads 1] \
        [--image-size N] [--new-pipeline]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=30, help="steps per timed block")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--hidden-size", type=int, default=32)
    p.add_argument("--backbone", default="tiny-resnet")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the full-pipeline run")
    p.add_argument("--image-size", type=int, default=None,
                   help="side of the synthetic images (default: max(64, --crop); SAMRS' are 600-1024)")
    p.add_argument("--images", type=int, default=64, help="training images per synthetic subset")
    p.add_argument("--warmup", type=int, default=3, help="full pipeline: steps before the timing")
    p.add_argument("--new-pipeline", action="store_true",
                   help="also time the full pipeline with --decode-cache and --augment-on device")
    return p


def worker_costs(trainer, cache_dir: str, n: int = 96) -> list[str]:
    """Per-example time of one DataLoader worker's part (in this process), the three ways, and of the
    device part per micro-batch of ``n``: where the full pipeline's time goes."""
    from samrs_hf.sep.data import SEPTrainDataset, collate
    from samrs_hf.sep.decode_cache import open_decode_cache
    from samrs_hf.sep.photometric_device import device_batches

    sets = [trainer.train_sets[s] for s in trainer.subsets]
    caches = [open_decode_cache(cache_dir, s, trainer.train_sets[s]) for s in trainer.subsets]
    mean, std, crop = trainer.unwrapped.config.image_mean, trainer.unwrapped.config.image_std, trainer.args.crop_size
    keys = [(i % len(sets), (i * 7) % len(sets[i % len(sets)]), i // 8, i % 8) for i in range(n)]
    lines = []
    for name, kw in (("PNG decode + whole augmentation", {}), ("decode cache + whole augmentation", {"caches": caches}),
                     ("decode cache + geometric part (--augment-on device)",
                      {"caches": caches, "photometric_on_device": True})):
        dataset = SEPTrainDataset(sets, crop, mean, std, **kw)
        t = time.perf_counter()
        items = [dataset[k] for k in keys]
        lines.append(f"worker, {name}: {(time.perf_counter() - t) / n * 1e3:.2f} ms/example")
    device = trainer.accelerator.device
    t = time.perf_counter()
    batch = next(device_batches(iter([collate(items)]), device, mean, std))
    float(batch["pixel_values"].sum())
    lines.append(f"device part (photometric + normalise) on {device}: {(time.perf_counter() - t) * 1e3:.1f} ms per {n}")
    return lines


def pipeline_rates(trainer, args) -> list[float]:
    """Steps/s of ``--rounds`` consecutive blocks of the trainer's own batches into ``train_step``."""
    batches, step, rates = iter(trainer.batches(0)), 0, []
    for _ in range(args.warmup):
        step += 1
        float(trainer.train_step([next(batches)], step).sum())
    for _ in range(args.rounds):
        t = time.perf_counter()
        for _ in range(args.steps):
            step += 1
            losses = trainer.train_step([next(batches)], step)
        float(losses.sum())  # synchronise
        rates.append(args.steps / (time.perf_counter() - t))
    return rates


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)

    from samrs_hf.sep import SEPForSemanticSegmentation
    from samrs_hf.sep.synthetic import write_synthetic_subset
    from samrs_hf.sep.pretrain import SEPTrainer, TrainArgs
    from samrs_hf.sep.training import build_optimizer

    tmp = tempfile.mkdtemp()
    size = args.image_size or max(64, args.crop)
    data = {s: str(write_synthetic_subset(f"{tmp}/{s}", s, num_train=args.images, num_val=4, size=size))
            for s in ("sota", "sior", "fast")}
    targs = TrainArgs(datasets=data, output_dir=f"{tmp}/run", backbone=args.backbone, max_steps=10 ** 6,
                      batch_size=args.batch_size, crop_size=args.crop, hidden_size=args.hidden_size,
                      num_workers=0, checkpoint_every=0, log_every=10 ** 9)
    trainer = SEPTrainer(targs)
    device = trainer.accelerator.device
    subsets = trainer.subsets

    # In-memory batches from the real data path (decoded and augmented once).
    loader = iter(trainer.batches(0))
    batches = [next(loader) for _ in range(8)]
    sizes = batches[0]["subset_sizes"]

    plain = SEPForSemanticSegmentation(trainer.unwrapped.config).to(device)
    plain.load_state_dict(trainer.unwrapped.state_dict())
    plain.train()
    opt, sched = build_optimizer(plain, trainer.lr, trainer.weight_decay, trainer.min_lr, 10 ** 6)

    per_subset, clip = trainer.forward_mode == "per-subset", targs.max_grad_norm

    def plain_block(n):
        for i in range(n):
            b = batches[i % len(batches)]
            out = plain(b["pixel_values"].to(device), labels=b["labels"].to(device), subset=subsets,
                        subset_sizes=b["subset_sizes"], per_subset=per_subset)
            out.loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(plain.parameters(), clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        float(out.loss.detach())  # synchronise

    step = [0]

    def ours_block(n):
        for i in range(n):
            step[0] += 1
            losses = trainer.train_step([batches[i % len(batches)]], step[0])
        float(losses.sum())

    def timed(fn):
        t = time.perf_counter()
        fn(args.steps)
        return args.steps / (time.perf_counter() - t)

    plain_block(3)
    ours_block(3)  # warm-up
    plain_rates, our_rates = [], []
    for _ in range(args.rounds):
        plain_rates.append(timed(plain_block))
        our_rates.append(timed(ours_block))
    plain_sps, our_sps = statistics.median(plain_rates), statistics.median(our_rates)

    # Full pipeline in steady state: the trainer's DataLoader feeding train_step.
    n_steps = args.warmup + args.rounds * args.steps
    pipelines = {"PNG decode + augment in workers": {}}
    if args.new_pipeline:
        pipelines["--decode-cache, --augment-on device"] = {"decode_cache": f"{tmp}/decode-cache",
                                                            "augment_on": "device"}
    full = {}
    for name, extra in pipelines.items():
        t = time.perf_counter()
        trainer_kw = {**targs.__dict__, "output_dir": f"{tmp}/full-{len(full)}", "max_steps": n_steps,
                      "num_workers": args.workers, **extra}
        pipeline = SEPTrainer(TrainArgs(**trainer_kw))
        setup = time.perf_counter() - t
        rates = pipeline_rates(pipeline, args)
        full[name] = (statistics.median(rates), rates, setup)
        del pipeline
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    # after the runs, so the new pipeline's set-up time holds the cache build
    costs = worker_costs(trainer, f"{tmp}/decode-cache", args.batch_size) if args.new_pipeline else []

    print(f"device: {device}; backbone {args.backbone}; batch {args.batch_size} ({sizes} per subset); "
          f"crop {args.crop}; images {size}x{size}, {args.images} per subset; forward {trainer.forward_mode}; "
          f"clip {clip}; torch threads {args.threads}")
    print(f"plain PyTorch loop : {plain_sps:7.2f} steps/s  (rounds: {', '.join(f'{r:.2f}' for r in plain_rates)})")
    print(f"SEP trainer loop   : {our_sps:7.2f} steps/s  (rounds: {', '.join(f'{r:.2f}' for r in our_rates)})")
    print(f"ratio ours/plain   : {our_sps / plain_sps:7.3f}  (target >= 0.9)")
    for name, (sps, rates, setup) in full.items():
        print(f"full pipeline, {name} ({args.workers} workers): {sps:7.2f} steps/s  "
              f"(rounds: {', '.join(f'{r:.2f}' for r in rates)}; set-up {setup:.1f} s)")
        print(f"  ratio full/plain : {sps / plain_sps:7.3f}  (issue 20 target 4: >= 0.9)")
    for line in costs:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
