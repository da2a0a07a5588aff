"""Which SAM labels remote sensing best: the Table 1 study over several models (``samrs ablate
--models M1,M2``), any SAM generation each (:mod:`samrs_hf.sam.families`).

Each model encodes every image once and decodes all settings from that embedding; the models run one
after another (one in memory at a time). Outputs: each model's own ``table1.*`` in a sub-folder, and
``models.{md,csv,json}``: rows = prompt settings, a column group (mIoU_I, mIoU_P) per model, the
best setting per model and each model's images/s on this machine (the whole study: decode, encode,
all settings, scoring).
"""

from __future__ import annotations

import csv
import io
import json
import platform
import re
import time
from collections import Counter
from pathlib import Path

from ..common.files import atomic_write
from .ablation import AblationResult, aggregate, comma_list, parse_settings, run_ablation, table_markdown, write_outputs


def parse_models(spec: str) -> list[str]:
    """``"M1,M2"`` -> the --model values, in order (duplicates and empty lists refused)."""
    return list(comma_list(spec, "--models", "model"))


def model_folder(index: int, spec: str) -> str:
    """A folder name per model: its position and the spec's safe characters."""
    return f"{index + 1:02d}-" + (re.sub(r"[^A-Za-z0-9._-]+", "_", spec).strip("._") or "model")


def _one_model(args, spec: str, accelerator, source, settings, split):
    """The study for one model: (result on the main process else None, seconds)."""
    import torch
    from accelerate.utils import gather_object

    from ..sam.engine import SamLabeler
    from ..sam.loading import load_sam

    dtype = getattr(torch, args.dtype)
    model, info = load_sam(spec, device=accelerator.device, dtype=dtype)
    labeler = SamLabeler(model, device=accelerator.device, dtype=dtype)
    start = time.perf_counter()
    records, images, exclusions = run_ablation(
        source, args.format, labeler, settings, process_index=accelerator.process_index,
        num_processes=accelerator.num_processes, progress=accelerator.is_main_process)
    seconds = time.perf_counter() - start
    problems = source.report.counts()
    if accelerator.num_processes > 1:
        records = gather_object(records)
        images = sum(gather_object([images]))
        exclusions = sum((Counter(c) for c in gather_object([exclusions])), Counter())
        problems = sum((Counter(c) for c in gather_object([problems])), Counter())
        seconds = max(gather_object([seconds]))
    del model, labeler
    if not accelerator.is_main_process:
        return None, seconds
    result = aggregate(records, settings, images, exclusions)
    result.source, result.fmt, result.split = str(args.source), args.format, split
    result.model = info.to_dict()
    result.source_problems = dict(sorted(problems.items()))
    return result, seconds


def main(args) -> AblationResult | dict | None:
    """``samrs ablate`` (Accelerate: one or many processes; the main process writes): one model (``args.model``) -> its table1.*; ``args.models`` -> each model's
    table1.* in ``<out>/<NN-model>/`` plus the comparison ``models.*``. Returns the result (one
    model) or the comparison dict, on the main process."""
    import torch
    from accelerate import Accelerator

    from ..sources.readers import open_source

    settings = parse_settings(args.prompts)
    specs = parse_models(args.models) if getattr(args, "models", None) else None
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    split = None if args.split in (None, "", "all") else args.split
    source = open_source(args.format, args.source, strict=args.strict, splits=[split] if split else None,
                         images_dir=args.images_dir)
    len(source)  # lists the source now: a wrong layout or split fails before SAM loads
    if specs is None:
        result, _ = _one_model(args, args.model, accelerator, source, settings, split)
        if result is not None:
            files = write_outputs(result, args.out)
            print(table_markdown(result))
            print("wrote " + ", ".join(str(p) for p in files.values()))
        return result
    runs = []
    for i, spec in enumerate(specs):
        result, seconds = _one_model(args, spec, accelerator, source, settings, split)
        if result is not None:
            write_outputs(result, Path(args.out) / model_folder(i, spec))
            runs.append((spec, result, seconds))
    if not accelerator.is_main_process:
        return None
    comparison = compare(runs, settings, accelerator.num_processes)
    files = write_comparison(comparison, args.out)
    print(comparison_markdown(comparison))
    print("wrote " + ", ".join(str(p) for p in files.values()))
    return comparison


def compare(runs, settings, processes: int = 1) -> dict:
    """The comparison of several studies: per setting each model's scores, per model its best
    setting (highest mIoU_I, then mIoU_P) and images/s."""
    models = []
    for spec, result, seconds in runs:
        rows = {r["prompt"]: r for r in result.rows()}
        scored = [r for r in rows.values() if r["mIoU_I"] is not None]
        best = max(scored, key=lambda r: (r["mIoU_I"], r["mIoU_P"] or 0.0), default=None)
        models.append({
            "model": spec, "family": result.model.get("family", "sam"), "random": result.model.get("random"),
            "images": result.images, "instances": result.instances, "seconds": round(seconds, 3),
            "images_per_s": round(result.images / seconds, 3) if seconds > 0 else None,
            "best": None if best is None else {k: best[k] for k in ("prompt", "mIoU_I", "mIoU_P")},
            "scores": {name: [rows[name]["mIoU_I"], rows[name]["mIoU_P"]] for name in settings},
        })
    first = runs[0][1] if runs else None
    return {"source": first.source if first else "", "format": first.fmt if first else "",
            "split": first.split if first else None, "settings": list(settings), "models": models,
            "machine": {"cpu": platform.processor() or platform.machine(), "processes": processes,
                        "device": _device_name()}}


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def _f(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def comparison_markdown(c: dict) -> str:
    names = [m["model"] for m in c["models"]]
    lines = [f"Prompt ablation (paper Table 1) over {len(names)} models on {c['format']} `{c['source']}`"
             + (f" split `{c['split']}`" if c["split"] else "") + ".", ""]
    if any(m["random"] for m in c["models"]):
        lines += ["**Some models have random weights: their numbers say nothing about SAM.**", ""]
    lines.append("| Prompt | " + " | ".join(f"{n} mIoU_I | {n} mIoU_P" for n in names) + " |")
    lines.append("|---|" + "--:|--:|" * len(names))
    for name in c["settings"]:
        cells = [f"{_f(m['scores'][name][0])} | {_f(m['scores'][name][1])}" for m in c["models"]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| Model | family | best setting | mIoU_I | mIoU_P | images | images/s |",
              "|---|---|---|--:|--:|--:|--:|"]
    for m in c["models"]:
        best = m["best"] or {"prompt": "-", "mIoU_I": None, "mIoU_P": None}
        lines.append(f"| `{m['model']}` | {m['family']} | {best['prompt']} | {_f(best['mIoU_I'])} | "
                     f"{_f(best['mIoU_P'])} | {m['images']} | {_f(m['images_per_s'])} |")
    machine = c["machine"]
    lines += ["", (f"images/s: the whole study per model (decode, encode once, {len(c['settings'])} settings, "
                   f"scoring) on {machine['device']} ({machine['cpu']}), {machine['processes']} process(es).")]
    return "\n".join(lines) + "\n"


def comparison_csv(c: dict) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["prompt", *[f"{m['model']}:{k}" for m in c["models"] for k in ("mIoU_I", "mIoU_P")]])
    for name in c["settings"]:
        writer.writerow([name, *["" if v is None else v for m in c["models"] for v in m["scores"][name]]])
    return buf.getvalue()


def write_comparison(c: dict, out_dir) -> dict[str, Path]:
    out = Path(out_dir)
    files = {"markdown": out / "models.md", "csv": out / "models.csv", "json": out / "models.json"}
    atomic_write(files["markdown"], comparison_markdown(c).encode())
    atomic_write(files["csv"], comparison_csv(c).encode())
    atomic_write(files["json"], (json.dumps(c, indent=2, ensure_ascii=False) + "\n").encode())
    return files
