"""One-shot GPU check for a lent H100/H200 (no network; ~9 minutes, most of it compiling vit_h).

    PYTHONPATH=. python benchmarks/gpu_check.py [--budget-s 540]

Sections, most wanted first (each guarded; an error is printed and the next section runs; a section
that would not fit the budget is skipped):
  1. versions and device;
  2. SAM's attention alone, global and windowed layers (bench_relpos_attention.py): materialised-bias
     SDPA, flex, triton and bias-free flash, ms/image and error;
  3. the encoder alone, compiled, for the MFU (target >= 40 %): triton (the CUDA default: windowed
     layers in the kernel too, lin1 + GELU as one cuBLASLt matmul), triton+unfused-gelu and sdpa,
     each profiled (time by kernel kind, top kernels);
  4. vit_h shapes (random weights, smooth masks), bf16, 150 boxes/image, image batch 8: the fp32
     SamPredictor reference loop, then ours with the default (triton) attention, encoder and decoder
     compiled, RLE + gray map out (what ``samrs build --compile`` runs on CUDA): ratio (target >= 5x)
     and encoder MFU;
  5. the same with --attn sdpa, against that reference figure; then triton with transformers' mask
     decoder instead of the shared-image one (#20 round 3: the decoder's share of the time);
  6. CUDA fp32 parity, SamPredictor vs SamLabeler (tiny random ViT from segment-anything's builder,
     3 image sizes x H-Box/RH-Box/CP/H-Box-M; per-mask IoU >= 0.99, mean >= 0.995): triton, sdpa;
  7. SAM's mask decoder alone (bench_decoder.py): the shared-image decoder vs transformers', fp32
     (its CUDA parity: logits difference, mask IoU) and bf16;
  8. SEP's input pipeline (bench_sep.py --new-pipeline, #20 target 4): ResNet-50 shapes, batch 96,
     224 crops of 800² images, 8 workers, the PNG path and --decode-cache + --augment-on device
     against the bare training loop;
  9. flex attention and its parity; boolean masks out; no compile.
``--only KEY[,KEY]`` runs some of them (``versions`` always), so a 15-minute lease fits two calls.
A summary of all figures is printed at the end.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_decoder  # noqa: E402
import bench_encoder  # noqa: E402
import bench_labeling  # noqa: E402
import bench_relpos_attention  # noqa: E402
import bench_sep  # noqa: E402
from samrs_hf.sam.reference.segment_anything import (  # noqa: E402
    SHAPES, build_reference_sam, import_segment_anything, mask_ious, random_objects, reference_prompts, textured_image,
)

SUMMARY: list[str] = []
SECTION_KEYS = ("versions", "attention", "encoder", "labeling", "sdpa", "transformers-decoder", "parity", "decoder",
                "sep", "flex", "masks", "eager")


def section_versions(device):
    import transformers

    line = (f"python {platform.python_version()}, torch {torch.__version__} (cuda {torch.version.cuda}), "
            f"transformers {transformers.__version__}")
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        line += f"; device {props.name}, {props.total_memory / 2**30:.0f} GiB"
    print(line)
    SUMMARY.append(line)
    try:
        import torchvision

        tv = torchvision.__version__
    except ImportError:
        tv = "absent (stand-in used for segment-anything)"
    sa = import_segment_anything()
    line = f"segment_anything {getattr(sa, '__version__', 'installed')}, torchvision {tv}"
    print(line)
    SUMMARY.append(line)


def section_parity(device, attn: str = "sdpa"):
    """``attn``: a benchmark --attn choice (bench_labeling.ATTN_CHOICES)."""
    from samrs_hf.sam.engine import SamLabeler
    from samrs_hf.sam.prompts import make_prompts
    from samrs_hf.sam.loading import sam_model_from_checkpoint

    sa = import_segment_anything()
    sam = build_reference_sam("tiny", seed=0)
    model = sam_model_from_checkpoint(sam.state_dict(), bench_labeling.benchmark_options(attn))
    labeler = SamLabeler(model, device=device, dtype=torch.float32)
    predictor = sa.SamPredictor(sam.to(device))
    all_ious, worst_score = [], 0.0
    for h, w in [(600, 600), (1024, 1024), (700, 1000)]:
        image = textured_image(h, w, seed=h + w)
        objects = random_objects(h, w, 6, seed=h * w)
        emb = labeler.embed([image])
        predictor.set_image(image)
        for name in ["H-Box", "RH-Box", "CP", "H-Box-M"]:
            prompts = make_prompts(name, objects, (h, w))
            ref_masks, ref_scores = reference_prompts(predictor, (h, w), prompts)
            got = labeler.decode(emb, 0, prompts)
            ious = mask_ious(got.masks, ref_masks)
            all_ious.extend(ious)
            worst_score = max(worst_score, float(np.abs(got.scores - ref_scores).max()))
            print(f"  {h}x{w} {name:8s} IoU min {ious.min():.4f} mean {ious.mean():.4f}")
    ious = np.asarray(all_ious)
    ok = ious.min() >= 0.99 and ious.mean() >= 0.995
    line = (f"parity {device} fp32 ({attn}): per-mask IoU min {ious.min():.4f}, mean {ious.mean():.4f}, "
            f"max |score diff| {worst_score:.2e} -> {'PASS' if ok else 'FAIL'}")
    print(line)
    SUMMARY.append(line)


REFERENCE: dict = {}  # the reference loop's images/s, measured once, for later sections' ratios


def section_bench(argv: list[str], label: str):
    if REFERENCE and "--skip-reference" in argv:
        argv = [*argv, "--reference-images-per-s", str(REFERENCE["images_per_s"])]
    res = bench_labeling.main(bench_labeling.parser().parse_args(argv))
    if "ref_images_per_s" in res:
        REFERENCE["images_per_s"] = res["ref_images_per_s"]
    parts = [f"{label}: ours {res['images_per_s']:.2f} images/s, peak {res['peak_mb']:.0f} MiB"]
    if "ref_images_per_s" in res:
        parts.append(f"reference {res['ref_images_per_s']:.2f} images/s, peak {res['ref_peak_mb']:.0f} MiB, "
                     f"mask IoU vs ref mean {res['mask_iou_mean']:.4f}")
    if "speedup" in res:
        parts.append(f"SPEEDUP {res['speedup']:.2f}x (target >= 5x)")
    parts.append(f"runs/mask median {res['runs_per_mask_median']:.0f}")
    parts.append(f"encoder {res['encoder_s_per_image'] * 1000:.1f} ms/image, {res['encoder_tflops']:.0f} TFLOP/s"
                 + (f", MFU {100 * res['mfu']:.1f}% (target >= 40%)" if "mfu" in res else ""))
    line = "; ".join(parts)
    SUMMARY.append(line)


def section_flex(bench, separate):
    """Flex traced into the compiled encoder; if this torch cannot lower that, flex compiled alone
    (``--attn flex+separate-flex``)."""
    try:
        bench()
    except Exception as exc:
        traceback.print_exc()
        SUMMARY.append(f"flex inside the compiled graph failed ({type(exc).__name__}); retrying with flex compiled alone")
        torch._dynamo.reset()
        separate()


def section_decoder(device, dtype: str):
    """SAM's mask decoder alone (150 boxes, one 1024² image): the shared-image decoder against
    transformers' forward; in fp32 the logits difference is the new decoder's CUDA parity."""
    res = bench_decoder.main(bench_decoder.parser().parse_args(
        ["--device", str(device), "--dtype", dtype, "--boxes", "150", "--reps", "3"]))
    old, new = res["transformers, RLE out"], res["shared, RLE out"]
    SUMMARY.append(f"decoder alone, {dtype}, 150 boxes, RLE out: transformers' {old * 1000:.1f} ms/image, shared "
                   f"{new * 1000:.1f} ms/image ({old / new:.2f}x); low-res logits max |diff| "
                   f"{res['logits_max_diff']:.1e}, mask IoU min {res['mask_iou_min']:.4f} (fp32: >= 0.99)")


def section_sep():
    """#20 target 4: SEP's full input pipeline against the bare training loop, ResNet-50 shapes
    (random weights), batch 96, 224 crops of 800² images, 8 workers: the PNG path and the
    --decode-cache + --augment-on device path (target >= 0.9x)."""
    import tempfile

    from transformers import ResNetConfig

    folder = tempfile.mkdtemp(prefix="resnet50-config-")
    ResNetConfig().save_pretrained(folder)  # transformers' defaults are ResNet-50's shapes
    bench_sep.main(["--backbone", folder, "--batch-size", "96", "--crop", "224", "--hidden-size", "512",
                    "--threads", "16", "--workers", "8", "--steps", "10", "--rounds", "3", "--image-size", "800",
                    "--images", "96", "--new-pipeline"])
    SUMMARY.append("SEP input pipeline: the ratios are printed above (bench_sep.py --new-pipeline)")


def main():
    ap = argparse.ArgumentParser(description="GPU parity + labeling benchmark")
    ap.add_argument("--budget-s", type=float, default=540.0, help="skip sections once this much time has passed")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model-size", default="vit_h", choices=sorted(SHAPES), help="tiny: dry run of this script")
    ap.add_argument("--images", default="16")
    ap.add_argument("--boxes", default="150")
    ap.add_argument("--image-batch-size", default="8")
    ap.add_argument("--only", default=None, metavar="KEY[,KEY]",
                    help="run only these sections (keys: " + ", ".join(SECTION_KEYS) + "), e.g. two calls of "
                         "under 10 minutes each: --only labeling,decoder,parity and --only sep,encoder")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    if only and only - set(SECTION_KEYS):
        ap.error(f"unknown section keys {sorted(only - set(SECTION_KEYS))}; known: {', '.join(SECTION_KEYS)}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available; nothing to check")
        return 1
    start, size = time.perf_counter(), args.model_size
    common = ["--model-size", size, "--images", args.images, "--boxes", args.boxes, "--dtype", "bfloat16",
              "--device", args.device, "--image-batch-size", args.image_batch_size, "--encoder-reps", "3"]
    what = f"{size} bf16 {args.boxes} boxes, image batch {args.image_batch_size}"

    def bench(extra: list[str], label: str):
        return lambda: section_bench([*common, *extra], f"{what}, {label}")

    # name, seconds it needs (compiling vit_h takes a minute or two), function
    sections = [
        ("versions", "versions", 0, lambda: section_versions(device)),
        ("attention", "attention alone, global and windowed layers (vit_h shapes)", 40, lambda: [
            SUMMARY.extend(bench_relpos_attention.run(
                ["--device", args.device, "--batch", args.image_batch_size, *window]
                + (["--grid", "16", "--head-dim", "32", "--dtype", "float32"] if size == "tiny" else [])))
            for window in ([], ["--window"])]),
        ("encoder", "encoder alone, compiled: triton, triton+unfused-gelu, sdpa (MFU, profile)", 200,
         lambda: SUMMARY.extend(bench_encoder.run(
             ["--model-size", size, "--device", args.device, "--batch-sizes", args.image_batch_size,
              "--attn", "triton", "triton+unfused-gelu", "sdpa", "--modes", "default", "--profile",
              "--budget-s", str(max(0.0, args.budget_s - (time.perf_counter() - start) - 300))]))),
        ("labeling", "reference loop vs ours: triton (the CUDA default), compiled, RLE out", 150,
         bench(["--attn", "triton", "--compile", "--output", "rle"], "triton, compiled, RLE out")),
        ("sdpa", "ours: sdpa attention, compiled, RLE out", 100,
         bench(["--attn", "sdpa", "--compile", "--output", "rle", "--skip-reference"], "sdpa, compiled, RLE out")),
        ("transformers-decoder", "ours: transformers' mask decoder (not the shared-image one), compiled, RLE out", 100,
         bench(["--attn", "triton", "--compile", "--output", "rle", "--skip-reference", "--decoder", "transformers"],
               "triton, compiled, RLE out, transformers' decoder")),
        ("parity", "parity fp32 (triton)", 20, lambda: section_parity(device, "triton")),
        ("parity", "parity fp32 (sdpa)", 20, lambda: section_parity(device, "sdpa")),
        ("decoder", "mask decoder alone, shared-image vs transformers': fp32 (CUDA parity), bf16", 60,
         lambda: [section_decoder(device, dtype) for dtype in ("float32", "bfloat16")]),
        ("sep", "SEP input pipeline vs the bare loop (ResNet-50, batch 96, 8 workers)", 200, section_sep),
        ("flex", "ours: flex attention, compiled, RLE out", 150,
         lambda: section_flex(*(bench([*attn, "--compile", "--output", "rle", "--skip-reference"],
                                      "flex, compiled, RLE out")
                                for attn in (["--attn", "flex"], ["--attn", "flex+separate-flex"])))),
        ("flex", "parity fp32 (flex)", 40, lambda: section_parity(device, "flex")),
        ("masks", "ours: triton, compiled, boolean masks out", 100,
         bench(["--attn", "triton", "--compile", "--output", "masks", "--skip-reference"],
               "triton, compiled, masks out")),
        ("eager", "ours: triton, not compiled, RLE out", 30,
         bench(["--attn", "triton", "--output", "rle", "--skip-reference"], "triton, eager, RLE out")),
    ]
    status = 0
    for key, name, needs, fn in sections:
        if only and key not in only | {"versions"}:
            continue
        elapsed = time.perf_counter() - start
        if elapsed + needs > args.budget_s:
            msg = f"[{name}] SKIPPED: {elapsed:.0f}s elapsed, budget {args.budget_s:.0f}s"
            print(msg)
            SUMMARY.append(msg)
            continue
        print(f"\n===== {name} (t={elapsed:.0f}s) =====", flush=True)
        try:
            fn()
        except Exception as exc:  # keep going: every section's figures are independent
            traceback.print_exc()
            SUMMARY.append(f"[{name}] ERROR {type(exc).__name__}: {exc}")
            status = 1
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        SUMMARY.append(f"  ({name}: done at t={time.perf_counter() - start:.0f}s)")
    print(f"\n===== SUMMARY ({time.perf_counter() - start:.0f}s) =====")
    for line in SUMMARY:
        print(line)
    return status


if __name__ == "__main__":
    sys.exit(main())
