"""Table 1 prompt ablation, distributed with Accelerate.

    accelerate launch builders/ablate_hrsc.py --source HRSC2016 --split test --out ablation/
    accelerate launch builders/ablate_hrsc.py --source coco.json --format coco --split all \\
        --prompts "H-Box,CP+H-Box" --out ablation-coco/

Images are dealt round-robin over the processes; the main process gathers the per-instance
intersections/unions and writes table1.{md,csv,json} and instances.csv (see samrs_hf.analysis.ablation).
"""

import argparse
import sys

from samrs_hf.analysis.ablation import main
from samrs_hf.cli.cmd_ablate import add_arguments
from samrs_hf.common.errors import run_command


def cli(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_command("ablate_hrsc", main, args)


if __name__ == "__main__":
    sys.exit(cli())
