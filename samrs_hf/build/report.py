"""The build report: what each process did (``Tally``), merged into ``build.json`` by the main process;
identical for any process count except its ``run`` section."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from .. import __version__
from ..common.errors import SamrsError
from ..sam.options import native_cpu_bf16
from ..sources.records import Problem, Report
from .layout import INS, REPORT
from .config import tiling_dict


OBJECT_IN_NO_WINDOW = "object-in-no-window"
"""Build-time skip: tiling kept the object in no window (below the iof rule in every window)."""


OUTPUTS_BEYOND_LIMIT = "outputs-beyond-limit"
"""Build-time note: ``ins/`` holds finished images this run did not cover (an earlier run with a larger
or no ``--limit``). Resume keeps finished work, and ``samrs package`` packages every finished image."""


class NothingBuilt(SamrsError, ValueError):
    """The source images gave no patch (all skipped, or no object to label): the message says why."""


@dataclass
class Tally:
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


@dataclass
class RunContext:
    """What the report needs to know about the run besides the processes' tallies."""

    plan: Any
    config: Any
    source: Any
    info: Any
    """The loaded model's :class:`~samrs_hf.sam.loading.ModelInfo`."""
    device: Any
    world: int
    t_start: float


def merge_report(run: RunContext, parts: list[dict], source_images: int, in_folder: int) -> dict:
    """``build.json``: options, model, counts and problems; identical for any process count
    except ``run`` (process count, timings, resumed patches). ``in_folder``: ``ins/*.json`` files."""
    plan, config, source, info, device, world = run.plan, run.config, run.source, run.info, run.device, run.world
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
    elapsed = time.perf_counter() - run.t_start
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
        "dtype_requested": config.dtype,
        **({"cpu_native_bf16": native_cpu_bf16()} if device.type == "cpu" else {}),
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
