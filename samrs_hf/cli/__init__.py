"""The ``samrs`` command. Each subcommand lives in its own ``cmd_*`` module with ``register``.

Modules import their heavy dependencies (torch, datasets) inside ``run`` so ``samrs --help``
stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .. import __version__
from ..common.errors import run_command

# (command, module) in the order ``samrs --help`` lists them.
COMMANDS = (
    ("inspect", "cmd_inspect"),
    ("build", "cmd_build"),
    ("package", "cmd_package"),
    ("push", "cmd_push"),
    ("convert-release", "cmd_convert_release"),
    ("export-coco", "cmd_export_coco"),
    ("stats", "cmd_stats"),
    ("visualize", "cmd_visualize"),
    ("ablate", "cmd_ablate"),
    ("eval-sep", "cmd_eval_sep"),
    ("export-sep", "cmd_export_sep"),
    ("demo", "cmd_demo"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samrs",
        description="SAMRS: remote-sensing detection datasets -> SAM segmentation datasets on the Hub.",
    )
    parser.add_argument("--version", action="version", version=f"samrs_hf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every skip and note")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for _, module in COMMANDS:
        importlib.import_module(f"{__name__}.{module}").register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # Bad input and environment problems: one clear line; --verbose keeps the traceback.
    return run_command(f"samrs {args.command}", args.func, args, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
