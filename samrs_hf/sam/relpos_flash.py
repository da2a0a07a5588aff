"""Flash attention with SAM's decomposed relative-position bias, as one Triton kernel.

SAM's global vision layers add ``rel_h[q, k // W] + rel_w[q, k % W]`` to every score. transformers
materialises that sum as a (B, heads, N, N) float mask for SDPA (vit_h: 4096 tokens, 512 MiB per
image and layer in bf16), which also keeps SDPA off its flash kernels; FlexAttention avoids the mask
but gathers both tables for every score. Here a key block is exactly one row of the key grid (W
keys, padded to a power of two), so its bias is one ``rel_h`` column broadcast over the block plus a
``rel_w`` tile that is the same for every block: loaded once per query block, one add per score.
The same kernel runs SAM's windowed layers on the unpadded token grid: it walks the 14x14 windows
itself, uses the qkv bias as the keys and values of the tokens SAM pads the grid with (what a zero
input projects to) and drops their queries, so no padded qkv/proj rows and no partition copies.

``relpos_attention`` is a ``torch.library`` custom op, opaque to ``torch.compile``: CUDA runs the
kernel; CPU runs the same math through SDPA with the materialised bias (the reference), or, when the
process started with ``TRITON_INTERPRET=1`` (Triton's debug mode, read when triton is imported), the
kernel itself in Triton's interpreter: that is how the tests check the kernel without a GPU.
"""

from __future__ import annotations

import contextlib

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
        Q, K, V, KB, VB, RH, RW, O, qk_scale,
        s_qb, s_qy, s_qx, s_qh, s_kb, s_ky, s_kx, s_kh, s_vb, s_vy, s_vx, s_vh,
        s_rhb, s_rhh, s_rhn, s_rhk, s_rwb, s_rwh, s_rwn, s_ob, s_oy, s_ox, s_oh,
        heads, img_h, img_w, windows, windows_x, key_rows,
        BLOCK_M: tl.constexpr, ROWS: tl.constexpr, W: tl.constexpr, WB: tl.constexpr, D0: tl.constexpr,
        D1: tl.constexpr, PADDED: tl.constexpr, PRECISION: tl.constexpr,
    ):
        """One (BLOCK_M queries of one window, batch x window x head) tile; loops over the window's key
        rows, ROWS at a time (W keys each, in WB >= W slots: the power of two Triton needs). Tokens are addressed
        on the image's (img_h, img_w) grid; with PADDED, window positions past its edge are SAM's
        zero-padded tokens, whose keys and values are the qkv bias (KB, VB) and whose outputs are dropped."""
        pid_z = tl.program_id(0)  # axis 0: up to 2**31 - 1 programs (axis 1 stops at 65535)
        pid_m = tl.program_id(1)
        h = (pid_z % heads).to(tl.int64)  # 64-bit offsets: batches past 2**31 elements
        win = (pid_z // heads) % windows
        b = (pid_z // heads // windows).to(tl.int64)
        y0 = (win // windows_x) * key_rows
        x0 = (win % windows_x) * W

        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        qy = y0 + offs_m // W
        qx = x0 + offs_m % W
        in_m = (offs_m < key_rows * W) & (qy < img_h) & (qx < img_w)
        offs_n = tl.arange(0, ROWS * WB)
        sub = offs_n // WB  # key row inside the block
        in_w = offs_n % WB < W
        kx = x0 + offs_n % WB
        offs_d0 = tl.arange(0, D0)

        q_rows = Q + b * s_qb + h * s_qh + qy[:, None] * s_qy + qx[:, None] * s_qx
        q0 = tl.load(q_rows + offs_d0[None, :], mask=in_m[:, None], other=0.0)
        token = qy * img_w + qx  # rows of the rel-pos tables
        rw_ptr = RW + b * s_rwb + h * s_rwh + token[:, None] * s_rwn + (offs_n % WB)[None, :]
        rel_w = tl.load(rw_ptr, mask=in_m[:, None] & in_w[None, :], other=0.0).to(tl.float32) * 1.4426950408889634
        rh_ptr = RH + b * s_rhb + h * s_rhh + token * s_rhn
        k_base = K + b * s_kb + h * s_kh
        v_base = V + b * s_vb + h * s_vh
        if PADDED:  # a padded key's score q.kb is one number per query; its value vb adds to the output
            vb0 = tl.load(VB + h * (D0 + D1) + offs_d0).to(tl.float32)
            pad_score = tl.sum(q0.to(tl.float32) * tl.load(KB + h * (D0 + D1) + offs_d0).to(tl.float32)[None, :], 1)
            pad_p = tl.zeros([BLOCK_M], tl.float32)  # softmax weight the padded keys got so far

        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc0 = tl.zeros([BLOCK_M, D0], tl.float32)
        if D1 > 0:
            offs_d1 = D0 + tl.arange(0, D1)
            q1 = tl.load(q_rows + offs_d1[None, :], mask=in_m[:, None], other=0.0)
            acc1 = tl.zeros([BLOCK_M, D1], tl.float32)
            if PADDED:
                vb1 = tl.load(VB + h * (D0 + D1) + offs_d1).to(tl.float32)
                pad_score += tl.sum(q1.to(tl.float32) * tl.load(KB + h * (D0 + D1) + offs_d1).to(tl.float32)[None, :], 1)

        for row0 in range(0, key_rows, ROWS):
            krow = row0 + sub
            ky = y0 + krow
            if ROWS == 1:
                in_k = in_w  # a key of this window: all true for SAM's global rows (W == WB), folded away
            else:
                in_k = in_w & (krow < key_rows)  # else a slot past W or past the last row
            if PADDED:
                k_ok = in_k & (kx < img_w) & (ky < img_h)  # a real token, else SAM's padding
            else:
                k_ok = in_k
            k_cols = k_base + ky * s_ky + kx * s_kx
            v_rows = v_base + ky * s_vy + kx * s_vx
            k0 = tl.load(k_cols[None, :] + offs_d0[:, None], mask=k_ok[None, :], other=0.0)  # (D0, WB)
            scores = tl.dot(q0, k0, input_precision=PRECISION)  # (BLOCK_M, WB)
            if D1 > 0:
                k1 = tl.load(k_cols[None, :] + offs_d1[:, None], mask=k_ok[None, :], other=0.0)
                scores += tl.dot(q1, k1, input_precision=PRECISION)
            if PADDED:
                scores = tl.where(k_ok[None, :], scores, pad_score[:, None])
            if ROWS == 1:
                rel_h = tl.load(rh_ptr + row0 * s_rhk, mask=in_m, other=0.0).to(tl.float32)[:, None]
                rel_h = rel_h * 1.4426950408889634
            else:  # each key row's rel_h column, spread over that row's slots
                rel_h = tl.zeros([BLOCK_M, ROWS * WB], tl.float32)
                for r in tl.static_range(ROWS):
                    in_rows = offs_m * 0 + row0 + r < key_rows  # (a block: the interpreter masks no scalars)
                    column = tl.load(rh_ptr + (row0 + r) * s_rhk, mask=in_m & in_rows, other=0.0)
                    column = column.to(tl.float32) * 1.4426950408889634
                    rel_h = tl.where(sub[None, :] == r, column[:, None], rel_h)
            scores = scores * qk_scale + rel_h + rel_w  # log2 domain
            if WB != W or ROWS > 1:
                scores = tl.where(in_k[None, :], scores, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(scores, 1))
            p = tl.exp2(scores - m_new[:, None])
            alpha = tl.exp2(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            if PADDED:  # keys past W have p == 0 already
                pad_p = pad_p * alpha + tl.sum(tl.where(k_ok[None, :], 0.0, p), 1)
            v0 = tl.load(v_rows[:, None] + offs_d0[None, :], mask=k_ok[:, None], other=0.0)  # (WB, D0)
            acc0 = acc0 * alpha[:, None] + tl.dot(p.to(v0.dtype), v0, input_precision=PRECISION)
            if D1 > 0:
                v1 = tl.load(v_rows[:, None] + offs_d1[None, :], mask=k_ok[:, None], other=0.0)
                acc1 = acc1 * alpha[:, None] + tl.dot(p.to(v1.dtype), v1, input_precision=PRECISION)
            m_i = m_new

        if PADDED:
            acc0 += pad_p[:, None] * vb0[None, :]
            if D1 > 0:
                acc1 += pad_p[:, None] * vb1[None, :]

        o_rows = O + b * s_ob + h * s_oh + qy[:, None] * s_oy + qx[:, None] * s_ox
        tl.store(o_rows + offs_d0[None, :], (acc0 / l_i[:, None]).to(O.dtype.element_ty), mask=in_m[:, None])
        if D1 > 0:
            tl.store(o_rows + offs_d1[None, :], (acc1 / l_i[:, None]).to(O.dtype.element_ty),
                     mask=in_m[:, None])


def interpreting() -> bool:
    """Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1 when triton was imported)."""
    return triton is not None and not isinstance(_relpos_attention_fwd, triton.runtime.JITFunction)


# (BLOCK_M, key rows per block, num_warps, num_stages) tried on the first call per shape. For vit_h's
# heads (bf16, sm_90) they compile to wgmma without spills, except 64 queries x 2 global rows (16 bytes;
# kept for the windowed layers, where 2 rows of 16 slots fill a block better): benchmarks/
# relpos_kernel_resources.py. 128 queries on 4 warps spilled and serialised its wgmma, so it is not
# tried. float32 (exact "ieee" dots: plain FMAs, the parity checks' dtype) spills with these, so it
# gets smaller tiles per warp.
TUNING_CONFIGS = ((64, 1, 4, 2), (64, 1, 4, 3), (64, 1, 4, 4), (128, 1, 8, 2), (128, 1, 8, 3),
                  (64, 2, 4, 2), (128, 2, 8, 2))  # (BLOCK_M, ROWS, num_warps, num_stages)
WINDOW_CONFIGS = TUNING_CONFIGS + ((64, 4, 4, 2), (64, 4, 4, 3), (128, 4, 8, 2), (64, 8, 8, 2))
"""Windowed layers' candidates: a 14-key row is one MMA 16 wide, so one row a block spends the loop on
softmax rescales of 16-column tiles (a third of the global layers' TFLOP/s: benchmarks/README.md); 4 or 8
rows (64 or 128 slots) a block widen them. These compile to wgmma without spills for vit_h's windows;
for the global layers (64-key rows: 256-key blocks) they spill over 500 bytes."""
FLOAT32_CONFIGS = ((32, 1, 8, 2), (16, 1, 4, 2), (32, 1, 8, 3))
INTERPRETER_ROWS = 2
"""Key rows per block in Triton's interpreter (the tests run 1, 2, 4 and 8)."""

_tuned_kernels: dict = {}


def tuning_configs(dtype: torch.dtype, window: int) -> tuple:
    """The (BLOCK_M, ROWS, num_warps, num_stages) candidates the autotuner times for this call."""
    if dtype == torch.float32:
        return FLOAT32_CONFIGS
    return WINDOW_CONFIGS if window else TUNING_CONFIGS


def _kernel_and_grid(window_tokens: int, programs: int, dtype: torch.dtype, window: int):
    """The autotuned kernel on CUDA; the plain one in the interpreter (numpy: big blocks are cheap)."""
    if interpreting():
        return (_relpos_attention_fwd, (programs, triton.cdiv(window_tokens, 128)),
                {"BLOCK_M": 128, "ROWS": INTERPRETER_ROWS})
    table = tuning_configs(dtype, window)
    if table not in _tuned_kernels:
        configs = [triton.Config({"BLOCK_M": m, "ROWS": r}, num_warps=w, num_stages=st) for m, r, w, st in table]
        _tuned_kernels[table] = triton.autotune(configs, key=["key_rows", "W", "D0", "D1", "PADDED"])(
            _relpos_attention_fwd)
    return _tuned_kernels[table], lambda meta: (programs, triton.cdiv(window_tokens, meta["BLOCK_M"])), {}


def window_shape(height: int, width: int, window: int) -> tuple[int, int]:
    """(key rows, keys per row) of one attention: the whole grid (``window`` 0) or a window."""
    return (height, width) if window == 0 else (window, window)


def kernel_arguments(query, key, value, key_bias, value_bias, rel_h, rel_w, out, scale: float, window: int):
    """(positional arguments, compile-time constants, (programs, tokens per window)) of the kernel for
    these tensors: the launch below, and what benchmarks/relpos_kernel_resources.py compiles."""
    batch, height, width, heads, head_dim = query.shape
    rows, cols = window_shape(height, width, window)
    windows_y, windows_x = -(-height // rows), -(-width // cols)
    d0 = 1 << (head_dim.bit_length() - 1)
    args = (query, key, value, key_bias, value_bias, rel_h, rel_w, out, scale * LOG2E,
            *query.stride()[:4], *key.stride()[:4], *value.stride()[:4], *rel_h.stride(), *rel_w.stride()[:3],
            *out.stride()[:4], heads, height, width, windows_y * windows_x, windows_x, rows)
    constants = {"W": cols, "WB": max(16, 1 << (cols - 1).bit_length()), "D0": d0, "D1": head_dim - d0,
                 "PADDED": bool(height % rows or width % cols),
                 "PRECISION": "ieee" if query.dtype == torch.float32 else None}  # float32 stays exact (no tf32)
    return args, constants, (batch * windows_y * windows_x * heads, rows * cols)


def triton_relpos_attention(query, key, value, key_bias, value_bias, rel_h, rel_w, scale: float, window: int):
    """The kernel behind :func:`relpos_attention` (same arguments, same result)."""
    require_triton()
    head_dim, cols = query.shape[-1], window_shape(query.shape[1], query.shape[2], window)[1]
    if not kernel_supports(head_dim, cols):
        raise ValueError(f"relpos kernel: unsupported head dim {head_dim} or key-row width {cols}")
    query, key, value, rel_w = (t if t.stride(-1) == 1 else t.contiguous() for t in (query, key, value, rel_w))
    key_bias, value_bias = (b.to(query.dtype).contiguous() for b in (key_bias, value_bias))  # autocast: fp32 bias
    out = query.new_empty(query.shape)
    args, constants, (programs, window_tokens) = kernel_arguments(
        query, key, value, key_bias, value_bias, rel_h, rel_w, out, scale, window)
    kernel, grid, launch = _kernel_and_grid(window_tokens, programs, query.dtype, window)
    # triton launches on the current CUDA device, not the tensors' (a model on cuda:1 in one process)
    with torch.cuda.device(query.device) if query.is_cuda else contextlib.nullcontext():
        kernel[grid](*args, **constants, **launch)
    return out


def reference_relpos_attention(query, key, value, key_bias, value_bias, rel_h, rel_w, scale: float, window: int):
    """What transformers' SAM attention computes, in its layout: pad the grid to whole windows (padded
    tokens' keys and values are the qkv bias: the zero-padded input's projection), partition, SDPA
    with the materialised bias, unpartition, crop."""
    batch, height, width, heads, head_dim = query.shape
    rows, cols = window_shape(height, width, window)
    pad_h, pad_w = -height % rows, -width % cols

    def padded(t, fill):  # (batch, height, width, ...) -> (batch, height + pad_h, width + pad_w, ...)
        if not (pad_h or pad_w):
            return t
        out = fill.to(t.dtype).expand(batch, height + pad_h, width + pad_w, *t.shape[3:]).clone()
        out[:, :height, :width] = t
        return out

    def windows(t):  # (batch, H, W, heads, c) -> (batch * windows, heads, rows * cols, c)
        grid_h, grid_w = t.shape[1] // rows, t.shape[2] // cols
        t = t.reshape(batch, grid_h, rows, grid_w, cols, heads, -1).permute(0, 1, 3, 5, 2, 4, 6)
        return t.reshape(batch * grid_h * grid_w, heads, rows * cols, -1)

    def tables(t):  # (batch, heads, height * width, k) -> windows
        t = t.reshape(batch, heads, height, width, -1).permute(0, 2, 3, 1, 4)
        return windows(padded(t, t.new_zeros(())))

    zero = query.new_zeros(())
    q, k, v = windows(padded(query, zero)), windows(padded(key, key_bias)), windows(padded(value, value_bias))
    rh, rw = tables(rel_h), tables(rel_w)
    bias = (rh[..., :, None] + rw[..., None, :]).reshape(*q.shape[:3], rows * cols)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=scale)
    grid_h, grid_w = (height + pad_h) // rows, (width + pad_w) // cols
    out = out.reshape(batch, grid_h, grid_w, heads, rows, cols, head_dim).permute(0, 1, 4, 2, 5, 3, 6)
    out = out.reshape(batch, height + pad_h, width + pad_w, heads, head_dim)
    return out[:, :height, :width].contiguous()


@torch.library.custom_op("samrs::relpos_attention", mutates_args=())
def relpos_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_bias: torch.Tensor,
                     value_bias: torch.Tensor, rel_h: torch.Tensor, rel_w: torch.Tensor, scale: float,
                     window: int) -> torch.Tensor:
    """SAM's vision attention with its decomposed rel-pos bias on a (height, width) token grid, globally
    (``window`` 0) or in ``window`` x ``window`` windows, the grid padded to whole windows as SAM pads it.

    query/key/value: (B, height, width, heads, D), unit stride along D (views of the fused qkv are
    fine); key_bias/value_bias: (heads, D), the padded tokens' keys and values; rel_h: (B, heads,
    height * width, rows) and rel_w: (B, heads, height * width, cols), each token's bias terms for
    its window's key rows and columns (fastest with rel_h key-row-major: unit stride along tokens).
    Returns (B, height, width, heads, D). The kernel needs an Ampere or newer GPU (bf16 tensor cores);
    elsewhere the reference runs.
    """
    cols = window_shape(query.shape[1], query.shape[2], window)[1]
    if kernel_supports(query.shape[-1], cols) and (
            interpreting() or (query.is_cuda and torch.cuda.get_device_capability(query.device) >= (8, 0))):
        return triton_relpos_attention(query, key, value, key_bias, value_bias, rel_h, rel_w, scale, window)
    return reference_relpos_attention(query, key, value, key_bias, value_bias, rel_h, rel_w, scale, window)


@relpos_attention.register_fake
def _(query, key, value, key_bias, value_bias, rel_h, rel_w, scale, window):
    return query.new_empty(query.shape)
