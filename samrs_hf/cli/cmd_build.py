"""``samrs build {sota,sior,fast,custom} --source DIR --out DIR``: label a detection source with SAM.

Also the entry point of ``builders/build_*.py`` (run under ``accelerate launch``): they call
:func:`main_for_preset` with their preset fixed.
"""

from __future__ import annotations

import argparse

from ..build.presets import PRESETS
from ..common.errors import run_command
from ..sam.options import ATTN_IMPLEMENTATIONS as ATTN, DTYPES  # no torch at import: --help stays fast
from ..sources.readers import FORMATS

PRESET_NAMES = tuple(PRESETS)

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


def add_options(p: argparse.ArgumentParser) -> None:
    """The options shared by ``samrs build`` and ``builders/build_*.py``."""
    p.add_argument("--source", required=True, metavar="DIR", help="source dataset folder (coco: folder or JSON)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (the SAMRS layout)")
    p.add_argument("--format", choices=FORMATS,
                   help="source format (custom: required; a preset reads its own format only)")
    p.add_argument("--prompt", metavar="NAME",
                   help="SAM prompt: H-Box, RH-Box, CP, H-Box-M, R-Box-M, RH-Box-M or a Table 1 combination "
                        "such as CP+H-Box (default: the preset's)")
    p.add_argument("--splits", nargs="+", metavar="SPLIT", help="source splits to read (default: all labelled)")
    p.add_argument("--images-dir", metavar="DIR", help="coco: folder holding the image files")
    p.add_argument("--tile-size", type=int, metavar="PX", help="window side (0 = uncut); default: the preset's")
    p.add_argument("--gap", type=int, metavar="PX", help="overlap between windows")
    p.add_argument("--iof-thr", type=float, metavar="F", help="share of an object a window must hold to keep it")
    p.add_argument("--model", default="facebook/sam-vit-huge",
                   help="Hub id, save_pretrained folder, segment-anything .pth, or tiny-random "
                        "(default: %(default)s)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="SAM compute dtype (default: %(default)s)")
    p.add_argument("--attn", choices=ATTN,
                   help="SAM image-encoder attention (default: triton on CUDA when triton is installed, else "
                        "sdpa); flex (FlexAttention) and triton (our flash-attention kernel) add the rel-pos bias "
                        "inside one CUDA kernel in the global layers instead of an NxN mask, triton in the "
                        "windowed layers too")
    p.add_argument("--device", help="torch device (default: this process's accelerate device)")
    p.add_argument("--limit", type=int, metavar="N", help="label only the first N source images (reader order)")
    p.add_argument("--overwrite", action="store_true",
                   help="rebuild an out dir started with other options: deletes only the files a samrs build "
                        "wrote there, and is refused when --out holds any other file")
    p.add_argument("--strict", action="store_true", help="stop (exit 2) at the first skipped object or image")
    p.add_argument("--pkl", action="store_true", help="also write SAMRS's own ins/<name>.pkl")
    p.add_argument("--image-batch-size", type=int, default=1, metavar="N",
                   help="images per image-encoder batch (default: %(default)s; GPU kernels depend on the "
                        "batch, so only 1 makes GPU outputs independent of resume and process count)")
    p.add_argument("--max-masks-per-chunk", type=int, metavar="N",
                   help="boxes per mask-decoder call (default: sized to free memory)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the SAM image encoder and mask decoder: ~1.8x the images/s on a GPU "
                        "after one to two minutes of compiling")
    p.add_argument("--num-workers", type=int, default=2, metavar="N",
                   help="threads decoding, cutting and making prompts ahead of SAM (default: %(default)s)")
    p.add_argument("--writer-threads", type=int, metavar="N",
                   help="threads encoding PNG/RLE/JSON behind SAM (default: the process's share of the cores, 2-8)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "build",
        help="label a detection dataset with SAM into the SAMRS layout (SOTA/SIOR/FAST/custom)",
        description="Cut a detection source as SAMRS did, prompt SAM with its boxes and write "
                    "images/, gray/, color/, ins/ and build.json. Resumable; distributable with accelerate.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("preset", choices=PRESET_NAMES, help="sota, sior, fast (the paper's sets) or custom")
    add_options(p)
    p.set_defaults(func=run)


def config_from_args(preset: str, args):
    from ..build.config import BuildConfig

    return BuildConfig(
        preset=preset, source=args.source, out=args.out, format=args.format, prompt=args.prompt,
        splits=tuple(args.splits) if args.splits else None, tile_size=args.tile_size, gap=args.gap,
        iof_thr=args.iof_thr, model=args.model, dtype=args.dtype, attn=args.attn, device=args.device,
        limit=args.limit, images_dir=args.images_dir, overwrite=args.overwrite, strict=args.strict, pkl=args.pkl,
        image_batch_size=args.image_batch_size, num_workers=args.num_workers,
        max_masks_per_chunk=args.max_masks_per_chunk, compile=args.compile, writer_threads=args.writer_threads,
        progress=not args.no_progress,
    )


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


def run(args) -> int:
    from ..build.run import run_build

    report = run_build(config_from_args(args.preset, args))
    if report:
        print(summary(report, args.out))
    return 0


def main_for_preset(preset: str, argv=None) -> int:
    """``builders/build_<preset>.py``: same options as ``samrs build <preset>``, same error handling."""
    import logging

    p = argparse.ArgumentParser(prog=f"build_{preset}.py", description=f"samrs build {preset} (accelerate-ready)",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p)
    args = p.parse_args(argv)
    args.preset = preset
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_command(f"build_{preset}", run, args)

