"""The one place that turns an expected error into ``<prog>: error: <message>`` and an exit code.

Every ``samrs`` command and every ``builders/*.py`` script runs through :func:`run_command`, so a bad
input reads the same everywhere: one line on stderr, exit 2 (or the error's own ``exit_code``), and the
traceback only with ``--verbose``.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from ..common.errors import SamrsError

EXPECTED_ERRORS = (SamrsError, OSError, ValueError)
"""Bad input and environment problems (missing files, full disks, bad option values): not bugs."""


def run_command(prog: str, func: Callable[..., Any], *args, verbose: bool = False, **kwargs) -> int:
    """``func(*args, **kwargs)`` as a process would end: its int result (None: 0), or for an
    :data:`EXPECTED_ERRORS` one line ``<prog>: error: ...`` on stderr and the exit code."""
    try:
        return int(func(*args, **kwargs) or 0)
    except EXPECTED_ERRORS as exc:
        if verbose:
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
