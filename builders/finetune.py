"""Fine-tune a SEP model (or a plain backbone) on ISPRS Potsdam or iSAID (paper Sec. 4.2, App. A.6).

    accelerate launch builders/finetune.py --task potsdam --root DATA/potsdam --init runs/sep-r50 \
        --output-dir runs/potsdam-r50 [--train-fraction 0.01]

``--init`` is a SEP model folder / Hub id (backbone + decoder from SEP, fresh head) or a backbone
spec as in train_sep.py (ImageNet-style baseline). Crops are cut once into ``--cache-dir``.
The options are ``samrs_hf.sep.finetune.FinetuneArgs``.
"""

from __future__ import annotations

import sys

from samrs_hf.sep.finetune import FinetuneArgs, run_finetune
from samrs_hf.sep.options import run_script


def finetune(args: FinetuneArgs) -> int:
    result = run_finetune(args)
    if "scores" in result:
        s = result["scores"]
        print(f"{args.task}: OA {100 * s['OA']:.2f}  mF1 {100 * s['mF1']:.2f}  mIoU {100 * s['mIoU']:.2f}")
        for name, v in s["IoU"].items():
            print(f"  {name:<22} IoU {100 * v:6.2f}  F1 {100 * s['F1'][name]:6.2f}")
    return 0


def main(argv=None) -> int:
    return run_script("finetune", FinetuneArgs, finetune, argv, description=__doc__.split("\n")[0])


if __name__ == "__main__":
    sys.exit(main())
