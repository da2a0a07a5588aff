"""SEP pre-training on packaged SAMRS subsets (paper Sec. 4.1).

    accelerate launch builders/train_sep.py --dataset sota=PATH_OR_REPO --dataset sior=... \
        --dataset fast=... --backbone resnet50 --output-dir runs/sep-r50 [--max-steps 80000] [--batch-size 96]

LR / weight decay / minimum LR default to Table 8 for the backbone family. Runs on one process
too (plain ``python builders/train_sep.py ...``). The options are ``samrs_hf.sep.pretrain.TrainArgs``.
"""

from __future__ import annotations

import sys

from samrs_hf.sep.options import run_script
from samrs_hf.sep.pretrain import SEPTrainer, TrainArgs


def train(args: TrainArgs) -> int:
    result = SEPTrainer(args).train()
    for subset, r in result.get("scores", {}).items():
        print(f"{subset}: mIoU {100 * r['mIoU']:.2f}")
    print(f"model written to {result['output_dir']}")
    return 0


def main(argv=None) -> int:
    return run_script("train_sep", TrainArgs, train, argv, description=__doc__.split("\n")[0])


if __name__ == "__main__":
    sys.exit(main())
