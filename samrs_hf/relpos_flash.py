"""Flash attention with SAM's decomposed relative-position bias, as one Triton kernel.

SAM's global vision layers add ``rel_h[q, k // W] + rel_w[q, k % W]`` to every score. transformers
materialises that sum as a (B, heads, N, N) float mask for SDPA (vit_h: 4096 tokens, 512 MiB per
image and layer in bf16), which also keeps SDPA off its flash kernels; FlexAttention avoids the mask
but gathers both tables for every score. Here a key block is exactly one row of the key grid (W
keys, padded to a power of two), so its bias is one ``rel_h`` column broadcast over the block plus a
``rel_w`` tile that is the same for every block: loaded once per query block, one add per score.

``relpos_attention`` is a ``torch.library`` custom op, opaque to ``torch.compile``: CUDA runs the
kernel; CPU runs the same math through SDPA with the materialised bias (the reference), or, when the
process started with ``TRITON_INTERPRET=1`` (Triton's debug mode, read when triton is imported), the
kernel itself in Triton's interpreter: that is how the tests check the kernel without a GPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the op's CPU path needs no triton
    triton = None

LOG2E = 1.4426950408889634


def kernel_supports(head_dim: int, width: int) -> bool:
    """Shapes the kernel takes (others run the reference): a key-grid row (= key block) of at most 128;
    a head dim up to 128 that is a power of two >= 16, or one plus a smaller power of two >= 16 (vit_h:
    80 = 64 + 16), since Triton's tensor-core blocks are powers of two of at least 16."""

    def pow2(n):
        return n >= 16 and n & (n - 1) == 0

    main = 1 << (head_dim.bit_length() - 1)
    tail = head_dim - main
    return 1 <= width <= 128 and head_dim <= 128 and pow2(main) and (tail == 0 or pow2(tail))


def require_triton() -> None:
    if triton is None:
        raise ImportError("attention 'triton' on CUDA needs the triton package (it ships with CUDA builds "
                          "of torch): pip install triton, or use --attn sdpa")


if triton is not None:

    @triton.jit
    def _relpos_attention_fwd(
        Q, K, V, RH, RW, O, qk_scale,
        s_qb, s_qh, s_qn, s_kb, s_kh, s_kn, s_vb, s_vh, s_vn,
        s_rhb, s_rhh, s_rhn, s_rhk, s_rwb, s_rwh, s_rwn, s_ob, s_oh, s_on,
        heads, n_ctx, key_rows,
        BLOCK_M: tl.constexpr, W: tl.constexpr, WB: tl.constexpr, D0: tl.constexpr, D1: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        """One (BLOCK_M queries, batch x head) tile; loops over the key grid's rows (W keys each, in a
        block of WB >= W: the power of two Triton needs; SAM's global rows are exactly 64)."""
        pid_m = tl.program_id(0)
        pid_bh = tl.program_id(1)
        b = (pid_bh // heads).to(tl.int64)  # offsets past 2**31 elements at large batches
        h = (pid_bh % heads).to(tl.int64)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        in_m = offs_m < n_ctx
        offs_w = tl.arange(0, WB)
        in_w = offs_w < W
        offs_d0 = tl.arange(0, D0)

        q_rows = Q + b * s_qb + h * s_qh + offs_m[:, None] * s_qn
        q0 = tl.load(q_rows + offs_d0[None, :], mask=in_m[:, None], other=0.0)
        rw_ptr = RW + b * s_rwb + h * s_rwh + offs_m[:, None] * s_rwn + offs_w[None, :]
        rel_w = tl.load(rw_ptr, mask=in_m[:, None] & in_w[None, :], other=0.0).to(tl.float32) * 1.4426950408889634
        rh_ptr = RH + b * s_rhb + h * s_rhh + offs_m * s_rhn
        k_base = K + b * s_kb + h * s_kh
        v_base = V + b * s_vb + h * s_vh

        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc0 = tl.zeros([BLOCK_M, D0], tl.float32)
        if D1 > 0:
            offs_d1 = D0 + tl.arange(0, D1)
            q1 = tl.load(q_rows + offs_d1[None, :], mask=in_m[:, None], other=0.0)
            acc1 = tl.zeros([BLOCK_M, D1], tl.float32)

        for row in range(key_rows):
            keys = row * W + offs_w
            k0 = tl.load(k_base + keys[None, :] * s_kn + offs_d0[:, None], mask=in_w[None, :], other=0.0)
            scores = tl.dot(q0, k0, input_precision=PRECISION)  # (BLOCK_M, WB)
            if D1 > 0:
                k1 = tl.load(k_base + keys[None, :] * s_kn + offs_d1[:, None], mask=in_w[None, :], other=0.0)
                scores += tl.dot(q1, k1, input_precision=PRECISION)
            rel_h = tl.load(rh_ptr + row * s_rhk, mask=in_m, other=0.0).to(tl.float32) * 1.4426950408889634
            scores = scores * qk_scale + rel_h[:, None] + rel_w  # log2 domain
            if WB != W:
                scores = tl.where(in_w[None, :], scores, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(scores, 1))
            p = tl.exp2(scores - m_new[:, None])
            alpha = tl.exp2(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            v0 = tl.load(v_base + keys[:, None] * s_vn + offs_d0[None, :], mask=in_w[:, None], other=0.0)
            acc0 = acc0 * alpha[:, None] + tl.dot(p.to(v0.dtype), v0, input_precision=PRECISION)
            if D1 > 0:
                v1 = tl.load(v_base + keys[:, None] * s_vn + offs_d1[None, :], mask=in_w[:, None], other=0.0)
                acc1 = acc1 * alpha[:, None] + tl.dot(p.to(v1.dtype), v1, input_precision=PRECISION)
            m_i = m_new

        o_rows = O + b * s_ob + h * s_oh + offs_m[:, None] * s_on
        tl.store(o_rows + offs_d0[None, :], (acc0 / l_i[:, None]).to(O.dtype.element_ty), mask=in_m[:, None])
        if D1 > 0:
            tl.store(o_rows + offs_d1[None, :], (acc1 / l_i[:, None]).to(O.dtype.element_ty),
                     mask=in_m[:, None])


def interpreting() -> bool:
    """Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1 when triton was imported)."""
    return triton is not None and not isinstance(_relpos_attention_fwd, triton.runtime.JITFunction)


# (BLOCK_M, num_warps, num_stages) tried on the first call per shape. For vit_h's heads (bf16, sm_90)
# each compiles to wgmma with 168-175 registers and no spills (benchmarks/relpos_kernel_resources.py);
# 128 queries on 4 warps spilled and serialised its wgmma, so it is not tried.
TUNING_CONFIGS = ((64, 4, 2), (64, 4, 3), (64, 4, 4), (128, 8, 2), (128, 8, 3))

_tuned_kernel = None


def _kernel_and_grid(n_ctx: int, batch_heads: int):
    """The autotuned kernel on CUDA; the plain one in the interpreter (numpy: big blocks are cheap)."""
    global _tuned_kernel
    if interpreting():
        return _relpos_attention_fwd, (triton.cdiv(n_ctx, 128), batch_heads), dict(BLOCK_M=128)
    if _tuned_kernel is None:
        configs = [triton.Config({"BLOCK_M": m}, num_warps=w, num_stages=st) for m, w, st in TUNING_CONFIGS]
        _tuned_kernel = triton.autotune(configs, key=["n_ctx", "W", "D0", "D1"])(_relpos_attention_fwd)
    return _tuned_kernel, lambda meta: (triton.cdiv(n_ctx, meta["BLOCK_M"]), batch_heads), {}


def triton_relpos_attention(query, key, value, rel_h, rel_w, scale: float):
    """softmax(scale * q k^T + rel_h[:, :, :, k // W] + rel_w[:, :, :, k % W]) v, as (B, N, heads, D).

    query/key/value: (B, heads, N, D) with unit stride along D (views of a fused qkv are fine);
    rel_h: (B, heads, N, N // W), any strides (fastest with unit stride along N: the kernel reads one
    key row's column per step); rel_w: (B, heads, N, W). Queries and keys share the (N // W, W) grid.
    """
    require_triton()
    batch, heads, n_ctx, head_dim = query.shape
    width = rel_w.shape[-1]
    if not kernel_supports(head_dim, width) or n_ctx % width or rel_h.shape[-1] * width != n_ctx:
        raise ValueError(f"relpos kernel: unsupported shapes head_dim {head_dim}, {n_ctx} tokens, "
                         f"key grid {rel_h.shape[-1]}x{width}")
    query, key, value, rel_w = (t if t.stride(-1) == 1 else t.contiguous() for t in (query, key, value, rel_w))
    out = query.new_empty(batch, n_ctx, heads, head_dim)
    d0 = 1 << (head_dim.bit_length() - 1)
    kernel, grid, launch = _kernel_and_grid(n_ctx, batch * heads)
    precision = "ieee" if query.dtype == torch.float32 else None  # float32 stays exact (no tf32)
    kernel[grid](
        query, key, value, rel_h, rel_w, out, scale * LOG2E,
        query.stride(0), query.stride(1), query.stride(2), key.stride(0), key.stride(1), key.stride(2),
        value.stride(0), value.stride(1), value.stride(2),
        rel_h.stride(0), rel_h.stride(1), rel_h.stride(2), rel_h.stride(3),
        rel_w.stride(0), rel_w.stride(1), rel_w.stride(2),
        out.stride(0), out.stride(2), out.stride(1),
        heads, n_ctx, n_ctx // width,
        W=width, WB=max(16, triton.next_power_of_2(width)), D0=d0, D1=head_dim - d0, PRECISION=precision,
        **launch,
    )
    return out


def reference_relpos_attention(query, key, value, rel_h, rel_w, scale: float):
    """What transformers' SDPA attention computes, materialised bias and all, as (B, N, heads, D)."""
    batch, heads, n_ctx, _ = query.shape
    bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(batch, heads, n_ctx, n_ctx)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias.to(query.dtype), scale=scale)
    return out.transpose(1, 2).contiguous()


@torch.library.custom_op("samrs::relpos_attention", mutates_args=())
def relpos_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, rel_h: torch.Tensor,
                     rel_w: torch.Tensor, scale: float) -> torch.Tensor:
    """SAM global attention with the decomposed rel-pos bias, (B, heads, N, D) in, (B, N, heads, D) out.
    The kernel needs an Ampere or newer GPU (bf16 tensor cores); elsewhere the reference runs."""
    if kernel_supports(query.shape[-1], rel_w.shape[-1]) and (
            interpreting() or (query.is_cuda and torch.cuda.get_device_capability(query.device) >= (8, 0))):
        return triton_relpos_attention(query, key, value, rel_h, rel_w, scale)
    return reference_relpos_attention(query, key, value, rel_h, rel_w, scale)


@relpos_attention.register_fake
def _(query, key, value, rel_h, rel_w, scale):
    batch, heads, n_ctx, head_dim = query.shape
    return query.new_empty(batch, n_ctx, heads, head_dim)
