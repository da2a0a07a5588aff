"""The project's error base: every expected failure (bad input, refused output, unreachable Hub) is a
:class:`SamrsError`, so callers and the CLI catch one type and print one line instead of a traceback.

Each stage subclasses it where it raises (``sources.records.SourceError``, ``hub.packaging.PackagingError``,
``hub.repo.PushError``, ``common.safe_load.UnsafePickleError``, ...); a subclass that was a ValueError
or OSError before stays one, so older ``except`` clauses keep working.
"""

from __future__ import annotations


class SamrsError(Exception):
    """Base of samrs_hf's expected errors; the message is one line naming the file or option at fault."""

    exit_code: int = 2
    """What ``samrs`` exits with when this error ends a command (see :mod:`samrs_hf.cli.errors`)."""
