"""What an SEP run keeps in its ``--output-dir``: checkpoints with their state file, the training log,
and the earlier run that ``--overwrite`` may replace (and nothing else).

A checkpoint is an Accelerate state (model, optimizer, scheduler, RNG) plus ``sep_state.json`` (the step
and a fingerprint of everything that decides the run), written last and atomically, so a checkpoint with
a readable state file is complete and ``--resume`` can refuse another configuration.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from ..common.files import atomic_write

STATE_FILE = "sep_state.json"
logger = logging.getLogger(__name__)

# What a run writes into its --output-dir, and nothing else is deleted by --overwrite. A folder with
# weights or checkpoints of an earlier run is only written over with --overwrite.
BEST_DIR = "best"
BEST_RESULTS = "best_results.json"
_MODEL_FILES = ("model*.safetensors", "model.safetensors.index.json", "config.json", "preprocessor_config.json")
SEP_RUN_FILES = (*_MODEL_FILES, "README.md", "eval_results.json", "train_log.jsonl", "run_config.json",
                 *(f"{BEST_DIR}/{p}" for p in (*_MODEL_FILES, BEST_RESULTS)))
FINETUNE_RUN_FILES = ("model*.safetensors", "model.safetensors.index.json", "config.json",
                      "preprocessor_config.json", "README.md", "finetune_results.json")


def checkpoint_dirs(output_dir) -> list[Path]:
    """``checkpoints/step-*`` folders that hold a state file, oldest first."""
    root = Path(output_dir) / "checkpoints"
    return sorted((p for p in root.glob("step-*") if (p / STATE_FILE).is_file()), key=lambda p: p.name)


def checkpoint_path(output_dir, step: int) -> Path:
    return Path(output_dir) / "checkpoints" / f"step-{step:08d}"


def save_checkpoint(accelerator, output_dir, step: int, fingerprint: dict, keep: int = 0) -> Path:
    """Accelerate state, then the state file (last, atomically); ``keep`` > 0 prunes older checkpoints."""
    path = checkpoint_path(output_dir, step)
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        atomic_write(path / STATE_FILE, json.dumps({"step": step, "fingerprint": fingerprint}, indent=2).encode())
        if keep:
            clean_checkpoints(output_dir, keep)
    accelerator.wait_for_everyone()
    return path


def read_state(path: Path) -> dict:
    """A checkpoint's ``sep_state.json``; ValueError naming the file when it is empty or corrupt."""
    state_file = path / STATE_FILE
    try:
        state = json.loads(state_file.read_text())
        if not (isinstance(state, dict) and isinstance(state.get("fingerprint"), dict)):
            raise ValueError("no 'step' and 'fingerprint'")
        state["step"] = int(state["step"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{state_file}: not a complete checkpoint state ({type(exc).__name__}: {exc})") from None
    return state


def newest_usable_checkpoint(output_dir) -> tuple[Path, dict]:
    """The newest checkpoint whose state file reads; newer ones that do not are skipped with a warning."""
    found = checkpoint_dirs(output_dir)
    if not found:
        raise ValueError(f"--resume: no checkpoint under {Path(output_dir) / 'checkpoints'}")
    problems = []
    for path in reversed(found):
        try:
            state = read_state(path)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        for problem in problems:
            logger.warning("--resume: skipping %s; resuming from %s", problem, path.name)
        return path, state
    raise ValueError(f"--resume: no usable checkpoint under {Path(output_dir) / 'checkpoints'}: {'; '.join(problems)}")


def same_setting(saved, now) -> bool:
    """Equal, and for dicts in the same order: the --dataset order numbers the subsets, which seeds
    their sampling and breaks B_i ties, so the same subsets in another order are another run."""
    return saved == now and (not isinstance(now, dict) or list(saved) == list(now))


def fingerprint_diff(saved: dict, now: dict) -> dict:
    """``{setting: (checkpoint's, now)}`` for every setting a resume would change."""
    return {k: (saved.get(k), v) for k, v in now.items() if not same_setting(saved.get(k), v)}


def clean_checkpoints(output_dir, keep: int) -> None:
    """Remove all but the newest ``keep`` checkpoints."""
    for path in checkpoint_dirs(output_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)


def start_log(log_path: Path, start_step: int, main_process: bool = True) -> list[dict]:
    """The log records up to ``start_step``, and the file cut back to them: a resumed run replays the
    steps after its checkpoint, and a new run starts an empty log, so each step is logged once."""
    kept = []
    if start_step and log_path.is_file():
        for n, line in enumerate(log_path.read_text().splitlines(), 1):
            try:
                record = json.loads(line)
                step = int(record["step"])
            except (ValueError, KeyError, TypeError) as exc:  # e.g. the half-written line of a crash
                logger.warning("%s:%d: unreadable log line dropped (%s: %s)", log_path, n, type(exc).__name__, exc)
                continue
            if step <= start_step:
                kept.append(record)
    if main_process:
        atomic_write(log_path, "".join(json.dumps(r) + "\n" for r in kept).encode())
    return kept


def earlier_run(output_dir, patterns, overwrite: bool) -> list[Path]:
    """An earlier run's files and ``checkpoints/step-*`` in ``output_dir`` ([] when it holds no weights or
    checkpoints), for :func:`remove_run` once the new run is set up; refused unless ``overwrite``."""
    out = Path(output_dir)
    files = sorted({p for pattern in patterns for p in out.glob(pattern) if p.is_file()})
    steps = sorted(p for p in (out / "checkpoints").glob("step-*") if p.is_dir())
    if not steps and not any(p.suffix == ".safetensors" for p in files):
        return []
    found = files + steps
    if not overwrite:
        names = ", ".join(str(p.relative_to(out)) for p in found[:4]) + (", ..." if len(found) > 4 else "")
        raise ValueError(f"{out} holds an earlier run ({names}): pass --resume to continue it, --overwrite to "
                         f"replace it, or another --output-dir")
    return found


def remove_run(paths: list[Path], output_dir) -> None:
    """Delete what :func:`earlier_run` found (and ``checkpoints/``, ``best/`` when that leaves them empty),
    nothing else."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    for folder in (Path(output_dir) / "checkpoints", Path(output_dir) / BEST_DIR):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    if paths:
        logger.warning("--overwrite: removed the earlier run's %d file(s) and checkpoint(s) in %s", len(paths),
                       output_dir)


def read_best(output_dir, start_step: int) -> dict | None:
    """``best/best_results.json`` of the run a resume continues (None when absent, unreadable or written
    after ``start_step``: the steps after the checkpoint are trained again and may choose another best)."""
    path = Path(output_dir) / BEST_DIR / BEST_RESULTS
    try:
        best = json.loads(path.read_text())
        if int(best["step"]) <= start_step:
            return {**best, "mIoU": float(best["mIoU"])}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("%s: unreadable (%s: %s); the best model is chosen again from here on", path,
                       type(exc).__name__, exc)
    return None
