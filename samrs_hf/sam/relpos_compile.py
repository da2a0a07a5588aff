"""The ``--attn triton`` kernel compiled ahead of time for a CUDA target, on a machine without a GPU
(triton's own toolchain): how the tests check that it type-checks and uses Hopper's wgmma, and how
``benchmarks/relpos_kernel_resources.py`` reports its registers and spills per tuning config."""

from __future__ import annotations

import torch

DTYPES = {"bfloat16": (torch.bfloat16, "bf16"), "float16": (torch.float16, "fp16"), "float32": (torch.float32, "fp32")}


def sam_arguments(dtype: torch.dtype, window: int, head_dim: int = 80, heads: int = 16, batch: int = 8):
    """``relpos_flash.kernel_arguments`` for SAM's vit_h-like tensors (meta device): views of a fused
    qkv on the 64x64 grid, rel_h key-row-major, exactly as ``SamVisionTritonAttention`` passes them."""
    from .relpos_flash import kernel_arguments

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

    from .relpos_flash import _relpos_attention_fwd

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
