"""Table 1 prompt ablation, distributed with Accelerate.

    accelerate launch builders/ablate_hrsc.py --source HRSC2016 --split test --out ablation/
    accelerate launch builders/ablate_hrsc.py --source coco.json --format coco --split all \\
        --prompts "H-Box,CP+H-Box" --out ablation-coco/

Images are dealt round-robin over the processes; the main process gathers the per-instance
intersections/unions and writes table1.{md,csv,json} and instances.csv (see samrs_hf.analysis.ablation).
"""

import argparse
import sys

from samrs_hf.analysis.ablation_models import main
from samrs_hf.cli.cmd_ablate import AblationArgs
from samrs_hf.common.errors import run_command
from samrs_hf.common.options import add_options, from_args


def cli(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(parser, AblationArgs)
    args = parser.parse_args(argv)
    return run_command("ablate_hrsc", lambda: main(from_args(AblationArgs, args)))


if __name__ == "__main__":
    sys.exit(cli())
