"""One-shot GPU check for a lent H100/H200 (no network; ~5 minutes).

    PYTHONPATH=. python benchmarks/gpu_check.py [--budget-s 330]

Sections (each guarded; an error is printed and the next section runs):
  1. versions and device;
  2. parity on CUDA fp32: SamPredictor vs SamLabeler, tiny random ViT made by segment-anything's
     builder, 3 image sizes x 4 prompt kinds (per-mask IoU >= 0.99, mean >= 0.995);
  3. image encoder eager vs sdpa, vit_h shapes, bf16 (which default is faster);
  4. bench_labeling vit_h shapes, bf16, 150 boxes/image vs the fp32 reference loop (target >= 5x,
     MFU >= 40 %), then a larger image batch without the reference for the MFU, then the same with
     the encoder under torch.compile (skipped when the budget is spent).
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
import bench_labeling  # noqa: E402
from sam_reference import (  # noqa: E402
    SHAPES, build_reference_sam, import_segment_anything, mask_ious, random_objects, reference_prompts, textured_image,
)

SUMMARY: list[str] = []


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


def section_parity(device):
    from samrs_hf.engine import SamLabeler
    from samrs_hf.prompts import make_prompts
    from samrs_hf.sam_loading import sam_model_from_checkpoint

    sa = import_segment_anything()
    sam = build_reference_sam("tiny", seed=0)
    model = sam_model_from_checkpoint(sam.state_dict(), "sdpa")
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
    line = (f"parity {device} fp32 (sdpa): per-mask IoU min {ious.min():.4f}, mean {ious.mean():.4f}, "
            f"max |score diff| {worst_score:.2e} -> {'PASS' if ok else 'FAIL'}")
    print(line)
    SUMMARY.append(line)


def section_attention(device, size):
    from samrs_hf.sam_loading import sam_model_from_checkpoint, set_attn_implementation

    dim, depth, heads, global_idx = SHAPES[size]
    model = sam_model_from_checkpoint(build_reference_sam(size, seed=0).state_dict(), "sdpa")
    encoder = model.vision_encoder.to(device=device, dtype=torch.bfloat16).eval()
    flops = bench_labeling.encoder_flops(dim, depth, global_idx)
    for batch in (1, 4):
        x = torch.randn(batch, 3, 1024, 1024, device=device, dtype=torch.bfloat16)
        times = {}
        for attn in ("eager", "sdpa"):
            set_attn_implementation(model, attn)
            with torch.no_grad():
                encoder(x)
                bench_labeling._sync(device)
                t = time.perf_counter()
                for _ in range(3):
                    encoder(x)
                bench_labeling._sync(device)
            times[attn] = (time.perf_counter() - t) / (3 * batch)
        line = (f"{size} encoder bf16 batch {batch}: eager {times['eager'] * 1000:.1f} ms/image "
                f"({flops / times['eager'] / 1e12:.0f} TFLOP/s), sdpa {times['sdpa'] * 1000:.1f} ms/image "
                f"({flops / times['sdpa'] / 1e12:.0f} TFLOP/s)")
        print(line)
        SUMMARY.append(line)


def section_bench(argv: list[str], label: str):
    res = bench_labeling.run(bench_labeling.parser().parse_args(argv))
    parts = [f"{label}: ours {res['images_per_s']:.2f} images/s, peak {res['peak_mb']:.0f} MiB"]
    if "ref_images_per_s" in res:
        parts.append(f"reference {res['ref_images_per_s']:.2f} images/s, peak {res['ref_peak_mb']:.0f} MiB, "
                     f"SPEEDUP {res['speedup']:.2f}x (target >= 5x), mask IoU vs ref mean {res['mask_iou_mean']:.4f}")
    parts.append(f"encoder {res['encoder_s_per_image'] * 1000:.1f} ms/image, {res['encoder_tflops']:.0f} TFLOP/s"
                 + (f", MFU {100 * res['mfu']:.1f}% (target >= 40%)" if "mfu" in res else ""))
    line = "; ".join(parts)
    SUMMARY.append(line)


def main():
    ap = argparse.ArgumentParser(description="GPU parity + labeling benchmark")
    ap.add_argument("--budget-s", type=float, default=330.0, help="skip sections once this much time has passed")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model-size", default="vit_h", choices=sorted(SHAPES), help="tiny: dry run of this script")
    ap.add_argument("--images", default="8")
    ap.add_argument("--boxes", default="150")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available; nothing to check")
        return 1
    start, size = time.perf_counter(), args.model_size
    sections = [
        ("versions", lambda: section_versions(device)),
        ("parity", lambda: section_parity(device)),
        (f"bench {size} bf16 {args.boxes} boxes, image batch 4, vs reference", lambda: section_bench(
            ["--model-size", size, "--images", args.images, "--boxes", args.boxes, "--dtype", "bfloat16",
             "--device", args.device, "--image-batch-size", "4", "--encoder-reps", "3"],
            f"{size} bf16 {args.boxes} boxes batch 4")),
        ("attention eager vs sdpa", lambda: section_attention(device, size)),
        (f"bench {size} bf16 image batch 8 (MFU)", lambda: section_bench(
            ["--model-size", size, "--images", args.images, "--boxes", "20", "--dtype", "bfloat16",
             "--device", args.device, "--image-batch-size", "8", "--encoder-reps", "3", "--skip-reference"],
            f"{size} bf16 20 boxes batch 8, no reference")),
        (f"bench {size} bf16 image batch 8, torch.compile (MFU)", lambda: section_bench(
            ["--model-size", size, "--images", args.images, "--boxes", "20", "--dtype", "bfloat16",
             "--device", args.device, "--image-batch-size", "8", "--encoder-reps", "3", "--skip-reference",
             "--compile"],
            f"{size} bf16 20 boxes batch 8, compiled, no reference")),
    ]
    status = 0
    needs = {sections[-1][0]: 150.0}  # compiling vit_h takes minutes: only start with room left
    for name, fn in sections:
        elapsed = time.perf_counter() - start
        if elapsed + needs.get(name, 0.0) > args.budget_s:
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
    print(f"\n===== SUMMARY ({time.perf_counter() - start:.0f}s) =====")
    for line in SUMMARY:
        print(line)
    return status


if __name__ == "__main__":
    sys.exit(main())
