"""``samrs build {sota,sior,fast,custom} --source DIR --out DIR``: label a detection source with SAM.

Also the entry point of ``builders/build_*.py`` (run under ``accelerate launch``): they call
:func:`main_for_preset` with their preset fixed.
"""

from __future__ import annotations

import argparse

from ..build.config import BuildConfig  # no torch at import: --help stays fast
from ..common.errors import run_command
from ..common.options import add_options, from_args

EPILOG = """presets (paper, Sec. 2.2):
  sota    DOTA-v2.0 (format dota), every labelled split (train+val), 1024 windows gap 200 iof 0.7, H-Box
  sior    DIOR (format dior), trainval + test when present (split kept in ins/*.json), 800 uncut, H-Box
  fast    FAIR1M-2.0 (format fair1m), train+validation, 600 windows gap 150 iof 0.5, RH-Box
  custom  any --format (coco included); tiling from --tile-size/--gap/--iof-thr, else the format's default

Resume: rerun the same command; finished images (ins/<name>.json present) are skipped.
One build per --out at a time: it holds --out/.samrs_build.lock; a second one is refused at once.
The fingerprint covers the model's weights (file hashes, Hub commit), not only the --model path.
Several GPUs: accelerate launch --multi_gpu --num_processes N builders/build_sota.py --source ... --out ...
Several CPU processes: the same with --device cpu (accelerate's --cpu mode starts several only via mpirun).
"""


HELP = "label a detection dataset with SAM into the SAMRS layout (SOTA/SIOR/FAST/custom)"
DESCRIPTION = (
    "Cut a detection source as SAMRS did, prompt SAM with its boxes and write images/, gray/, color/, "
    "ins/ and build.json. Resumable; distributable with accelerate."
)
OPTIONS = BuildConfig


def summary(report: dict, out) -> str:
    c = report["counts"]
    model = report["model"]
    lines = [
        f"samrs build {report['preset']}: {c['patches_written']} images ({c['images_written']} source images, "
        f"{c['objects']} masks) in {out}",
        f"  model {model['spec']}{' (RANDOM WEIGHTS)' if model['random'] else ''}, prompt {report['prompt']}, "
        f"{report['dtype']} on {report['run']['device']}, {report['run']['num_processes']} process(es), "
        f"{report['run']['patches_resumed']} resumed",
        f"  skipped: {report['skipped']['images']} images, {report['skipped']['objects']} objects "
        f"(see {out}/build.json)",
    ]
    extra = c.get("patches_in_folder", c["patches_written"]) - c["patches_written"]
    if extra > 0:
        lines.append(f"  note: {extra} more finished images in ins/ from an earlier run beyond --limit "
                     f"(samrs package includes them; --overwrite drops them)")
    return "\n".join(lines)


def run(config: BuildConfig) -> int:
    from ..build.run import run_build

    report = run_build(config)
    if report:
        print(summary(report, config.out))
    return 0


def main_for_preset(preset: str, argv=None) -> int:
    """``builders/build_<preset>.py``: same options as ``samrs build <preset>``, same error handling."""
    import logging

    p = argparse.ArgumentParser(prog=f"build_{preset}.py", description=f"samrs build {preset} (accelerate-ready)",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p, BuildConfig, exclude=("preset",))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_command(f"build_{preset}", lambda: run(from_args(BuildConfig, args, preset=preset)))

