"""The one check of a device option (``samrs build``, the SAM loader, ``samrs eval-sep``): torch's own
parse, then whether this machine has it, so a typo or a missing GPU is one line naming the option before
minutes of loading, not torch's assertion deep in ``.to``. No torch at import (``samrs --help``)."""

from __future__ import annotations

from typing import Any


def parse_device(spec: Any, what: str = "device"):
    """``spec`` as a ``torch.device`` (the spelling only: ``cuda:1`` parses on a machine without GPUs)."""
    import torch

    try:
        return torch.device(spec)
    except (RuntimeError, TypeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{what} {str(spec)!r} is not a torch device ({reason})") from None


def check_device(spec: Any, what: str = "device"):
    """``spec`` as a ``torch.device`` this machine has."""
    import torch

    dev = parse_device(spec, what)
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{what} {str(spec)!r} is not available: no CUDA device on this machine "
                         f"(torch {torch.__version__}); use cpu")
    try:  # any backend (cuda:7 on a 1-GPU host, mps, xpu...): its own reason
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError) as exc:
        reason = str(exc).strip().split(". ")[0].splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{what} {str(spec)!r} is not available: {reason}") from None
    return dev


def default_device():
    """What a command uses without a device option: the GPU when there is one."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
