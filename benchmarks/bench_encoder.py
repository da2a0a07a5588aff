"""SAM image encoder alone: ms/image, TFLOP/s and MFU for torch.compile modes, image batches and
attention backends (random weights of the chosen shape, bf16).

    PYTHONPATH=. python benchmarks/bench_encoder.py --model-size vit_h --batch-sizes 8 16 \
        --modes default max-autotune-no-cudagraphs --budget-s 280

Each variant starts from a fresh dynamo cache, runs two warm-up calls (the first compiles) and
times ``--reps`` more. A variant that would not fit ``--budget-s`` is skipped, one that fails is
reported and the next runs.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_labeling import ATTN_CHOICES, DTYPES, Report, _sync, benchmark_options, chip_peak_tflops, encoder_flops  # noqa: E402
from samrs_hf.sam.reference.segment_anything import SHAPES, build_reference_sam  # noqa: E402

BACKENDS = ("auto", "cudnn", "efficient", "math")


def sdpa_context(backend: str):
    from contextlib import nullcontext

    if backend == "auto":
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel({"cudnn": SDPBackend.CUDNN_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                        "math": SDPBackend.MATH}[backend])


def time_encoder(encoder, batch: int, dtype, device, backend: str, reps: int) -> float:
    """Seconds per image (after two warm-up calls)."""
    x = torch.randn(batch, 3, 1024, 1024, device=device, dtype=dtype)
    with torch.no_grad(), sdpa_context(backend):
        encoder(x)
        encoder(x)
        _sync(device)
        t = time.perf_counter()
        for _ in range(reps):
            encoder(x)
        _sync(device)
    return (time.perf_counter() - t) / (reps * batch)


KERNEL_KINDS = (  # (kind, name pattern) of profiled kernels, first match wins
    ("attention", re.compile(r"attention|fmha|flash|relpos|sdpa|softmax", re.I)),
    ("matmul / conv", re.compile(r"gemm|nvjet|cutlass|xmma|sm\d+_|addmm|\bmm\b|bmm|matmul|linear|conv", re.I)),
    ("fused elementwise / norms", re.compile(r"triton_|layer_norm|gelu|elementwise|reduce|copy|cat|pad", re.I)),
)


def profile_encoder(encoder, batch: int, dtype, device, backend: str, top: int = 12) -> list[str]:
    """Where one encoder call's time goes: per-image time by kernel kind, then the top kernels."""
    from torch.profiler import ProfilerActivity, profile

    x = torch.randn(batch, 3, 1024, 1024, device=device, dtype=dtype)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.no_grad(), sdpa_context(backend):
        encoder(x)
        _sync(device)
        with profile(activities=activities) as prof:
            encoder(x)
            _sync(device)
    if device.type == "cuda":  # the kernels themselves: the ops that launch them carry the same time
        from torch.autograd import DeviceType

        averages = [e for e in prof.key_averages() if e.device_type == DeviceType.CUDA]
        attr = "self_device_time_total"
    else:
        averages, attr = prof.key_averages(), "self_cpu_time_total"
    events = [(e.key, getattr(e, attr, 0.0) / 1000 / batch) for e in averages]  # ms/image
    events = sorted((e for e in events if e[1] > 0), key=lambda e: -e[1])
    if device.type != "cuda":  # CPU self times include the Python-level ops; keep aten kernels
        events = [e for e in events if e[0].startswith("aten::") or "triton" in e[0] or "cpp_fused" in e[0]]
    kinds: dict[str, float] = {}
    for name, ms in events:
        kind = next((k for k, pattern in KERNEL_KINDS if pattern.search(name)), "other")
        kinds[kind] = kinds.get(kind, 0.0) + ms
    total = sum(kinds.values())
    lines = [f"  profile: {total:.2f} ms/image in kernels; "
             + ", ".join(f"{k} {v:.2f} ms ({100 * v / total:.0f}%)" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))]
    lines += [f"    {ms:7.3f} ms/image  {name[:110]}" for name, ms in events[:top]]
    return lines


def run(argv=None) -> list[str]:
    """Time every variant; returns the printed result lines."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-size", choices=sorted(SHAPES), default="vit_h")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    p.add_argument("--attn", choices=ATTN_CHOICES, nargs="+", default=["sdpa"],
                   help="vision attention implementations, each timed on the same weights (switches: "
                   "bench_labeling.ATTN_CHOICES); sdpa+padded: windowed layers project the zero-padded grid "
                   "as transformers does; triton+sdpa-windows: windowed layers on SDPA; +gelu: lin1 + GELU "
                   "as one cuBLASLt matmul")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[8])
    p.add_argument("--modes", nargs="+", default=["default"],
                   help="torch.compile modes; 'eager' = not compiled")
    p.add_argument("--backends", choices=BACKENDS, nargs="+", default=["auto"], help="SDPA backend")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--budget-s", type=float, default=600.0)
    p.add_argument("--peak-tflops", type=float, default=None, help="default: 989 on H100/H200")
    p.add_argument("--profile", action="store_true",
                   help="after timing each variant, profile one call: time by kernel kind and the top kernels")
    args = p.parse_args(argv)

    from samrs_hf.sam.attention import install_attention
    from samrs_hf.sam.loading import sam_model_from_checkpoint

    start = time.perf_counter()
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    peak = chip_peak_tflops(device, args.peak_tflops)
    model = sam_model_from_checkpoint(build_reference_sam(args.model_size).state_dict(), "sdpa")
    flops = encoder_flops(model.config.vision_config)
    encoder = model.vision_encoder.to(device=device, dtype=dtype).eval()
    report = Report()

    report(f"torch {torch.__version__}, {device}, {args.model_size} encoder {args.dtype}, "
           f"{flops / 1e9:.0f} GFLOP/image (model FLOPs)")
    variants = [(a, m, be, b) for a in args.attn for m in args.modes for be in args.backends
                for b in args.batch_sizes]
    for attn, mode, backend, batch in variants:
        install_attention(model, benchmark_options(attn))  # the encoder's layers, rebuilt for the choice
        name = f"attention {attn}, mode {mode}, SDPA backend {backend}, batch {batch}"
        elapsed = time.perf_counter() - start
        if elapsed > args.budget_s:
            report(f"{name}: SKIPPED ({elapsed:.0f}s elapsed)")
            continue
        torch._dynamo.reset()
        t = time.perf_counter()
        try:
            fn = encoder if mode == "eager" else torch.compile(
                encoder, mode=None if mode == "default" else mode)
            sec = time_encoder(fn, batch, dtype, device, backend, args.reps)
        except Exception as exc:  # noqa: BLE001 - report and try the next variant
            report.error(name, exc)
            continue
        tflops = flops / sec / 1e12
        mfu = f", MFU {100 * tflops / peak:.1f}% of {peak:.0f}" if peak else ""
        report(f"{name}: {sec * 1000:.2f} ms/image, {tflops:.1f} TFLOP/s{mfu} "
               f"(with warm-up/compile {time.perf_counter() - t:.0f}s)")
        if args.profile:
            try:
                for line in profile_encoder(fn, batch, dtype, device, backend):
                    report(line)
            except Exception as exc:  # noqa: BLE001 - the timing above stands
                report.error("  profile", exc, 200)
    return report


if __name__ == "__main__":
    run()
