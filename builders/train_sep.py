"""SEP pre-training on packaged SAMRS subsets (paper Sec. 4.1).

    accelerate launch builders/train_sep.py --dataset sota=PATH_OR_REPO --dataset sior=... \
        --dataset fast=... --backbone resnet50 --output-dir runs/sep-r50 [--max-steps 80000] [--batch-size 96]

LR / weight decay / minimum LR default to Table 8 for the backbone family. Runs on one process
too (plain ``python builders/train_sep.py ...``).
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", action="append", required=True, metavar="SUBSET=PATH_OR_REPO",
                   help="a packaged SAMRS subset (local folder or Hub dataset id); repeat per subset")
    p.add_argument("--backbone", default="resnet50",
                   help="resnet50 | swin-t | convnext-t | vit-b | tiny-resnet | tiny-convnext | Hub id | local folder")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--max-steps", type=int, default=80000)
    p.add_argument("--batch-size", type=int, default=96, help="global batch B over all processes and accumulation")
    p.add_argument("--crop-size", type=int, default=224)
    p.add_argument("--lr", type=float, help="initial LR (default: Table 8 for the backbone)")
    p.add_argument("--weight-decay", type=float, help="default: Table 8 for the backbone")
    p.add_argument("--min-lr", type=float, help="cosine floor (default: Table 8 for the backbone)")
    p.add_argument("--hidden-size", type=int, default=512, help="UperNet decoder channels")
    p.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no")
    p.add_argument("--gradient-accumulation-steps", type=int, default=1)
    p.add_argument("--checkpoint-every", type=int, default=1000, help="steps between checkpoints (0: none)")
    p.add_argument("--keep-checkpoints", type=int, default=0, help="keep only the newest N checkpoints (0: all)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output-dir")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run in --output-dir (deletes its weights, config, card, scores, log "
                        "and checkpoints/step-*; other files stay); without it such a folder is refused")
    p.add_argument("--num-workers", type=int, default=4, help="DataLoader workers (decode + augment)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=0, help="validate every N steps (0: only at the end)")
    p.add_argument("--eval-crop-size", type=int, default=512)
    p.add_argument("--eval-max-samples", type=int, help="validate on the first N images per subset")
    p.add_argument("--log-every", type=int, default=10, help="steps between log lines (0: the last step only)")
    p.add_argument("--report-to", default="none", help="Accelerate tracker: tensorboard, wandb, all, none")
    p.add_argument("--push-to-hub", metavar="REPO", help="upload the final model folder to this Hub repo")
    p.add_argument("--cpu", action="store_true", help="force CPU")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from samrs_hf.sep.data import parse_dataset_args
    from samrs_hf.sep.trainer import NonFiniteLossError, SEPTrainer, TrainArgs

    try:
        targs = TrainArgs(
            datasets=parse_dataset_args(args.dataset), output_dir=args.output_dir, backbone=args.backbone,
            max_steps=args.max_steps, batch_size=args.batch_size, crop_size=args.crop_size, lr=args.lr,
            weight_decay=args.weight_decay, min_lr=args.min_lr, hidden_size=args.hidden_size,
            mixed_precision=args.mixed_precision, gradient_accumulation_steps=args.gradient_accumulation_steps,
            checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints, resume=args.resume,
            num_workers=args.num_workers, seed=args.seed, eval_every=args.eval_every,
            eval_crop_size=args.eval_crop_size, eval_max_samples=args.eval_max_samples, log_every=args.log_every,
            report_to=args.report_to, push_to_hub=args.push_to_hub, cpu=args.cpu, overwrite=args.overwrite)
        result = SEPTrainer(targs).train()
    except (ValueError, OSError, NonFiniteLossError) as exc:
        print(f"train_sep: error: {exc}", file=sys.stderr)
        return 2
    for subset, r in result.get("scores", {}).items():
        print(f"{subset}: mIoU {100 * r['mIoU']:.2f}")
    print(f"model written to {result['output_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
