"""Compile the ``--attn triton`` kernel ahead of time for a CUDA target (no GPU needed: triton's own
ptxas) and print, per tuning config, whether it uses Hopper's wgmma, its shared memory, registers and
spills. A spilling config is slow on any GPU; this is how the tuning configs were chosen.

    python benchmarks/relpos_kernel_resources.py [--window] [--head-dim 80] [--dtype bfloat16] [--capability 90]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DTYPES = {"bfloat16": (torch.bfloat16, "bf16"), "float16": (torch.float16, "fp16"), "float32": (torch.float32, "fp32")}


def sam_arguments(dtype: torch.dtype, window: int, head_dim: int = 80, heads: int = 16, batch: int = 8):
    """``relpos_flash.kernel_arguments`` for SAM's vit_h-like tensors (meta device): views of a fused
    qkv on the 64x64 grid, rel_h key-row-major, exactly as ``SamVisionTritonAttention`` passes them."""
    from samrs_hf.sam.relpos_flash import kernel_arguments

    grid = 64
    rows = window or grid
    qkv = torch.empty(batch, grid, grid, 3, heads, head_dim, device="meta", dtype=dtype)
    query, key, value = qkv.unbind(3)
    key_bias, value_bias = torch.empty(2, heads, head_dim, device="meta", dtype=dtype).unbind(0)
    rel_h = torch.empty(batch, heads, rows, grid * grid, device="meta", dtype=dtype).transpose(-1, -2)
    rel_w = torch.empty(batch, heads, grid * grid, rows, device="meta", dtype=dtype)
    out = torch.empty(query.shape, device="meta", dtype=dtype)
    return kernel_arguments(query, key, value, key_bias.contiguous(), value_bias.contiguous(), rel_h, rel_w, out,
                            head_dim ** -0.5, window)


def compile_kernel(dtype: torch.dtype, block_m: int, rows: int, warps: int, stages: int, window: int = 0,
                   head_dim: int = 80, capability: int = 90):
    """triton.compile for ``cuda:sm_<capability>`` with the signature the JIT specialises at run time
    for SAM's tensors: 16-byte aligned pointers, integers that are 1 folded in, integers divisible by
    16 marked so (without that, triton neither vectorises nor pipelines the loads)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from samrs_hf.sam.relpos_flash import _relpos_attention_fwd

    args, constants, _ = sam_arguments(dtype, window, head_dim)
    names = _relpos_attention_fwd.arg_names
    pointer = "*" + DTYPES[next(k for k, v in DTYPES.items() if v[0] == dtype)][1]
    signature, constexprs, attrs = {}, {**constants, "BLOCK_M": block_m, "ROWS": rows}, {}
    for i, (name, value) in enumerate(zip(names, args)):
        if isinstance(value, torch.Tensor):
            signature[name] = pointer
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif isinstance(value, float):
            signature[name] = "fp32"
        elif value == 1:
            signature[name] = "constexpr"
            constexprs[name] = 1
        else:
            signature[name] = "i32"
            if value % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
    for name in constants.keys() | {"BLOCK_M", "ROWS"}:
        signature[name] = "constexpr"
    src = ASTSource(fn=_relpos_attention_fwd, signature=signature,
                    constexprs={(names.index(k),): v for k, v in constexprs.items()}, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", capability, 32),
                          options={"num_warps": warps, "num_stages": stages})


def ptxas_report(kernel, capability: int) -> str:
    """Registers and spills from ``ptxas -v``, with the ptxas triton itself uses for that target."""
    import triton

    bins = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    names = ("ptxas-blackwell", "ptxas") if capability >= 90 else ("ptxas",)
    ptxas = next((bins / n for n in names if (bins / n).exists()), None)
    if ptxas is None:
        return "no ptxas in the triton wheel"
    with tempfile.TemporaryDirectory() as tmp:
        ptx = os.path.join(tmp, "k.ptx")
        Path(ptx).write_text(kernel.asm["ptx"])
        arch = f"sm_{capability}a" if capability >= 90 else f"sm_{capability}"
        out = subprocess.run([str(ptxas), "-v", f"--gpu-name={arch}", ptx, "-o", ptx + ".cubin"],
                             capture_output=True, text=True, check=False)
    text = out.stdout + out.stderr
    regs = re.search(r"Used (\d+) registers", text)
    spill = re.search(r"(\d+) bytes spill stores", text)
    serial = " wgmma SERIALISED" if "C7515" in text else ""
    if not regs:
        return text.strip()[-300:]
    return f"{regs.group(1)} registers, {spill.group(1) if spill else '?'} bytes spilled{serial}"


def main(argv=None) -> int:
    from samrs_hf.sam.relpos_flash import tuning_configs

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--head-dim", type=int, default=80, help="vit_h 80, vit_b/vit_l 64")
    p.add_argument("--window", action="store_true", help="SAM's windowed layers: 14x14 windows on the padded grid")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    p.add_argument("--capability", type=int, default=90, help="90 = H100/H200, 80 = A100")
    args = p.parse_args(argv)
    dtype = DTYPES[args.dtype][0]
    window = 14 if args.window else 0
    for block_m, rows, warps, stages in tuning_configs(dtype, window):
        k = compile_kernel(dtype, block_m, rows, warps, stages, window, args.head_dim, args.capability)
        mma = "wgmma" if "wgmma" in k.asm["ptx"] else "mma" if "mma.sync" in k.asm["ptx"] else "no MMA"
        print(f"BLOCK_M {block_m}, {rows} key rows, {warps} warps, {stages} stages: {mma}, shared {k.metadata.shared} B, "
              f"{ptxas_report(k, args.capability)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
