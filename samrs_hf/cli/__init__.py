"""The ``samrs`` command. Each subcommand lives in its own ``cmd_*`` module: ``HELP``, ``DESCRIPTION``,
an ``OPTIONS`` dataclass (its fields are the options, see :mod:`samrs_hf.common.options`) and
``run(options)``.

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
from ..common.options import add_options, from_args

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
    ("convert-sep", "cmd_convert_sep"),
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
    for name, module in COMMANDS:
        add_command(sub, name, importlib.import_module(f"{__name__}.{module}"))
    return parser


def add_command(subparsers, name: str, module) -> None:
    """``samrs NAME``: the module's ``HELP``, ``DESCRIPTION``, optional ``EPILOG``, and its ``OPTIONS``
    dataclass, whose instance ``run`` receives."""
    epilog = getattr(module, "EPILOG", None)  # laid out by hand: kept as written
    p = subparsers.add_parser(name, help=module.HELP, description=module.DESCRIPTION, epilog=epilog,
                              formatter_class=argparse.RawDescriptionHelpFormatter if epilog else
                              argparse.HelpFormatter)
    add_options(p, module.OPTIONS)
    p.set_defaults(func=module.run, options=module.OPTIONS)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # Bad input and environment problems (options included: their dataclass checks them) are one clear
    # line; --verbose keeps the traceback.
    return run_command(f"samrs {args.command}", lambda: args.func(from_args(args.options, args)),
                       verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
