"""The SEP scripts' command line. Options are declared once, as dataclass fields with their help in
``field(metadata=...)``; transformers' ``HfArgumentParser`` turns them into ``--kebab-case`` options, each
dataclass checks its values in ``__post_init__`` (the same checks for Python callers), and
:func:`run_script` ends through :func:`samrs_hf.common.errors.run_command` (one-line error, exit code 2).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, get_args

from ..common.errors import run_command

MixedPrecision = Literal["no", "fp16", "bf16"]


class AppendString(argparse.Action):
    """``append`` that keeps each value a string, for a field whose type is what ``__post_init__`` makes
    of the strings (``HfArgumentParser`` passes the field's type as the argparse type)."""

    def __init__(self, option_strings, dest, type=None, **kwargs):  # noqa: A002 - argparse's keyword
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), values])


def check_at_least(args, minimum: int, *names: str) -> None:
    """ValueError naming the option when a given (not None) value is below ``minimum``."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < minimum:
            need = {0: "non-negative", 1: "positive"}.get(minimum, f"at least {minimum}")
            raise ValueError(f"--{name.replace('_', '-')} must be {need}, got {value}")


# The authors' pre-training validates every 1,000 iterations up to 10k, then every 5,000.
OFFICIAL_EVAL_SCHEDULE = "1000:10000,5000"


@dataclass(frozen=True)
class EvalSchedule:
    """``--eval-every``: every ``every`` steps up to step ``until`` (0: no limit), then every ``then``."""

    every: int
    until: int = 0
    then: int = 0

    def due(self, step: int) -> bool:
        if not self.every:
            return False
        if self.until and step > self.until:
            return bool(self.then) and step % self.then == 0
        return step % self.every == 0


def parse_eval_schedule(text) -> EvalSchedule:
    """``official`` | ``N`` (0: never) | ``N:UNTIL,M``; ValueError naming ``--eval-every`` otherwise."""
    spec = OFFICIAL_EVAL_SCHEDULE if str(text).strip() == "official" else str(text).strip()
    head, _, then = spec.partition(",")
    every, colon, until = head.partition(":")
    try:
        numbers = [int(every), int(until) if colon else 0, int(then) if then else 0]
    except ValueError:
        numbers = None
    if numbers is None or min(numbers) < 0 or bool(colon) != bool(then) or (colon and not numbers[1]):
        raise ValueError(f"--eval-every must be 'official', N or N:UNTIL,M (non-negative steps), got {text!r}")
    return EvalSchedule(*numbers)


@dataclass(kw_only=True)
class RunArgs:
    """Options SEP pre-training and fine-tuning share."""

    output_dir: str = field(metadata={"help": "where the model, its results and (pre-training) checkpoints go"})
    max_steps: int = field(default=80000, metadata={"help": "optimizer steps"})
    lr: float | None = field(default=None, metadata={"help": "initial LR (None: Table 8's for the backbone)"})
    weight_decay: float | None = field(default=None, metadata={
        "help": "None: Table 8's for the backbone (its fine-tuning value when fine-tuning)"})
    min_lr: float | None = field(default=None, metadata={"help": "cosine floor (None: Table 8's for the backbone)"})
    mixed_precision: MixedPrecision = field(default="no", metadata={"help": "Accelerate mixed precision"})
    gradient_accumulation_steps: int = field(default=1, metadata={
        "help": "micro-batches per optimizer step and process"})
    num_workers: int = field(default=4, metadata={"help": "DataLoader workers (decode + augment)"})
    pin_memory: bool = field(default=True, metadata={
        "help": "hand the batches over in page-locked memory, so the copy to a CUDA device runs without blocking "
                "(off on other devices; --no-pin-memory: never)"})
    prefetch_factor: int = field(default=4, metadata={
        "help": "micro-batches each DataLoader worker prepares ahead (with --num-workers > 0)"})
    seed: int = field(default=0, metadata={"help": "seeds weights, sampling and augmentation"})
    cpu: bool = field(default=False, metadata={"help": "force CPU"})
    overwrite: bool = field(default=False, metadata={
        "help": "replace an earlier run in --output-dir (deletes only that run's weights, config, processor, card, "
                "results, log and checkpoints/step-*; other files, such as the crop cache, stay); without it such "
                "a folder is refused"})

    def __post_init__(self):
        check_at_least(self, 1, "max_steps", "gradient_accumulation_steps", "prefetch_factor")
        check_at_least(self, 0, "lr", "weight_decay", "min_lr", "num_workers")
        if self.mixed_precision not in get_args(MixedPrecision):
            raise ValueError(f"--mixed-precision must be one of {get_args(MixedPrecision)}, "
                             f"got {self.mixed_precision!r}")


AugmentOn = Literal["workers", "device"]


@dataclass(kw_only=True)
class InputArgs:
    """How SEP pre-training reads and augments its data (part of ``TrainArgs``; checked by
    :meth:`check_input`)."""

    streaming: bool = field(default=False, metadata={
        "help": "read the datasets with load_dataset(..., streaming=True): no local Arrow copy; the per-subset "
                "batch sizes come from the split sizes in the dataset info; validation holds the first "
                "--eval-max-samples (default 500) rows per subset in memory"})
    shuffle_buffer: int = field(default=1000, metadata={"help": "--streaming: shuffle buffer (rows per subset)"})
    decode_cache: str | None = field(default=None, metadata={
        "metavar": "DIR", "help": "decode each training image and semantic map once into uint8 arrays under DIR "
                                  "(per subset, named by a hash of the dataset's Arrow files; 4 bytes per pixel), which "
                                  "the workers then read a crop's region of instead of decoding PNGs; "
                                  "map-style datasets only (not with --streaming)"})
    augment_on: AugmentOn = field(default="workers", metadata={
        "help": "workers: the whole augmentation in the DataLoader workers; device: the workers do the uint8 "
                "scale/crop/flips/rot90, the training device the photometric changes and the normalisation "
                "(same random draws)"})

    def check_input(self):
        check_at_least(self, 1, "shuffle_buffer")
        if self.augment_on not in get_args(AugmentOn):
            raise ValueError(f"--augment-on must be one of {get_args(AugmentOn)}, got {self.augment_on!r}")
        if self.decode_cache and self.streaming:
            raise ValueError("--decode-cache caches map-style datasets and does not apply to --streaming: drop one")


def parse_args(args_class, argv=None, description: str | None = None):
    """``argv`` (default: ``sys.argv[1:]``) parsed into ``args_class``; argparse's usage errors exit 2."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(args_class, description=description)
    args, rest = parser.parse_args_into_dataclasses(argv, return_remaining_strings=True, look_for_args_file=False)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


def run_script(prog: str, args_class, run: Callable, argv=None, description: str | None = None) -> int:
    """A builder script's ``main``: parse and check the options, ``run(args)``; bad input is one line and 2."""
    return run_command(prog, lambda: run(parse_args(args_class, argv, description)))
