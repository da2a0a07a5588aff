"""``samrs build``: a detection source in, the SAMRS layout (see :mod:`samrs_hf.build.layout`) out.

The pipeline per source image: read (``readers``) -> cut (``tiling``) -> prompts (``prompts``) ->
SAM (``engine``) -> ``images/``, ``gray/``, ``color/``, ``ins/`` files. What makes it a *build*
rather than a loop lives here:

* **presets** fixing the paper's choices (SOTA / SIOR / FAST) and ``custom`` for any reader format;
* **distribution**: source image ``i`` (reader order, after ``--limit``) is labelled by Accelerate
  process ``i % num_processes``; each output depends on its own image only, so the files do not
  depend on the number of processes;
* **resume**: every file is written atomically and ``ins/<name>.json`` is written last, so its
  presence marks a finished image; a rerun skips those and rewrites the rest byte for byte;
* **refusal**: the options that shape the outputs (the model's weights included, by hash) are
  fingerprinted into ``.samrs_build.json`` at start; an out dir started with other options is refused
  unless ``--overwrite``, which deletes only files a samrs build wrote (anything else there refuses it);
  ``--out`` and ``--source`` may not contain each other;
* **one build at a time**: the main process holds ``.samrs_build.lock`` in ``--out`` for the build's
  life; another build into the same folder is refused at once, naming the running one's pid;
* **overlap**: ``--num-workers`` threads decode, cut and make prompts ahead of SAM, SAM runs in
  the main thread (masks become COCO RLE runs and the gray map on its device), and writer
  threads encode PNGs and write.

Determinism: with ``--image-batch-size 1`` (the default) a patch's files depend on the patch only.
On CUDA a larger image batch lets the kernels (and so the last bits of the embeddings) depend on
which patches share a batch, which differs after a resume or with another process count.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import socket
import time
from contextlib import contextmanager
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .. import __version__
from ..common import hub_ids
from ..sources.classes import IGNORE_INDEX
from ..sources.geometry import object_corners
from ..sources.imageio import CorruptImageError
from .layout import COLOR, GRAY, IMAGE_EXTENSIONS, IMAGES, INS, REPORT, atomic_write, json_bytes, png_bytes
from ..common.prefetch import prefetch_map
from ..sam.prompts import canonical_prompt_name
from ..sources.records import (
    CORRUPT_IMAGE,
    SIZE_MISMATCH,
    Problem,
    Report,
    SourceError,
    SourceImage,
)
from ..sam.loading import ATTN_IMPLEMENTATIONS, TINY_RANDOM
from ..sources.tiling import (TILING_PRESETS, Patch, TilingConfig, load_patches, plan_patches, tiling_config,
                     unassigned_objects)

log = logging.getLogger(__name__)

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
""":func:`~samrs_hf.build.layout.atomic_write`'s temp files (``tempfile.mkstemp``'s 8 random characters)."""
LAYOUT_VERSION = 1

OBJECT_IN_NO_WINDOW = "object-in-no-window"
"""Build-time skip: tiling kept the object in no window (below the iof rule in every window)."""

OUTPUTS_BEYOND_LIMIT = "outputs-beyond-limit"
"""Build-time note: ``ins/`` holds finished images this run did not cover (an earlier run with a larger
or no ``--limit``). Resume keeps finished work, and ``samrs package`` packages every finished image."""


DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Preset:
    """A paper preset: the source format and prompt; windows come from ``TILING_PRESETS[format]``."""

    name: str
    format: str | None
    prompt: str
    about: str


PRESETS: dict[str, Preset] = {
    "sota": Preset("sota", "dota", "H-Box",
                   "SOTA: DOTA-v2.0 train+val, 1024x1024 windows (gap 200, object kept if >= 70 % inside), H-Box"),
    "sior": Preset("sior", "dior", "H-Box",
                   "SIOR: DIOR trainval (+ test when present, marked split=test), 800x800 uncut, H-Box"),
    "fast": Preset("fast", "fair1m", "RH-Box",
                   "FAST: FAIR1M-2.0 train+validation, 600x600 windows (gap 150, >= 50 % inside), RH-Box"),
    "custom": Preset("custom", None, "H-Box",
                     "any reader format (coco included); windows from --tile-size/--gap/--iof-thr, else the "
                     "format's default (dota 1024, fair1m 600, others uncut); prompt from --prompt"),
}


class BuildRefused(SourceError):
    """The out dir holds another build (or other files); the message says how to proceed."""


class NothingBuilt(SourceError):
    """The source images gave no patch (all skipped, or no object to label): the message says why."""


class OutputWriteError(OSError):
    """Writing an output failed (disk full, permission): the message names the file."""


@dataclass
class BuildConfig:
    """Everything ``samrs build`` takes; ``None`` means "the preset's choice"."""

    preset: str
    source: Path
    out: Path
    format: str | None = None
    prompt: str | None = None
    splits: tuple[str, ...] | None = None
    tile_size: int | None = None
    """Window side; 0 keeps images uncut."""
    gap: int | None = None
    iof_thr: float | None = None
    model: str = "facebook/sam-vit-huge"
    dtype: str = "float32"
    attn: str | None = None
    """SAM vision attention (sdpa, eager, flex, triton); None: the device's default. Recorded in build.json's
    model entry, not fingerprinted: like --compile it changes kernels, not what is computed."""
    device: str | None = None
    limit: int | None = None
    """Label only the first N source images (reader order)."""
    images_dir: Path | None = None
    """COCO only: the folder holding the image files (as ``samrs inspect --images-dir``)."""
    overwrite: bool = False
    strict: bool = False
    pkl: bool = False
    image_batch_size: int = 1
    num_workers: int = 2
    writer_threads: int | None = None
    """Threads encoding PNG/RLE/JSON; None: :func:`default_writer_threads`."""
    max_masks_per_chunk: int | None = None
    compile: bool = False
    """torch.compile the image encoder and mask decoder (1.8x images/s on an H200 for vit_h, 150 boxes;
    compiling takes one to two minutes)."""
    progress: bool = True


@dataclass(frozen=True)
class BuildPlan:
    """The resolved options that shape the output files (the fingerprinted part of a build)."""

    preset: str
    format: str
    source: str
    splits: tuple[str, ...] | None
    tiling: TilingConfig | None
    prompt: str
    model: str
    dtype: str
    pkl: bool
    images_dir: str | None = None
    model_weights: str | None = None
    """What the weights are (``sha256:...`` of local files, ``hub:<commit>``); None for tiny-random."""

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("images_dir", "model_weights"):
            if d[key] is None:
                del d[key]  # keeps the fingerprints of builds made before the option existed
        d["splits"] = list(self.splits) if self.splits else None
        d["tiling"] = tiling_dict(self.tiling)
        d["layout_version"] = LAYOUT_VERSION
        return d

    @property
    def fingerprint(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def tiling_dict(cfg: TilingConfig | None) -> dict | None:
    if cfg is None or cfg.uncut:
        return None
    return {"size": cfg.size, "gap": cfg.gap, "iof_thr": cfg.iof_thr, "img_rate_thr": cfg.img_rate_thr,
            "pad_value": list(cfg.pad_value)}


def _model_identity(spec: str) -> str:
    """A local path (checkpoint or folder) as an absolute path, so ``./m.pth`` == ``/x/m.pth``."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


WEIGHT_SUFFIXES = (".json", ".safetensors", ".bin")
"""The files of a ``save_pretrained`` folder that decide the model: config, weights, shard index."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def model_weights_id(spec: str) -> str | None:
    """What ``--model`` holds, not where: the same path with other weights must not resume a build.

    A checkpoint file: its SHA-256 (1.5 s for ViT-H's 2.5 GB, less than loading it). A folder: the hash
    of its config and weight files. A Hub id: the commit it resolves to now (offline: the cached one).
    None where nothing can be said before loading (tiny-random is seeded; a missing path fails to load).
    """
    if spec == TINY_RANDOM:
        return None
    path = Path(spec).expanduser()
    try:
        if path.is_file():
            return f"sha256:{_sha256(path)}"
        if path.is_dir():
            files = sorted(f for f in path.iterdir() if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES))
            listing = "".join(f"{f.name}\t{_sha256(f)}\n" for f in files)
            return f"sha256:{hashlib.sha256(listing.encode()).hexdigest()}"
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the --model files ({exc.strerror or exc})") from None
    if spec.startswith((".", "/", "~")) or spec.endswith((".pth", ".pt", ".bin")):
        return None
    commit = _hub_commit(spec)
    return f"hub:{commit}" if commit else None


def _hub_commit(repo_id: str) -> str:
    """The commit ``load_sam`` is about to load: it reads the cache first, so the cached snapshot's,
    else the Hub's now (one request; a missing repo or an unreachable Hub is one line, HubError)."""
    return hub_ids.cached_commit(repo_id) or hub_ids.check_hub(repo_id).sha


def resolve(config: BuildConfig) -> BuildPlan:
    """Fill the preset's defaults and check the options (errors name the option)."""
    if config.preset not in PRESETS:
        raise ValueError(f"unknown preset {config.preset!r}; known: {', '.join(PRESETS)}")
    preset = PRESETS[config.preset]
    fmt = (config.format or preset.format or "").lower()
    if not fmt:
        raise ValueError("samrs build custom needs --format (dota, dior, dior-r, fair1m, hrsc2016, coco)")
    if preset.format is not None and fmt != preset.format:
        raise ValueError(f"samrs build {preset.name} reads --format {preset.format} only, not {fmt}; "
                         f"use samrs build custom --format {fmt} (or the preset of that dataset)")
    if fmt not in TILING_PRESETS:
        raise ValueError(f"unknown --format {fmt!r}; known: {', '.join(TILING_PRESETS)}")
    tiling = tiling_config(fmt, config.tile_size, config.gap, config.iof_thr)
    if config.dtype not in DTYPES:
        raise ValueError(f"unknown --dtype {config.dtype!r}; choose one of {', '.join(DTYPES)}")
    if config.attn is not None and config.attn not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"unknown --attn {config.attn!r}; choose one of {', '.join(ATTN_IMPLEMENTATIONS)}")
    if config.limit is not None and config.limit < 0:
        raise ValueError(f"--limit must be >= 0, got {config.limit}")
    if config.image_batch_size < 1:
        raise ValueError(f"--image-batch-size must be >= 1, got {config.image_batch_size}")
    if config.writer_threads is not None and config.writer_threads < 1:
        raise ValueError(f"--writer-threads must be >= 1, got {config.writer_threads}")
    if config.num_workers < 0:
        raise ValueError(f"--num-workers must be >= 0, got {config.num_workers}")
    if config.max_masks_per_chunk is not None and config.max_masks_per_chunk < 1:
        raise ValueError(f"--max-masks-per-chunk must be >= 1, got {config.max_masks_per_chunk}")
    if config.device is not None:
        import torch

        try:  # the spelling only: load_sam checks that the machine has it, per process
            torch.device(config.device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"--device {config.device!r} is not a torch device ({exc})") from None
    if config.images_dir is not None and fmt != "coco":
        raise ValueError(f"--images-dir applies to --format coco only, not {fmt}")
    splits = tuple(config.splits) if config.splits else None
    return BuildPlan(
        preset=preset.name,
        format=fmt,
        source=str(Path(config.source).expanduser().resolve()),
        splits=splits,
        tiling=None if tiling.uncut else tiling,
        prompt=canonical_prompt_name(config.prompt or preset.prompt),
        model=_model_identity(config.model),
        dtype=config.dtype,
        pkl=bool(config.pkl),
        images_dir=str(Path(config.images_dir).expanduser().resolve()) if config.images_dir is not None else None,
        model_weights=model_weights_id(str(config.model)),
    )


# ------------------------------------------------------------------------------ out dir


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
        except (SourceError, OSError) as exc:
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


# ------------------------------------------------------------------------------ per patch outputs


def prompt_box(obj, box_kind: str | None) -> list[float]:
    """The box SAM was given (RH-Box: the corners' min/max; else the H-Box), float64 source values."""
    if box_kind == "RH-Box":
        c = object_corners(obj)
        return [float(c[:, 0].min()), float(c[:, 1].min()), float(c[:, 0].max()), float(c[:, 1].max())]
    return [float(v) for v in obj.hbox]


def instance_record(obj, rle: dict, area: int, score: float, box_kind: str | None) -> dict:
    """``rle``: COCO RLE with ``str`` counts, as the engine's ``output="rle"`` gives it."""
    has_corners = obj.polygon is not None or obj.rbox is not None
    return {
        "category": obj.category,
        "label": int(obj.label),
        "bbox": prompt_box(obj, box_kind),
        "rbox": [float(v) for v in object_corners(obj).reshape(-1)] if has_corners else None,
        "segmentation": {"size": [int(v) for v in rle["size"]], "counts": str(rle["counts"])},
        "area": int(area),
        "score": float(score),
        "truncated": bool(obj.truncated),
        "difficult": bool(obj.difficult),
    }


def color_lut(class_table) -> np.ndarray:
    """(256, 3) uint8: class id -> palette colour, white for 255 and unused ids."""
    return np.asarray(class_table.flat_palette(), dtype=np.uint8).reshape(256, 3)


IMAGE_PNG_LEVEL = 1
"""zlib level of patch images. Aerial photos hardly compress past level 1: on a real DOTA image
level 1 encodes 3.4x faster than 6 for 0.7 % more bytes, and at GPU labelling speed the PNG
writers, not SAM, would otherwise set the pace. Gray/color maps keep level 6 (fast, and they shrink)."""


def default_writer_threads(num_processes: int = 1) -> int:
    """This process's share of the host's cores, 2 to 8: PNG encoding releases the GIL."""
    return max(2, min(8, (os.cpu_count() or 2) // max(1, num_processes)))


def _image_file(patch: Patch, pixels: np.ndarray, uncut: bool) -> tuple[str, bytes]:
    """Uncut sources keep the source file's bytes and extension (DIOR .jpg); patches become PNG."""
    if uncut:
        ext = Path(patch.source.image_path).suffix.lower()
        if ext in IMAGE_EXTENSIONS:
            return ext, Path(patch.source.image_path).read_bytes()
    return ".png", png_bytes(pixels, compress_level=IMAGE_PNG_LEVEL)


@dataclass
class _Item:
    """One patch ready for SAM."""

    index: int
    patch: Patch
    pixels: np.ndarray
    prompts: Any


@dataclass
class _Prepared:
    """One source image after planning and decoding (in a worker thread)."""

    index: int
    image: SourceImage
    patches: list[Patch]
    done: list[Patch]
    problems: list[Problem]
    items: Iterator[_Item] = iter(())
    failed: bool = False


class _Writer:
    """Encodes and writes patches on a few threads; a bounded queue keeps memory flat."""

    def __init__(self, out: Path, lut: np.ndarray, uncut: bool, pkl: bool, threads: int):
        self.out, self.lut, self.uncut, self.pkl = out, lut, uncut, pkl
        self.pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="samrs-write")
        self.pending: deque[Future] = deque()
        self.limit = 4 * max(1, threads)
        self.empty_masks = 0
        self.wait_s = 0.0

    def submit(self, item: _Item, result) -> None:
        self.pending.append(self.pool.submit(self.write, item, result))
        while len(self.pending) > self.limit:
            self._collect(self.pending.popleft())

    def _collect(self, fut: Future) -> None:
        t = time.perf_counter()
        self.empty_masks += fut.result()
        self.wait_s += time.perf_counter() - t

    def finish(self) -> None:
        while self.pending:
            self._collect(self.pending.popleft())
        self.pool.shutdown(wait=True)

    def abort(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def write(self, item: _Item, result) -> int:
        """All files of one patch; ``ins/<name>.json`` last: its presence marks the patch finished."""
        from . import release_pkl

        patch, out = item.patch, self.out
        objects = patch.objects
        rles, gray = result.rles, result.gray
        if len(rles) != len(objects):
            raise RuntimeError(f"{patch.name}: SAM returned {len(rles)} masks for {len(objects)} prompts")
        box_kind = item.prompts.box_kind
        instances = [instance_record(o, r, a, s, box_kind)
                     for o, r, a, s in zip(objects, rles, result.areas, result.scores)]
        ext, image_bytes = _image_file(patch, item.pixels, self.uncut)
        write_file(out / IMAGES / f"{patch.name}{ext}", image_bytes)
        write_file(out / GRAY / f"{patch.name}.png", png_bytes(gray, "L"))
        write_file(out / COLOR / f"{patch.name}.png", png_bytes(self.lut[gray], "RGB"))
        if self.pkl:
            write_file(out / INS / f"{patch.name}.pkl", release_pkl.pkl_bytes(instances, box_kind))
        record = {
            "image": patch.name,
            "source_image": patch.image_id,
            "offset": [int(patch.offset[0]), int(patch.offset[1])],
            "width": int(item.pixels.shape[1]),
            "height": int(item.pixels.shape[0]),
            "split": patch.source.split,
            "instances": instances,
        }
        write_file(out / INS / f"{patch.name}.json", json_bytes(record))
        return sum(1 for i in instances if i["area"] == 0)


# ------------------------------------------------------------------------------ the build


@dataclass
class _Tally:
    """What one process did; summed over processes into ``build.json``."""

    per_class: list[int]
    source_images: int = 0
    images_written: int = 0
    patches_written: int = 0
    patches_resumed: int = 0
    objects: int = 0
    empty_masks: int = 0
    problems: list = field(default_factory=list)
    """``[image index, problem dict]`` pairs, for a deterministic merge."""
    timings: dict = field(default_factory=dict)


def _wants_cpu(requested: str | None) -> bool:
    """CPU processes (gloo): asked for, or a multi-process launch on a machine without CUDA.

    ``accelerate launch --cpu`` starts several processes only through mpirun; ``accelerate launch
    --multi_gpu --num_processes N`` (torchrun) on a CPU-only machine lands here instead.
    """
    import torch

    if requested is not None:
        return str(requested).startswith("cpu")
    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


def _pick_device(requested: str | None, state):
    import torch

    if requested is None:
        return state.device
    dev = torch.device(requested)
    if dev.index is None and dev.type == state.device.type and dev.type != "cpu":
        return state.device  # "cuda" under accelerate launch: this process's own GPU
    return dev


def run_build(config: BuildConfig) -> dict:
    """Run (or resume) a build; returns the ``build.json`` dict on the main process.

    Every process of an ``accelerate launch`` calls this with the same config.
    """
    from accelerate import PartialState

    from ..sources.readers import open_source

    t_start = time.perf_counter()
    plan = resolve(config)
    out = Path(config.out).expanduser().resolve()
    state = PartialState(cpu=_wants_cpu(config.device))
    check_out_dir(out, plan, config.overwrite)  # every process, read-only: refuses before the source is listed
    source = open_source(plan.format, plan.source, strict=config.strict, splits=plan.splits,
                         images_dir=plan.images_dir)
    len(source)  # lists the source now: a wrong layout or split fails before SAM loads and --out is touched
    table = source.class_table
    if len(table) > IGNORE_INDEX:
        raise SourceError(f"{plan.source}: {len(table)} classes do not fit uint8 gray maps (at most 255)")
    with claim_out_dir(out, plan, config.overwrite, state) as mode:  # held until the last file is written
        report = _build(config, plan, out, state, source, mode, t_start)
    images = report["counts"]["source_images"] + source.skipped_images if report else 0  # the reader's skips too
    if images and report["counts"]["patches_written"] == 0 and config.limit != 0:
        raise NothingBuilt(nothing_built_reason(report, images, out))
    return report


def _build(config: BuildConfig, plan: BuildPlan, out: Path, state, source, mode: str, t_start: float) -> dict:
    """Label ``source`` into ``out`` (claimed by the caller); the report on the main process, else ``{}``."""
    import torch
    from tqdm.auto import tqdm

    from ..sam.engine import SamLabeler
    from ..sam.loading import load_sam

    rank, world = state.process_index, state.num_processes
    table = source.class_table
    device = _pick_device(config.device, state)
    dtype = getattr(torch, plan.dtype)
    t = time.perf_counter()
    model, info = load_sam(plan.model, device=device, dtype=dtype, attn_implementation=config.attn)
    labeler = SamLabeler(model, device=device, dtype=dtype, image_batch_size=config.image_batch_size,
                         max_masks_per_chunk=config.max_masks_per_chunk, compile=config.compile)
    model_load_s = time.perf_counter() - t
    state.wait_for_everyone()
    if state.is_main_process:
        prepare_out_dir(out, plan, mode)
    state.wait_for_everyone()

    tally = _Tally(per_class=[0] * len(table))
    uncut = plan.tiling is None
    ins_dir = out / INS

    def owned() -> Iterator[tuple[int, SourceImage]]:
        for index, image in enumerate(source.images()):
            if config.limit is not None and index >= config.limit:
                return
            tally.source_images += 1
            if index % world == rank:
                yield index, image

    def prepare(arg) -> _Prepared:
        index, image = arg
        local = Report(strict=config.strict)
        patches = plan_patches(image, plan.tiling)
        for obj in unassigned_objects(image, patches):
            # By design of the tiling, not bad input: counted, but no error under --strict.
            local.problems.append(Problem(OBJECT_IN_NO_WINDOW, obj.where or image.image_id,
                                          f"{obj.category} object is below the iof rule in every window"))
        finished = [(ins_dir / f"{p.name}.json").exists() for p in patches]
        done = [p for p, f in zip(patches, finished) if f]
        todo = [p for p, f in zip(patches, finished) if not f]
        prep = _Prepared(index, image, patches, done, local.problems)
        if todo:
            stream = load_patches(image, todo)
            try:
                first = next(stream)  # the decode: done here, ahead of SAM
            except SourceError as exc:
                kind = CORRUPT_IMAGE if isinstance(exc, CorruptImageError) else SIZE_MISMATCH
                local.skip(kind, source.rel(image.image_path), str(exc).split(": ", 1)[-1])
                prep.failed = True
                return prep
            prep.items = _items(index, first, stream, plan.prompt)
        return prep

    total = len(source)
    if config.limit is not None:
        total = min(total, config.limit)
    bar = tqdm(total=-(-max(0, total - rank) // world), unit="img", desc=f"samrs build {plan.preset}",
               disable=not (state.is_main_process and config.progress), dynamic_ncols=True)
    writer_threads = config.writer_threads or default_writer_threads(world)
    writer = _Writer(out, color_lut(table), uncut, plan.pkl, writer_threads)
    prepared = prefetch_map(prepare, owned(), config.num_workers)
    label_s = 0.0
    ok = False
    try:
        batch: list[_Item] = []

        def flush():
            nonlocal label_s
            t0 = time.perf_counter()
            # Masks stay on the device: RLE runs and the painted gray map (annotation order, the
            # last mask wins, 255 elsewhere) are what comes back.
            results = labeler.label([b.pixels for b in batch], [b.prompts for b in batch], output="rle",
                                    labels=[[o.label for o in b.patch.objects] for b in batch])
            label_s += time.perf_counter() - t0
            for item, res in zip(batch, results):
                writer.submit(item, res)
            batch.clear()

        for prep in prepared:
            tally.problems.extend([prep.index, p.to_dict()] for p in prep.problems)
            counted = prep.done if prep.failed else prep.patches
            for p in counted:
                for o in p.objects:
                    tally.per_class[o.label] += 1
                tally.objects += len(p.objects)
            tally.patches_written += len(counted)
            tally.patches_resumed += len(prep.done)
            tally.images_written += bool(counted)
            for item in prep.items:
                batch.append(item)
                if len(batch) >= config.image_batch_size:
                    flush()
            bar.update(1)
            bar.set_postfix(patches=tally.patches_written, refresh=False)
        if batch:
            flush()
        writer.finish()
        ok = True
    finally:
        prepared.close()
        if not ok:
            writer.abort()
        bar.close()
    tally.empty_masks = writer.empty_masks
    tally.timings = {
        "total_s": round(time.perf_counter() - t_start, 3),
        "model_load_s": round(model_load_s, 3),
        "label_s": round(label_s, 3),
        "write_wait_s": round(writer.wait_s, 3),
    }
    part_path = out / PARTS_DIR / f"part-{rank:05d}-of-{world:05d}.json"
    write_file(part_path, json_bytes(asdict(tally)))
    state.wait_for_everyone()
    if not state.is_main_process:
        return {}
    parts = [json.loads((out / PARTS_DIR / f"part-{r:05d}-of-{world:05d}.json").read_text()) for r in range(world)]
    in_folder = sum(1 for _ in (out / INS).glob("*.json"))
    report = _merge(plan, config, source, info, device, world, parts, tally.source_images, t_start, in_folder)
    write_file(out / REPORT, json_bytes(report))
    shutil.rmtree(out / PARTS_DIR, ignore_errors=True)
    return report


def nothing_built_reason(report: dict, total: int, out: Path) -> str:
    """Why a build of ``total`` source images wrote no image: how many were skipped, for what, and the
    rest's lack of objects."""
    skipped = report["skipped"]["images"]
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(report["problems"]["counts"].items()))
    why = (f"{skipped} of {total} source images were skipped" if skipped
           else f"none of {total} source images was skipped")
    rest = "" if skipped >= total else f", and {'the other' if skipped else 'they'} had no object to label"
    return (f"{out}: the build wrote 0 images: {why}{rest}" + (f" (problems: {kinds})" if kinds else "")
            + f"; see {out / REPORT}")


def _items(index: int, first, stream, prompt: str) -> Iterator[_Item]:
    from ..sam.prompts import make_prompts

    for patch, pixels in itertools.chain([first], stream):
        yield _Item(index, patch, pixels, make_prompts(prompt, patch.objects, pixels.shape[:2]))


def _merge(plan, config, source, info, device, world, parts, source_images, t_start, in_folder) -> dict:
    """``build.json``: options, model, counts and problems; identical for any process count
    except ``run`` (process count, timings, resumed patches). ``in_folder``: ``ins/*.json`` files."""
    table = source.class_table
    per_class = [sum(p["per_class"][i] for p in parts) for i in range(len(table))]
    total = {k: sum(p[k] for p in parts) for k in
             ("images_written", "patches_written", "patches_resumed", "objects", "empty_masks")}
    merged = Report(strict=False)
    merged.extend(source.report)
    build_problems = sorted((pr for p in parts for pr in p["problems"]), key=lambda ip: ip[0])
    for _, d in build_problems:
        merged.problems.append(Problem(d["kind"], d["where"], d["message"], d["skipped"]))
    if in_folder > total["patches_written"]:
        merged.note(OUTPUTS_BEYOND_LIMIT, INS, f"{in_folder - total['patches_written']} finished images in ins/ "
                    f"are not from this run's source images (an earlier run with a larger or no --limit); "
                    f"kept for resume and packaged by samrs package; --overwrite drops them")
    skips = merged.skips
    # A kind does not say what was dropped (garbled-annotation: a line or a whole file; missing-image: an
    # image or one COCO annotation): the reader counts the images it skipped, the build its failed decodes.
    images_skipped = source.skipped_images + sum(1 for _, d in build_problems
                                                 if d["skipped"] and d["kind"] != OBJECT_IN_NO_WINDOW)
    labelled = total["patches_written"] - total["patches_resumed"]
    elapsed = time.perf_counter() - t_start
    return {
        "samrs_hf_version": __version__,
        "preset": plan.preset,
        "source": plan.source,
        "format": plan.format,
        "subset": table.subset,
        "splits": list(plan.splits) if plan.splits else None,
        "classes": list(table.names),
        "tiling": tiling_dict(plan.tiling),
        "prompt": plan.prompt,
        "model": {**info.to_dict(), "weights": plan.model_weights},
        "dtype": plan.dtype,
        "device": device.type,
        "pkl": plan.pkl,
        "limit": config.limit,
        "fingerprint": plan.fingerprint,
        "counts": {
            "source_images": source_images,
            "images_written": total["images_written"],
            "patches_written": total["patches_written"],
            "patches_in_folder": in_folder,
            "objects": total["objects"],
            "empty_masks": total["empty_masks"],
            "per_class": dict(zip(table.names, per_class)),
        },
        "skipped": {
            "images": images_skipped,
            "objects": len(skips) - images_skipped,
        },
        "problems": merged.to_dict(),
        "run": {
            "num_processes": world,
            "device": str(device),
            "patches_labelled": labelled,
            "patches_resumed": total["patches_resumed"],
            "timings": {
                "total_s": round(elapsed, 3),
                "model_load_s": parts[0]["timings"]["model_load_s"],
                "label_s": round(sum(p["timings"]["label_s"] for p in parts), 3),
                "patches_per_s": round(labelled / elapsed, 3) if elapsed > 0 else None,
                "per_process": [p["timings"] for p in parts],
            },
        },
    }
