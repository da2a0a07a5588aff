"""Compile the ``--attn triton`` kernel ahead of time for a CUDA target (no GPU needed: triton's own
ptxas) and print, per tuning config, whether it uses Hopper's wgmma, its shared memory, registers and
spills. A spilling config is slow on any GPU; this is how the tuning configs were chosen.

    python benchmarks/relpos_kernel_resources.py [--head-dim 80] [--dtype bf16] [--capability 90]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONSTEXPRS = ("BLOCK_M", "W", "WB", "D0", "D1", "PADDED", "PRECISION")
POINTERS = ("Q", "K", "V", "KB", "VB", "RH", "RW", "O")


def compile_kernel(dtype: str, block_m: int, warps: int, stages: int, head_dim: int = 80, width: int = 64,
                   capability: int = 90, padded: bool = False):
    """triton.compile for ``cuda:sm_<capability>``, with the 16-divisible pointers and strides (and the
    unit rel_h stride) SAM's shapes give the JIT at run time: without them triton neither vectorises
    nor pipelines the loads."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from samrs_hf.relpos_flash import _relpos_attention_fwd

    names = _relpos_attention_fwd.arg_names
    sig = {n: "constexpr" if n in CONSTEXPRS or n == "s_rhn" else "*" + dtype if n in POINTERS else "fp32" if n == "qk_scale"
           else "i32" for n in names}
    d0 = 1 << (head_dim.bit_length() - 1)
    # s_rhn = 1: --attn triton lays rel_h out key-row-major, and the JIT specialises a stride of 1
    values = dict(s_rhn=1, BLOCK_M=block_m, W=width, WB=max(16, triton.next_power_of_2(width)), D0=d0, D1=head_dim - d0,
                  PADDED=padded, PRECISION="ieee" if dtype == "fp32" else None)
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names) if sig[n] not in ("constexpr", "fp32")}
    src = ASTSource(fn=_relpos_attention_fwd, signature=sig,
                    constexprs={(names.index(k),): v for k, v in values.items()}, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", capability, 32),
                          options={"num_warps": warps, "num_stages": stages})


def ptxas_report(kernel, capability: int) -> str:
    """Registers and spills from ptxas -v (the PTX version triton emits needs its newest ptxas)."""
    import triton

    bins = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    ptxas = next((p for p in (bins / "ptxas-blackwell", bins / "ptxas") if p.exists()), None)
    if ptxas is None:
        return "no ptxas in the triton wheel"
    with tempfile.TemporaryDirectory() as tmp:
        ptx = os.path.join(tmp, "k.ptx")
        Path(ptx).write_text(kernel.asm["ptx"])
        arch = f"sm_{capability}a" if capability >= 90 else f"sm_{capability}"
        out = subprocess.run([str(ptxas), "-v", f"--gpu-name={arch}", ptx, "-o", ptx + ".cubin"],
                             capture_output=True, text=True)
    text = out.stdout + out.stderr
    regs = re.search(r"Used (\d+) registers", text)
    spill = re.search(r"(\d+) bytes spill stores", text)
    serial = " wgmma SERIALISED" if "C7515" in text else ""
    if not regs:
        return text.strip()[-300:]
    return f"{regs.group(1)} registers, {spill.group(1) if spill else '?'} bytes spilled{serial}"


def main(argv=None) -> int:
    from samrs_hf.relpos_flash import TUNING_CONFIGS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--head-dim", type=int, default=80, help="vit_h 80, vit_b/vit_l 64")
    p.add_argument("--window", action="store_true", help="SAM's windowed layers: 14x14 windows on a padded grid")
    p.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    p.add_argument("--capability", type=int, default=90, help="90 = H100/H200, 80 = A100")
    args = p.parse_args(argv)
    for block_m, warps, stages in TUNING_CONFIGS:
        k = compile_kernel(args.dtype, block_m, warps, stages, args.head_dim, 14 if args.window else 64,
                           args.capability, padded=args.window)
        mma = "wgmma" if "wgmma" in k.asm["ptx"] else "mma"
        print(f"BLOCK_M {block_m}, {warps} warps, {stages} stages: {mma}, shared {k.metadata.shared} B, "
              f"{ptxas_report(k, args.capability)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
