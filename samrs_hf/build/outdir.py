"""The ``--out`` folder's state: what is in it (ours or not), resume or refusal, the lock one build
holds for its life, and what ``--overwrite`` may delete (only files a samrs build wrote)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator


from .. import __version__
from ..common.errors import SamrsError
from ..sources.records import SourceError
from ..sources.tiling import TilingConfig, plan_patches
from ..common.files import atomic_write
from .layout import COLOR, GRAY, IMAGE_EXTENSIONS, IMAGES, INS, REPORT, json_bytes
from .config import BuildPlan


STATE_FILE = ".samrs_build.json"
"""Written at the start of a build: the fingerprinted options a rerun must match."""


PARTS_DIR = ".samrs_parts"
"""Per-process partial reports, merged into ``build.json`` by the main process."""


LOCK_FILE = ".samrs_build.lock"
"""Held (``filelock``) by the main process of the running build, for the build's life."""


OWNER_FILE = ".samrs_build.owner"
"""Who holds the lock (pid, host, options): what a refused second build reports."""


LAYOUT_FILES = {IMAGES: IMAGE_EXTENSIONS, GRAY: (".png",), COLOR: (".png",), INS: (".json", ".pkl")}
"""The files a build writes per patch: ``<folder>/<name><extension>``."""


_TEMP_FILE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
""":func:`~samrs_hf.common.files.atomic_write`'s temp files (``tempfile.mkstemp``'s 8 random characters)."""


class BuildRefused(SamrsError, ValueError):
    """The out dir holds another build (or other files); the message says how to proceed."""


class OutputWriteError(SamrsError, OSError):
    """Writing an output failed (disk full, permission): the message names the file."""


def _read_state(out: Path) -> dict | None:
    try:
        state = json.loads((out / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return state if isinstance(state, dict) else None


def _check_apart(out: Path, plan: BuildPlan) -> None:
    """Refuse an ``--out`` that is, holds or lies in the source: the build would read or replace its input."""
    for option, value in (("--source", plan.source), ("--images-dir", plan.images_dir)):
        if value is None:
            continue
        folder = Path(value).resolve()
        inside = out.is_relative_to(folder)
        if folder.is_file():  # a COCO JSON: only its own folder, not everything beside it
            folder, inside = folder.parent, False
        if out == folder or inside or folder.is_relative_to(out):
            how = "is" if out == folder else "lies inside" if inside else "holds"
            raise BuildRefused(f"{out}: --out {how} the {option} folder {folder}; choose an --out outside it")


@dataclass
class OutContents:
    """What ``--out`` holds, by who wrote it."""

    samrs: list[Path] = field(default_factory=list)
    """Files and folders a samrs build wrote (what ``--overwrite`` may delete)."""
    foreign: list[Path] = field(default_factory=list)
    outputs: bool = False
    """Patch files or ``build.json`` among ``samrs``."""


def _is_temp(entry: os.DirEntry) -> bool:
    return entry.is_file(follow_symlinks=False) and bool(_TEMP_FILE.match(entry.name))


def _is_bookkeeping(entry: os.DirEntry) -> bool:
    """A file (or the parts folder) of samrs at the top of ``--out``."""
    if entry.name == PARTS_DIR:
        return entry.is_dir(follow_symlinks=False)
    return _is_temp(entry) or (entry.name in (REPORT, STATE_FILE, LOCK_FILE, OWNER_FILE)
                               and entry.is_file(follow_symlinks=False))


def out_dir_contents(out: Path, state: dict | None) -> OutContents:
    """Sort ``--out``'s entries: samrs's own are its bookkeeping files and the layout files of the patch
    names a finished patch has (``ins/<name>.json`` and ``gray/<name>.png``) or, for a killed build's
    unfinished patches, that the recorded options plan."""
    names = _stems(out / INS, ".json") & _stems(out / GRAY, ".png")
    found, unclaimed = OutContents(), []
    with os.scandir(out) as entries:
        for entry in entries:
            path = Path(entry.path)
            if entry.name in LAYOUT_FILES and entry.is_dir(follow_symlinks=False):
                with os.scandir(path) as files:
                    for f in files:
                        if _is_temp(f):
                            found.samrs.append(Path(f.path))
                        elif f.is_file(follow_symlinks=False) and Path(f.name).suffix in LAYOUT_FILES[entry.name]:
                            (found.samrs if Path(f.name).stem in names else unclaimed).append(Path(f.path))
                        else:
                            found.foreign.append(Path(f.path))
            elif _is_bookkeeping(entry):
                found.samrs.append(path)
            else:
                found.foreign.append(path)
    if unclaimed:
        planned = planned_names(state)
        for path in unclaimed:
            (found.samrs if path.stem in planned else found.foreign).append(path)
    found.outputs = any(p.name == REPORT or (p.parent != out and not _TEMP_FILE.match(p.name)) for p in found.samrs)
    found.foreign.sort()
    return found


def _stems(folder: Path, suffix: str) -> set[str]:
    return {p.stem for p in folder.glob(f"*{suffix}")} if folder.is_dir() else set()


def planned_names(state: dict | None) -> set[str]:
    """Every patch name of the build recorded in ``state`` (empty if its source cannot be read now)."""
    from ..sources.readers import open_source

    options = (state or {}).get("options") or {}
    try:
        t = options.get("tiling")
        tiling = (TilingConfig(t["size"], t["gap"], t["iof_thr"], t["img_rate_thr"], tuple(t["pad_value"]))
                  if t else None)
        source = open_source(options["format"], options["source"], splits=options.get("splits"),
                             images_dir=options.get("images_dir"))
        return {p.name for image in source.images() for p in plan_patches(image, tiling)}
    except (KeyError, TypeError, ValueError, OSError, SourceError):
        return set()


def _listing(out: Path, paths: list[Path], shown: int = 5) -> str:
    names = ", ".join(str(p.relative_to(out)) for p in paths[:shown])
    return names + (f" and {len(paths) - shown} more" if len(paths) > shown else "")


def _options_diff(old: dict, new: dict) -> str:
    return "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted({*old, *new}) if old.get(k) != new.get(k))


def check_out_dir(out: Path, plan: BuildPlan, overwrite: bool) -> str:
    """``"new"``, ``"resume"`` or ``"overwrite"``; raises :class:`BuildRefused` otherwise (read-only)."""
    out = Path(out).resolve()
    _check_apart(out, plan)
    if not out.exists():
        return "new"
    if not out.is_dir():
        raise BuildRefused(f"{out}: --out exists and is not a folder")
    state = _read_state(out)
    if state is not None and state.get("fingerprint") == plan.fingerprint:
        return "resume"  # writes what is missing; deletes nothing but its own temp files
    contents = out_dir_contents(out, state)
    if contents.foreign:
        what = ("holds files samrs did not write" if contents.samrs
                else "is not empty and holds no samrs build")
        raise BuildRefused(
            f"{out}: --out {what} ({_listing(out, contents.foreign)}); samrs never deletes those, so choose "
            "an empty or new folder, or move them out of it"
        )
    if not contents.outputs:
        return "new"  # empty, or a start that wrote nothing yet: nothing to protect
    if overwrite:
        return "overwrite"
    if state is None:
        raise BuildRefused(
            f"{out}: holds a samrs build whose options are unknown ({STATE_FILE} missing or unreadable); "
            "pass --overwrite to rebuild it or choose another --out"
        )
    diff = _options_diff(state.get("options") or {}, plan.to_dict())
    raise BuildRefused(
        f"{out}: was built with different options ({diff or 'fingerprint differs'}); "
        "rerun with the original options to resume, pass --overwrite to rebuild, or choose another --out"
    )


def prepare_out_dir(out: Path, plan: BuildPlan, mode: str) -> None:
    """Main process only, holding the lock: clear a build's files (overwrite), drop temp files of a
    killed run, write the state file."""
    if mode == "overwrite":
        contents = out_dir_contents(out, _read_state(out))
        if contents.foreign:  # appeared since the check: still never deleted
            raise BuildRefused(f"{out}: files samrs did not write appeared in --out "
                               f"({_listing(out, contents.foreign)}); nothing was deleted")
        for path in contents.samrs:
            if path.name in (LOCK_FILE, OWNER_FILE):
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    for d in (out, *(out / x for x in LAYOUT_FILES)):
        if d.is_dir():
            with os.scandir(d) as entries:
                for tmp in [Path(e.path) for e in entries if _is_temp(e)]:
                    tmp.unlink(missing_ok=True)
    shutil.rmtree(out / PARTS_DIR, ignore_errors=True)
    for d in LAYOUT_FILES:
        _mkdir(out / d)
    state = {"fingerprint": plan.fingerprint, "options": plan.to_dict(), "samrs_hf_version": __version__}
    write_file(out / STATE_FILE, json_bytes(state))


def _holder(out: Path) -> dict:
    try:
        owner = json.loads((out / OWNER_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return owner if isinstance(owner, dict) else {}


def lock_out_dir(out: Path, plan: BuildPlan):
    """The held lock of ``--out`` (``filelock``); a build already holding it refuses this one at once.

    A second build is refused rather than queued: with other options it could never run there, and
    with the same ones, once the first is done, rerunning resumes in seconds.
    """
    from filelock import FileLock, Timeout

    _mkdir(out)
    lock = FileLock(str(out / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        owner = _holder(out)
        who = (f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}, started {owner.get('started', '?')}"
               if owner else "pid unknown")
        if owner.get("fingerprint") not in (None, plan.fingerprint):
            diff = _options_diff(owner.get("options") or {}, plan.to_dict())
            raise BuildRefused(f"{out}: was built with different options ({diff}) by a samrs build still running "
                               f"there ({who}); choose another --out") from None
        raise BuildRefused(f"{out}: another samrs build is running in {out} ({who}); wait for it to end "
                           "(rerunning then resumes) or choose another --out") from None
    try:
        write_file(out / OWNER_FILE, json_bytes({
            "pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "fingerprint": plan.fingerprint, "options": plan.to_dict()}))
    except BaseException:
        lock.release()
        raise
    return lock


def unlock_out_dir(out: Path, lock) -> None:
    (out / OWNER_FILE).unlink(missing_ok=True)
    lock.release()


@contextmanager
def claim_out_dir(out: Path, plan: BuildPlan, overwrite: bool, state) -> Iterator[str]:
    """Yield the out dir's mode while the main process holds its lock; the other processes of the
    launch take the main process's verdict (they share its lock, and a refusal stops them all)."""
    lock, error, verdict = None, None, None
    if state.is_main_process:
        try:
            lock = lock_out_dir(out, plan)
            verdict = ("ok", check_out_dir(out, plan, overwrite))  # again, now that no other build can change it
        except (SamrsError, OSError) as exc:
            error, verdict = exc, ("refused", str(exc))
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        verdict = broadcast_object_list([verdict])[0]
    if error is not None:
        if lock is not None:
            unlock_out_dir(out, lock)
        raise error
    if verdict[0] != "ok":
        raise BuildRefused(verdict[1])
    try:
        yield verdict[1]
    finally:
        if lock is not None:
            unlock_out_dir(out, lock)


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(f"{path}: cannot create folder ({exc.strerror or exc})") from None


def write_file(path: Path, data: bytes) -> None:
    """Atomic write; an OSError becomes one clear message naming the file (no partial file remains)."""
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise OutputWriteError(
            f"{path}: cannot write ({exc.strerror or exc}); the build stopped, nothing half-written was left. "
            "Fix the cause and rerun the same command to resume"
        ) from None
