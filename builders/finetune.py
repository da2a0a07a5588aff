"""Fine-tune a SEP model (or a plain backbone) on ISPRS Potsdam or iSAID (paper Sec. 4.2, App. A.6).

    accelerate launch builders/finetune.py --task potsdam --root DATA/potsdam --init runs/sep-r50 \
        --output-dir runs/potsdam-r50 [--train-fraction 0.01]

``--init`` is a SEP model folder / Hub id (backbone + decoder from SEP, fresh head) or a backbone
spec as in train_sep.py (ImageNet-style baseline). Crops are cut once into ``--cache-dir``.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=["potsdam", "isaid"], required=True)
    p.add_argument("--root", required=True, help="dataset root in its release layout (see finetune_data.py)")
    p.add_argument("--init", required=True, help="SEP model folder / Hub id, or a backbone spec (resnet50, ...)")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--train-fraction", type=float, help="train on this deterministic fraction of crops (0.01/0.03/0.05)")
    p.add_argument("--max-steps", type=int, default=80000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop-size", type=int, help="training crop (default: 512 Potsdam, 896 iSAID)")
    p.add_argument("--lr", type=float, help="default: Table 8 for the backbone")
    p.add_argument("--weight-decay", type=float, help="default: Table 8 fine-tuning value for the backbone")
    p.add_argument("--min-lr", type=float, help="default: Table 8 for the backbone")
    p.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no")
    p.add_argument("--gradient-accumulation-steps", type=int, default=1)
    p.add_argument("--num-workers", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", help="where crops are written (default: OUTPUT_DIR/crops)")
    p.add_argument("--eval-batch-size", type=int, default=4)
    p.add_argument("--log-every", type=int, default=50, help="steps between loss records (0: the last step only)")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier fine-tuned model in --output-dir (deletes its weights, config and "
                        "finetune_results.json; the crop cache and other files stay); without it it is refused")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from samrs_hf.sources.records import SourceError
    from samrs_hf.sep.trainer import FinetuneArgs, NonFiniteLossError, run_finetune

    try:
        result = run_finetune(FinetuneArgs(**vars(args)))
    except (ValueError, OSError, SourceError, NonFiniteLossError) as exc:
        print(f"finetune: error: {exc}", file=sys.stderr)
        return 2
    if "scores" in result:
        s = result["scores"]
        print(f"{args.task}: OA {100 * s['OA']:.2f}  mF1 {100 * s['mF1']:.2f}  mIoU {100 * s['mIoU']:.2f}")
        for name, v in s["IoU"].items():
            print(f"  {name:<22} IoU {100 * v:6.2f}  F1 {100 * s['F1'][name]:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
