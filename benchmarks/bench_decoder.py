"""The mask decoder side alone: N boxes of one image through ``SamLabeler.decode`` on a SAM whose
image encoder is tiny (so the encoder costs nothing) but whose mask decoder is SAM's real one (256
channels, 64x64 tokens, two two-way blocks): the shared-image decoder (``sam.fast_decoder``) against
transformers' ``SamMaskDecoder`` forward, interleaved calls in one process, the median of each.

    PYTHONPATH=. python benchmarks/bench_decoder.py --boxes 150 --dtype float32 --reps 2

Prints seconds per image for masks out and RLE out (what `samrs build` asks for), the low-res
decoder call alone, and the mask IoU of the two paths; ``--two-thread-ops`` also times the shared
decoder's CPU groups on torch's intra-op threads (what a shared CPU slows down, sam.cpu_workers).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from samrs_hf.sam import fast_decoder
from samrs_hf.sam.cpu_workers import map_in_workers
from samrs_hf.sam.reference.segment_anything import build_reference_sam, mask_ious, random_boxes, textured_image

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _labeler(dtype, device):
    from samrs_hf.sam.engine import SamLabeler
    from samrs_hf.sam.loading import load_sam

    sam = build_reference_sam("tiny", seed=0, smooth_masks=True)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sam_tiny.pth"
        torch.save(sam.state_dict(), path)
        model = load_sam(str(path))[0]
    return SamLabeler(model, dtype=dtype, device=device)


def _timed(fn):
    _sync()
    t = time.perf_counter()
    out = fn()
    _sync()
    return time.perf_counter() - t, out


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _low_res(labeler, emb, prompts, shared: bool):
    """The decoder call alone: prompt encoder + mask decoder, (N, 1, 256, 256) logits."""
    ops, model = labeler.ops, labeler.model
    points, labels, boxes, _ = labeler._prompt_tensors(prompts, emb.original_sizes[0], emb.input_sizes[0])
    with torch.no_grad():
        sparse, dense = model.prompt_encoder(input_points=points, input_labels=labels, input_boxes=boxes,
                                             input_masks=None)
        sparse, dense = sparse.to(labeler.dtype), dense.to(labeler.dtype)
        image = emb.embeddings[:1]
        if shared:
            return ops.shared_decoder(image, ops.image_pe, sparse, dense[:1])[0]
        n = sparse.shape[0]
        return model.mask_decoder(image.expand(n, -1, -1, -1), ops.image_pe.expand(n, -1, -1, -1), sparse, dense,
                                  multimask_output=False)[0][:, 0]


def main(args) -> dict:
    from samrs_hf.sam.prompts import PromptBatch

    torch.set_num_threads(args.threads or torch.get_num_threads())
    labeler = _labeler(DTYPES[args.dtype], args.device)
    shared = labeler.ops.shared_decoder
    image = textured_image(args.size, args.size, seed=0)
    prompts = PromptBatch(boxes=random_boxes(args.size, args.size, args.boxes, seed=0), points=None,
                          point_labels=None, masks=None, box_kind="H-Box")
    emb = labeler.embed([image])
    where = torch.cuda.get_device_name(args.device) if str(args.device).startswith("cuda") else \
        f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, {args.dtype}, {args.boxes} boxes of one "
          f"{args.size}x{args.size} image, tiny-ViT SAM (SAM's mask decoder)")
    times: dict[str, list[float]] = {}
    outs: dict[str, object] = {}

    def call(name, use_shared, two_thread_ops=False, **kw):
        labeler.ops.shared_decoder = shared if use_shared else None
        if two_thread_ops:  # each op on torch's intra-op threads, as before sam.cpu_workers
            fast_decoder.map_in_workers = lambda fn, items: [fn(x) for x in items]
        try:
            if kw.get("low_res"):
                t, out = _timed(lambda: _low_res(labeler, emb, prompts, use_shared))
            else:
                t, out = _timed(lambda: labeler.decode(emb, 0, prompts, **kw))
        finally:
            labeler.ops.shared_decoder = shared
            fast_decoder.map_in_workers = map_in_workers
        times.setdefault(name, []).append(t)
        outs[name] = out

    labeler.decode(emb, 0, prompts)  # warm-up
    for _ in range(args.reps):
        for use_shared in (False, True):
            side = "shared" if use_shared else "transformers"
            call(f"{side}, masks out", use_shared)
            call(f"{side}, RLE out", use_shared, output="rle", labels=np.zeros(args.boxes, np.int64))
            call(f"{side}, low-res logits only", use_shared, low_res=True)
        if args.two_thread_ops:
            call("shared, two-thread ops, low-res logits only", True, two_thread_ops=True, low_res=True)
    results = {name: statistics.median(ts) for name, ts in times.items()}
    for name, t in results.items():
        print(f"{name}: {t:.2f} s/image (calls: {', '.join(f'{x:.2f}' for x in times[name])})")
    ious = mask_ious(outs["shared, masks out"].masks, outs["transformers, masks out"].masks)
    diff = (outs["shared, low-res logits only"] - outs["transformers, low-res logits only"]).abs().max().item()
    masks_ratio = results["transformers, masks out"] / results["shared, masks out"]
    print(f"shared vs transformers: masks out {masks_ratio:.2f}x, "
          f"low-res {results['transformers, low-res logits only'] / results['shared, low-res logits only']:.2f}x; "
          f"mask IoU min {min(ious):.5f}; low-res logits max |diff| {diff:.2e}")
    return {**results, "mask_iou_min": float(min(ious)), "logits_max_diff": float(diff)}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--boxes", type=int, default=150)
    p.add_argument("--size", type=int, default=1024, help="image side in pixels")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    p.add_argument("--reps", type=int, default=2, help="interleaved calls of each kind")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda: on CUDA the shared decoder runs a "
                   "whole chunk at once; the printed logits difference is its CUDA parity with transformers'")
    p.add_argument("--two-thread-ops", action="store_true",
                   help="also the shared decoder with its CPU prompt groups on torch's intra-op threads instead of "
                        "single-threaded workers (sam.cpu_workers)")
    return p


if __name__ == "__main__":
    main(parser().parse_args())
