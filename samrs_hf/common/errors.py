"""The project's error base: every expected failure (bad input, refused output, unreachable Hub) is a
:class:`SamrsError`, so callers and the CLI catch one type and print one line instead of a traceback.

Each stage subclasses it where it raises (``sources.records.SourceError``, ``hub.packaging.PackagingError``,
``hub.repo.PushError``, ``common.safe_load.UnsafePickleError``, ...); a subclass that was a ValueError
or OSError before stays one, so older ``except`` clauses keep working.
"""

from __future__ import annotations

import sys
from typing import Any, Callable


class SamrsError(Exception):
    """Base of samrs_hf's expected errors; the message is one line naming the file or option at fault."""

    exit_code: int = 2
    """What ``samrs`` exits with when this error ends a command (see :func:`run_command`)."""


EXPECTED_ERRORS = (SamrsError, OSError, ValueError)
"""Bad input and environment problems (missing files, full disks, bad option values): not bugs."""
# Every ``samrs`` command and every ``builders/*.py`` script ends through run_command, so a bad input
# reads the same everywhere: one line on stderr, exit 2 (or the error's own exit_code), the traceback
# only with --verbose.


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
