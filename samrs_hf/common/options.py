"""Command-line options declared once, as dataclass fields.

A command's options dataclass is both its Python API and its command line: :func:`option` keeps the help,
metavar and flag spelling in the field's metadata, :func:`add_options` turns the fields into argparse
arguments and :func:`from_args` builds the dataclass back, whose ``__post_init__`` checks the values (the
same checks for Python callers). The SEP scripts use transformers' ``HfArgumentParser``; the ``samrs``
commands do not, because it makes every field an ``--option`` (our commands take positionals such as
``BUILD_DIR``) and importing transformers would make ``samrs --help`` take a second.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from typing import Any

_ARGPARSE_KEYS = ("metavar", "choices", "action", "nargs")


def option(default: Any = dataclasses.MISSING, *, help: str, metavar: str | None = None,  # noqa: A002
           flag: str | None = None, positional: bool = False, choices: Sequence | None = None,
           negate: str | None = None, exclusive: str | None = None, action: str | None = None,
           nargs: str | None = None) -> Any:
    """A dataclass field that is also a command-line option.

    ``flag`` replaces the ``--kebab-case`` spelling; ``negate`` is the ``--no-...`` flag of a field that
    defaults to True; options sharing ``exclusive`` are mutually exclusive.
    """
    meta = {"help": help, "metavar": metavar, "flag": flag, "positional": positional, "choices": choices,
            "negate": negate, "exclusive": exclusive, "action": action, "nargs": nargs}
    return dataclasses.field(default=default, metadata={k: v for k, v in meta.items() if v not in (None, False)})


def _without_none(hint: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _value_type(hint: Any) -> tuple[Any, bool]:
    """(the type argparse converts to, whether the option takes several values) of a field's hint."""
    hint = _without_none(hint)
    if typing.get_origin(hint) in (list, tuple):
        return typing.get_args(hint)[0], True
    return hint, False


def _argument(field: dataclasses.Field, hint: Any) -> tuple[list[str], dict]:
    """argparse's names and keywords for one field."""
    meta = field.metadata
    kwargs = {"help": meta["help"], **{k: meta[k] for k in _ARGPARSE_KEYS if k in meta}}
    value_type, several = _value_type(hint)
    if value_type is bool:
        kwargs["action"] = "store_false" if field.default is True else "store_true"
    elif "action" not in kwargs:
        if value_type is not str:
            kwargs["type"] = value_type
        if several and "nargs" not in kwargs:
            kwargs["nargs"] = "+"
    if meta.get("positional"):
        return [field.name], kwargs
    if field.default is True and value_type is bool:
        names = [meta.get("negate") or f"--no-{field.name.replace('_', '-')}"]
    else:
        names = [meta.get("flag") or f"--{field.name.replace('_', '-')}"]
    kwargs["dest"] = field.name
    if field.default is not dataclasses.MISSING:
        kwargs["default"] = field.default
    elif field.default_factory is not dataclasses.MISSING:
        kwargs["default"] = field.default_factory()
    else:
        kwargs["required"] = True
    return names, kwargs


def add_options(parser: argparse.ArgumentParser, cls: type, exclude: Sequence[str] = ()) -> None:
    """Add ``cls``'s option fields (those made with :func:`option`) to ``parser``, in field order."""
    hints = typing.get_type_hints(cls)
    groups: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if not field.init or field.name in exclude or "help" not in field.metadata:
            continue
        names, kwargs = _argument(field, hints[field.name])
        group = field.metadata.get("exclusive")
        if group and group not in groups:
            groups[group] = parser.add_mutually_exclusive_group()
        (groups[group] if group else parser).add_argument(*names, **kwargs)


def from_args(cls: type, args: argparse.Namespace, **fixed: Any):
    """``cls`` from parsed options (plus ``fixed`` values the command decides), checked by its ``__post_init__``."""
    hints = typing.get_type_hints(cls)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
              if f.init and hasattr(args, f.name)}
    for name, value in values.items():  # argparse hands lists; a tuple-typed field keeps its type
        if isinstance(value, list) and typing.get_origin(_without_none(hints[name])) is tuple:
            values[name] = tuple(value)
    return cls(**{**values, **fixed})
