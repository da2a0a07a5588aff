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


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samrs_hf.sam.relpos_compile import DTYPES, compile_kernel  # noqa: E402


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
