"""Our SamLabeler against SAMRS's reference loop on the same images, boxes and weights.

Reference: segment-anything ``SamPredictor``, fp32, one image at a time, 20 boxes per
``predict_torch`` call, masks copied to the CPU (what SAMRS ran). Ours: ``SamLabeler`` with the chosen
dtype / image batch / attention. Both get the same random-weight SAM of the chosen shape.

    PYTHONPATH=. python benchmarks/bench_labeling.py --model-size vit_b --images 4 --boxes 150 --dtype bfloat16

``--family sam_hq|sam2|sam3|edgetam`` measures another SAM generation against its own reference
predictor instead (:mod:`bench_families`; ``--model-size`` then names that family's sizes).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from samrs_hf.sam.reference.segment_anything import (  # noqa: E402
    SHAPES, build_reference_sam, column_runs, import_segment_anything, mask_ious, random_boxes, reference_label,
    textured_image,
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
FAMILY_SIZES = ("hiera_t", "hiera_s", "hiera_b+", "hiera_l", "edgetam", "full")  # SAM 2.1's, EdgeTAM's, SAM 3's (bench_families)
KNOWN_PEAKS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16 TFLOP/s


def encoder_flops(vision_config) -> float:
    """Model FLOPs (2 per multiply-add) of one ``image_size`` image through SAM's ViT encoder: every
    MFU figure divides by this, whatever attention runs.

    ``torch.utils.flop_counter`` counts transformers' encoder as written (eager attention, on the
    meta device), which projects the windowed layers' zero-padded tokens too (64 -> 70 a side); their
    rows are padding, not model work, and our layers skip them, so they are taken off: qkv and proj
    rows, query rows of q.k and attention.v, and rel-pos rows. The padded tokens stay counted as keys
    and values (they are in SAM's softmax). vit_b 0.94, vit_h 5.64 TFLOP/image."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers.models.sam.modeling_sam import SamVisionEncoder

    config = copy.deepcopy(vision_config)
    config._attn_implementation = "eager"
    with torch.device("meta"):
        encoder = SamVisionEncoder(config)
        pixels = torch.empty(1, config.num_channels, config.image_size, config.image_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        encoder(pixels)
    grid, window, dim = config.image_size // config.patch_size, config.window_size, config.hidden_size
    padded = (-(-grid // window) * window) ** 2 - grid**2 if window else 0  # padded tokens per windowed layer
    per_padded_token = 2 * (4 * dim * dim + 2 * window * window * dim + 2 * window * dim)
    windowed = config.num_hidden_layers - len(config.global_attn_indexes)
    return float(counter.get_total_flops() - windowed * padded * per_padded_token)


ATTN_CHOICES = ("sdpa", "sdpa+padded", "sdpa+unfused-gelu", "eager", "flex", "flex+separate-flex", "triton",
                "triton+sdpa-windows", "triton+unfused-gelu", "triton+windows", "triton+gelu", "sdpa+gelu")
"""The benchmarks' --attn values: an attention implementation as ``samrs build --attn`` runs it, with
switches (fields of ``SamAttentionOptions`` turned off): "+padded" = ``unpadded_windows`` (qkv and
proj on the zero-padded grid, as transformers runs the windowed layers); "+sdpa-windows" =
``triton_windows`` (triton in the global layers only); "+unfused-gelu" = ``fused_mlp_gelu`` (lin1,
then a separate GELU kernel, as transformers runs the MLP); "+separate-flex" = ``flex_inline`` (flex
compiled on its own, across a graph break). "triton+windows", "triton+gelu" and "sdpa+gelu" are the
plain choices under the names earlier measurements used, when those switches were off by default."""

_SWITCHES = {"padded": "unpadded_windows", "sdpa-windows": "triton_windows", "unfused-gelu": "fused_mlp_gelu",
             "separate-flex": "flex_inline"}


def benchmark_options(choice: str):
    """A benchmark's --attn choice -> the ``SamAttentionOptions`` it names (every other switch on, as
    ``samrs build`` runs it)."""
    from samrs_hf.sam.options import SamAttentionOptions

    if choice not in ATTN_CHOICES:
        raise ValueError(f"--attn must be one of {', '.join(ATTN_CHOICES)}, got {choice!r}")
    attn, *switches = choice.split("+")
    return SamAttentionOptions(attn, **{_SWITCHES[s]: False for s in switches if s in _SWITCHES})


class Report(list):
    """The result lines a benchmark prints as it goes and returns (gpu_check's summary collects them)."""

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        self.append(line)

    def error(self, name: str, exc: BaseException, limit: int = 300) -> None:
        self(f"{name}: ERROR {type(exc).__name__}: {str(exc)[:limit]}")


def chip_peak_tflops(device: torch.device, given: float | None = None) -> float | None:
    """``given``, else the dense bf16 peak of a known CUDA chip, else None (no MFU printed)."""
    if given is not None or device.type != "cuda":
        return given
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in KNOWN_PEAKS.items() if k in name), None)


class PeakMemory:
    """Peak device memory (CUDA allocator) or peak process RSS (CPU, sampled every 5 ms)."""

    def __init__(self, device: torch.device):
        self.device, self.peak, self._stop = device, 0, threading.Event()

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.005)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
        return False


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mask_agreement(ours, ref) -> tuple[float, float]:
    """(min, mean) IoU of our masks vs the reference masks, skipping masks empty in both."""
    ious = np.concatenate([mask_ious(a, b) for a, b in zip(ours, ref)])
    return (float(ious.min()), float(ious.mean())) if len(ious) else (float("nan"), float("nan"))


_MODELS: dict = {}


def reference_sam(size: str, smooth: bool):
    """One random SAM per shape for all runs of a process (building vit_h takes a while)."""
    key = (size, smooth)
    if key not in _MODELS:
        _MODELS[key] = build_reference_sam(size, seed=0, smooth_masks=smooth)
    return _MODELS[key]


def run(args) -> dict:
    from samrs_hf.sam.engine import SamLabeler
    from samrs_hf.sam.loading import default_attn_implementation, sam_model_from_checkpoint

    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    choice = default_attn_implementation(device) if args.attn == "auto" else args.attn
    options = benchmark_options(choice)
    dim, depth, heads, _ = SHAPES[args.model_size]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, device {device} ({where})")
    print(f"model {args.model_size} shapes (random weights): dim {dim}, depth {depth}, heads {heads}; "
          f"{args.images} images {args.size}x{args.size}, {args.boxes} boxes each; ours: {args.dtype}, "
          f"image batch {args.image_batch_size}, attention {choice}, output {args.output}, {args.masks} masks"
          + (", compiled" if args.compile else "") + f", decoder {args.decoder}")

    t0 = time.perf_counter()
    sam = reference_sam(args.model_size, args.masks == "smooth")
    images = [textured_image(args.size, args.size, seed=i) for i in range(args.images)]
    boxes = [random_boxes(args.size, args.size, args.boxes, seed=i) for i in range(args.images)]
    print(f"setup {time.perf_counter() - t0:.1f}s")
    results: dict = {"model_size": args.model_size, "dtype": args.dtype, "device": str(device),
                     "images": args.images, "boxes": args.boxes}

    ref_masks = None if args.skip_reference else _run_reference(args, sam, images, boxes, device, results)
    model = sam_model_from_checkpoint(sam.state_dict(), options)
    labeler = SamLabeler(model, device=device, dtype=dtype, image_batch_size=args.image_batch_size,
                         max_masks_per_chunk=args.chunk, compile=args.compile)
    if args.decoder == "transformers":  # the decoder as before #20: N copies of the image side
        labeler.ops.shared_decoder = None
    from samrs_hf.sam.prompts import PromptBatch

    prompts = [PromptBatch(boxes=b, points=None, point_labels=None, masks=None, box_kind="H-Box") for b in boxes]
    # --output rle: what `samrs build` asks for (RLE runs + gray map from the device, no full masks).
    kw = {"output": args.output}
    if args.output == "rle":
        kw["labels"] = [np.zeros(len(p), dtype=np.int64) for p in prompts]
    labeler.label(images[: args.image_batch_size], prompts[: args.image_batch_size],
                  **{k: (v[: args.image_batch_size] if k == "labels" else v) for k, v in kw.items()})  # warm-up
    with PeakMemory(device) as mem:
        _sync(device)
        t = time.perf_counter()
        ours = labeler.label(images, prompts, **kw)
        _sync(device)
        our_time = time.perf_counter() - t
    results.update(images_per_s=args.images / our_time, peak_mb=mem.peak / 2**20)
    print(f"ours SamLabeler {args.dtype}: {results['images_per_s']:.3f} images/s ({our_time:.1f}s), "
          f"peak memory {results['peak_mb']:.0f} MiB")

    _time_encoder(args, labeler, images[: args.image_batch_size], device, results)

    def to_masks(r):
        if r.masks is not None:
            return r.masks
        from pycocotools import mask as mask_utils

        rles = [{"size": x["size"], "counts": x["counts"].encode()} for x in r.rles]
        return mask_utils.decode(rles).transpose(2, 0, 1).astype(bool)

    # What the RLE path moves depends on the masks: real SAM masks have hundreds of runs.
    first = to_masks(ours[0])
    runs = column_runs(first)
    results.update(runs_per_mask_median=float(np.median(runs)), runs_per_mask_max=int(runs.max()))
    print(f"masks of image 0: runs per mask median {np.median(runs):.0f}, max {runs.max()}; "
          f"area {first.mean(axis=(1, 2)).mean():.2%} of the image on average")

    ref_rate = results.get("ref_images_per_s", args.reference_images_per_s)
    if ref_rate:
        results["speedup"] = results["images_per_s"] / ref_rate
        line = f"SPEEDUP ours/reference: {results['speedup']:.2f}x"
        if ref_masks is not None:
            lo, mean = mask_agreement([to_masks(r) for r in ours], ref_masks)
            results.update(mask_iou_min=lo, mask_iou_mean=mean)
            line += f"   (mask IoU vs reference: min {lo:.4f}, mean {mean:.4f})"
        else:
            line += f" (reference {ref_rate:.3f} images/s given)"
        print(line)
    return results


def _run_reference(args, sam, images, boxes, device, results: dict) -> list:
    """SAMRS's SamPredictor loop (fp32, 20 boxes a call): its rate and memory into ``results``; its masks."""
    sa = import_segment_anything()
    predictor = sa.SamPredictor(sam.to(device))
    reference_label(predictor, images[0], boxes[0][: min(20, args.boxes)])  # warm-up
    with PeakMemory(device) as mem:
        _sync(device)
        t = time.perf_counter()
        ref_masks = [reference_label(predictor, im, bx)[0] for im, bx in zip(images, boxes)]
        _sync(device)
        ref_time = time.perf_counter() - t
    results.update(ref_images_per_s=args.images / ref_time, ref_peak_mb=mem.peak / 2**20)
    print(f"reference SamPredictor fp32, 20 boxes/call: {results['ref_images_per_s']:.3f} images/s "
          f"({ref_time:.1f}s), peak memory {results['ref_peak_mb']:.0f} MiB")
    sam.to("cpu")
    return ref_masks


def _time_encoder(args, labeler, batch, device, results: dict) -> None:
    """The image encoder alone, for the MFU: ms/image, TFLOP/s (and MFU given the chip's peak)."""
    labeler.embed(batch)
    _sync(device)
    t = time.perf_counter()
    reps = max(1, args.encoder_reps)
    for _ in range(reps):
        labeler.embed(batch)
    _sync(device)
    enc_time = (time.perf_counter() - t) / (reps * len(batch))
    flops = encoder_flops(labeler.model.config.vision_config)
    tflops = flops / enc_time / 1e12
    peak = chip_peak_tflops(device, args.peak_tflops)
    results.update(encoder_s_per_image=enc_time, encoder_tflops=tflops, encoder_gflop_per_image=flops / 1e9)
    line = (f"image encoder: {enc_time * 1000:.1f} ms/image, {results['encoder_gflop_per_image']:.0f} GFLOP/image, "
            f"{tflops:.2f} TFLOP/s")
    if peak:
        results["mfu"] = tflops / peak
        line += f", MFU {100 * results['mfu']:.1f}% of {peak:.0f} TFLOP/s"
    print(line)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", default="sam", help="sam (default), sam_hq, sam2, sam3 or edgetam (bench_families)")
    p.add_argument("--model-size", choices=[*sorted(SHAPES), *FAMILY_SIZES], default=None,
                   help="SAM / HQ-SAM: tiny, vit_b (default), vit_l, vit_h; SAM 2.1: tiny, hiera_t (default), "
                        "hiera_s, hiera_b+, hiera_l; EdgeTAM: tiny, edgetam (default, the released layout); SAM 3: tiny (default), full")
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--boxes", type=int, default=150, help="boxes per image (150 ~ a DOTA car park tile)")
    p.add_argument("--size", type=int, default=1024, help="image side in pixels")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--image-batch-size", type=int, default=1)
    p.add_argument("--chunk", type=int, default=None, help="masks per decoder chunk (default: sized to memory)")
    p.add_argument("--attn", choices=["auto", *ATTN_CHOICES], default="auto",
                   help="vision attention; auto = the engine's default for the device (see ATTN_CHOICES)")
    p.add_argument("--encoder-reps", type=int, default=2)
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="chip's dense peak for the MFU (default: 989 on H100/H200)")
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--reference-images-per-s", type=float, default=None,
                   help="with --skip-reference: a reference figure measured earlier on this machine, for the ratio")
    p.add_argument("--masks", choices=["smooth", "random"], default="smooth",
                   help="smooth: random weights whose masks are smooth regions like real SAM masks (default); "
                        "random: plain random weights, pixel speckle (see sam_reference.build_reference_sam)")
    p.add_argument("--output", choices=["masks", "rle"], default="masks",
                   help="ours returns full bool masks, or (as `samrs build` does) RLE runs + the gray map")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the image encoder and the mask decoder (the warm-up compiles)")
    p.add_argument("--decoder", choices=["shared", "transformers"], default="shared",
                   help="SAM without mask prompts: the shared-image decoder (default, sam.fast_decoder) or "
                        "transformers' SamMaskDecoder forward, to measure the difference")
    return p


def main(args) -> dict:
    """The SAM benchmark, or (``--family``) another generation's."""
    if args.family != "sam":
        from bench_families import run_family

        return run_family(args)
    if args.model_size is None:
        args.model_size = "vit_b"
    if args.model_size not in SHAPES:
        raise SystemExit(f"--model-size {args.model_size} is not a SAM size ({', '.join(sorted(SHAPES))})")
    return run(args)


if __name__ == "__main__":
    main(parser().parse_args())
