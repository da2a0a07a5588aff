"""SAM's vision attention alone with its decomposed rel-pos bias (vit_h: 16 heads, head dim 80; a
global layer's 64x64 = 4096 tokens, or with --window a windowed layer's 25 windows of 14x14 on the
64x64 grid padded to 70x70), on the same inputs: transformers' SDPA with the materialised bias
(padding, partitioning and bias construction timed too: every layer runs them), FlexAttention with
the tables in a score_mod (compiled; global only), our Triton kernel (``samrs_hf.sam.relpos_flash``, which
windows and pads inside the kernel), and SDPA without the bias (flash: a floor, not SAM's math;
global only). Prints ms per image, TFLOP/s of the attention matmuls (as SAM runs them, padding
included), and each one's largest difference from a float32 reference.

    PYTHONPATH=. python benchmarks/bench_relpos_attention.py --batch 8
    PYTHONPATH=. python benchmarks/bench_relpos_attention.py --batch 8 --window   # 25 14x14 windows/image
    PYTHONPATH=. python benchmarks/bench_relpos_attention.py --device cpu --dtype float32 --grid 16 --batch 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_labeling import DTYPES, Report, _sync  # noqa: E402

from samrs_hf.sam.relpos_flash import reference_relpos_attention, relpos_attention  # noqa: E402


def inputs(batch, heads, grid, head_dim, dtype, device, window, seed=0):
    """q, k, v as strided views of one fused (batch, grid, grid, 3, heads, head_dim) qkv (as SAM's
    attention makes it), the padded tokens' key/value bias and the two rel-pos tables."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    rows = grid if window == 0 else window
    qkv = torch.randn(batch, grid, grid, 3, heads, head_dim, generator=g).to(device=device, dtype=dtype)
    query, key, value = qkv.unbind(3)
    key_bias, value_bias = torch.randn(2, heads, head_dim, generator=g).to(device=device, dtype=dtype).unbind(0)
    rel_h = (torch.randn(batch, heads, grid * grid, rows, generator=g) * 2).to(device=device, dtype=dtype)
    rel_w = (torch.randn(batch, heads, grid * grid, rows, generator=g) * 2).to(device=device, dtype=dtype)
    return query, key, value, key_bias, value_bias, rel_h, rel_w


def variants(scale: float, window: int, device, rel_h_rows) -> dict:
    """name -> fn(*inputs) returning (B, grid, grid, heads, D). ``rel_h_rows``: rel_h's values laid out
    key-row-major, as ``--attn triton`` hands them to its kernel."""

    def sdpa_bias(q, k, v, kb, vb, rh, rw):
        return reference_relpos_attention(q, k, v, kb, vb, rh, rw, scale, window)

    def triton(q, k, v, kb, vb, rh, rw):
        return relpos_attention(q, k, v, kb, vb, rel_h_rows, rw, scale, window)

    out = {"sdpa + materialised bias (transformers)": sdpa_bias, "triton (ours)": triton}
    if window:  # flex and the bias-free floor: global layers only
        return out

    def heads_first(t):  # (B, H, W, heads, D) -> (B, heads, N, D)
        return t.flatten(1, 2).transpose(1, 2)

    def tokens_back(out, q):  # (B, heads, N, D) -> (B, H, W, heads, D)
        return out.transpose(1, 2).reshape(q.shape)

    def sdpa_no_bias(q, k, v, kb, vb, rh, rw):
        return tokens_back(F.scaled_dot_product_attention(*map(heads_first, (q, k, v)), scale=scale), q)

    try:
        from torch.nn.attention.flex_attention import flex_attention

        flex_c = torch.compile(flex_attention) if device.type == "cuda" else flex_attention

        def flex(q, k, v, kb, vb, rh, rw):
            cols = rw.shape[-1]

            def score_mod(score, b, h, qi, ki):
                return score + rh[b, h, qi, ki // cols] + rw[b, h, qi, ki % cols]

            return tokens_back(flex_c(*map(heads_first, (q, k, v)), score_mod=score_mod, scale=scale), q)

        out["flex (compiled)" if device.type == "cuda" else "flex (eager reference)"] = flex
    except ImportError:
        pass
    out["sdpa, no bias (floor, not SAM's math)"] = sdpa_no_bias
    return out


def run(argv=None) -> list[str]:
    """Time every variant; returns the printed result lines."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    p.add_argument("--batch", type=int, default=8, help="images (vit_h global layer: 16 heads each)")
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--grid", type=int, default=64, help="token grid side (SAM: 64)")
    p.add_argument("--window-size", type=int, default=14, help="window side with --window (SAM: 14)")
    p.add_argument("--head-dim", type=int, default=80, help="vit_h 80, vit_b/vit_l 64")
    p.add_argument("--window", action="store_true",
                   help="a windowed layer instead: SAM's 64x64 grid padded to 70x70, 25 windows of 14x14")
    p.add_argument("--reps", type=int, default=10)
    args = p.parse_args(argv)

    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    window = args.window_size if args.window else 0
    side = window or args.grid
    windows = (-(-args.grid // side)) ** 2
    scale, n = args.head_dim ** -0.5, side * side  # tokens per attention (window)
    flops = 4 * args.batch * windows * args.heads * n * n * args.head_dim  # q.k and p.v, padded as SAM runs them
    tensors = inputs(args.batch, args.heads, args.grid, args.head_dim, dtype, device, window)
    image0 = [t[:1].float() for t in tensors[:3]] + [t.float() for t in tensors[3:5]] + [t[:1].float() for t in tensors[5:]]
    want = reference_relpos_attention(*image0, scale, window)  # image 0, float32
    report = Report()

    report(f"torch {torch.__version__}, {device}, {args.dtype}: {args.batch} images x {windows} windows x "
           f"{args.heads} heads x {n} tokens x head dim {args.head_dim}, {flops / args.batch / 1e9:.1f} GFLOP/image")
    rel_h_rows = tensors[5].transpose(-1, -2).contiguous().transpose(-1, -2)
    for name, fn in variants(scale, window, device, rel_h_rows).items():
        try:
            with torch.no_grad():
                got = fn(*tensors)  # first call compiles / autotunes
                fn(*tensors)
                _sync(device)
                t = time.perf_counter()
                for _ in range(args.reps):
                    fn(*tensors)
                _sync(device)
                sec = (time.perf_counter() - t) / args.reps
        except Exception as exc:  # noqa: BLE001 - report and go on
            report.error(name, exc)
            continue
        err = (got[:1].float() - want).abs().max().item()
        report(f"{name}: {1000 * sec / args.batch:.3f} ms/image, {flops / sec / 1e12:.1f} TFLOP/s, "
               f"max |diff| vs float32 {err:.2e}")
    return report


if __name__ == "__main__":
    run()
