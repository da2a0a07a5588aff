"""Options declared once: `samrs build`, the builder scripts and Python get the same BuildConfig."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from samrs_hf.build.config import BuildConfig
from samrs_hf.cli import build_parser
from samrs_hf.common.options import add_options, from_args, option

ROOT = Path(__file__).resolve().parents[1]


def parse_build(argv):
    args = build_parser().parse_args(["build", *argv])
    return from_args(BuildConfig, args)


def test_every_build_field_is_an_option_and_parses_to_the_python_config():
    argv = ["sior", "--source", "src", "--out", "o", "--splits", "trainval", "test", "--tile-size", "0",
            "--iof-thr", "0.5", "--dtype", "bfloat16", "--attn", "eager", "--limit", "3", "--overwrite",
            "--pkl", "--image-batch-size", "2", "--no-progress", "--writer-threads", "3"]
    config = parse_build(argv)
    assert config == BuildConfig(preset="sior", source=Path("src"), out=Path("o"), splits=("trainval", "test"),
                                 tile_size=0, iof_thr=0.5, dtype="bfloat16", attn="eager", limit=3, overwrite=True,
                                 pkl=True, image_batch_size=2, progress=False, writer_threads=3)
    # defaults are the dataclass's, not a second copy in the parser
    assert parse_build(["sota", "--source", "s", "--out", "o"]) == BuildConfig("sota", Path("s"), Path("o"))
    parser = argparse.ArgumentParser()
    add_options(parser, BuildConfig)
    dests = {a.dest for a in parser._actions} - {"help"}
    assert dests == {f.name for f in dataclasses.fields(BuildConfig)}


@pytest.mark.parametrize("argv, message", [
    (["--attn", "flash"], "invalid choice: 'flash'"),
    (["--dtype", "float64"], "invalid choice: 'float64'"),
    (["--image-batch-size", "0"], "--image-batch-size must be >= 1, got 0"),
    (["--limit", "-1"], "--limit must be >= 0, got -1"),
])
def test_bad_build_options_are_one_line_and_exit_2(tmp_path, argv, message):
    """The same check for the CLI, the builder scripts and Python callers."""
    for cmd in ([sys.executable, "-m", "samrs_hf.cli", "build", "sior"],
                [sys.executable, str(ROOT / "builders" / "build_sior.py")]):
        proc = subprocess.run([*cmd, "--source", str(tmp_path), "--out", str(tmp_path / "o"), *argv],
                              capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
    if not message.startswith("invalid choice"):
        key, value = argv[0][2:].replace("-", "_"), int(argv[1])
        with pytest.raises(ValueError, match=message):
            BuildConfig("sior", tmp_path, tmp_path / "o", **{key: value})


def test_option_kinds():
    """Positionals, --no-x for fields defaulting to True, lists, exclusive groups and required options."""

    @dataclasses.dataclass
    class Opts:
        paths: list[str] = option(positional=True, nargs="+", metavar="P", help="inputs")
        to: Path = option(help="where")
        color: bool = option(True, negate="--gray", help="gray output")
        fast: bool = option(False, exclusive="mode", help="fast")
        careful: bool = option(False, exclusive="mode", help="careful")
        n: int | None = option(None, help="count")

    parser = argparse.ArgumentParser()
    add_options(parser, Opts)
    got = from_args(Opts, parser.parse_args(["a", "b", "--to", "x", "--gray", "--fast", "--n", "4"]))
    assert got == Opts(paths=["a", "b"], to=Path("x"), color=False, fast=True, careful=False, n=4)
    with pytest.raises(SystemExit):
        parser.parse_args(["a", "--to", "x", "--fast", "--careful"])
    with pytest.raises(SystemExit):
        parser.parse_args(["a"])  # --to is required: it has no default
