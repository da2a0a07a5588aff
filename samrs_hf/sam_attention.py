"""FlexAttention or our Triton kernel for SAM's global vision-attention layers.

SAM adds a decomposed relative-position bias ``rel_h[q, k // kw] + rel_w[q, k % kw]`` to every
score. transformers' SDPA attention materialises that sum as a float (B, heads, N, N) mask: for
vit_h's global layers (64x64 = 4096 tokens, 16 heads) that is 1 GiB per image in float32, written
and read once per layer. ``flex`` adds the two small tables inside a FlexAttention kernel instead
(a ``score_mod``); ``triton`` adds them inside our flash-attention kernel, one key-grid row per key
block (:mod:`samrs_hf.relpos_flash`). Either way the N x N bias never exists. Windowed layers (14x14 =
196 tokens) gain little and keep SDPA with the materialised bias, as ``SamVisionSdpaAttention`` does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.models.sam.modeling_sam import SamVisionAttention

try:
    from torch.nn.attention.flex_attention import flex_attention
except ImportError:  # torch < 2.5
    flex_attention = None

GLOBAL_MIN_TOKENS = 1024
"""Layers with at least this many tokens (SAM's global layers) use flex / the Triton kernel; fewer
(14x14 windows) keep SDPA with the materialised bias."""

TRITON_WINDOWS = False
"""``triton`` attention: also run the windowed layers (25 windows of 14x14 per image, rows padded to
16 keys) through the kernel. Off until a GPU measurement shows it beats SDPA there
(``benchmarks/bench_relpos_attention.py --window``)."""

FLEX_INLINE = True
"""Under an outer torch.compile on CUDA, trace flex into the same graph (False: call a separately
compiled flex across a graph break, the layout every torch with flex supports)."""

_compiled_flex = None


def require_flex_attention() -> None:
    if flex_attention is None:
        raise ImportError(f"attention 'flex' needs torch.nn.attention.flex_attention (torch >= 2.5); "
                          f"this torch is {torch.__version__}: use 'sdpa'")


@torch.compiler.disable
def _flex_outside_graph(query, key, value, score_mod, scale):
    """CPU: inductor's CPU flex template cannot take bias tables computed in the same graph
    (torch 2.13 LoweringException), so there flex runs eagerly (math reference). CUDA: uncompiled
    flex would materialise the scores, so it is compiled once on its own."""
    global _compiled_flex
    if not query.is_cuda:
        return flex_attention(query, key, value, score_mod=score_mod, scale=scale)
    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention)
    return _compiled_flex(query, key, value, score_mod=score_mod, scale=scale)


def _flex(query, key, value, score_mod, scale):
    if query.is_cuda and FLEX_INLINE and torch.compiler.is_compiling():
        return flex_attention(query, key, value, score_mod=score_mod, scale=scale)
    return _flex_outside_graph(query, key, value, score_mod, scale)


class _SamVisionRelPosAttention(SamVisionAttention):
    """SamVisionSdpaAttention's math; the rel-pos bias of large (global) layers goes to
    ``_fused_attention`` as the two tables instead of an N x N mask."""

    def forward(self, hidden_states: torch.Tensor, output_attentions=False):
        batch, height, width, _ = hidden_states.shape
        heads, tokens = self.num_attention_heads, height * width
        qkv = self.qkv(hidden_states).reshape(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.unbind(0)  # each (batch, heads, tokens, head_dim)

        if not self.use_rel_pos:
            out = F.scaled_dot_product_attention(query, key, value, scale=self.scale)
        elif tokens < GLOBAL_MIN_TOKENS and not self._fuse_small_layers():
            flat = query.reshape(batch * heads, tokens, -1)
            bias = self.get_decomposed_rel_pos(flat, self.rel_pos_h, self.rel_pos_w, (height, width),
                                               (height, width))
            bias = bias.reshape(batch, heads, tokens, tokens)
            out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=self.scale)
        else:
            rel_h, rel_w = self._rel_pos_tables(query, height, width)
            out = self._fused_attention(query, key, value, rel_h, rel_w, width)

        out = out.reshape(batch, heads, height, width, -1).permute(0, 2, 3, 1, 4).reshape(batch, height, width, -1)
        return self.proj(out), None

    def _fuse_small_layers(self) -> bool:
        return False

    def _rel_pos_tables(self, query, height: int, width: int, rows_last: bool = True):
        """rel_h (batch, heads, tokens, height) and rel_w (batch, heads, tokens, width): the two terms of
        the bias, as ``get_decomposed_rel_pos`` computes them before it adds them into an N x N mask.
        ``rows_last=False`` lays rel_h out key-row-major (a transposed view), so that one key row's
        column over consecutive queries is contiguous."""
        batch, heads, tokens, _ = query.shape
        rel_pos_h = self.get_rel_pos(height, height, self.rel_pos_h)  # (height, kh, head_dim)
        rel_pos_w = self.get_rel_pos(width, width, self.rel_pos_w)  # (width, kw, head_dim)
        grid = query.reshape(batch, heads, height, width, -1)
        if rows_last:
            rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid, rel_pos_h).reshape(batch, heads, tokens, height)
        else:
            rel_h = torch.einsum("bnhwc,hkc->bnkhw", grid, rel_pos_h).reshape(batch, heads, height, tokens)
            rel_h = rel_h.transpose(-1, -2)
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid, rel_pos_w).reshape(batch, heads, tokens, width)
        return rel_h, rel_w

    def _fused_attention(self, query, key, value, rel_h, rel_w, width: int) -> torch.Tensor:
        """(batch, heads, tokens, head_dim) attention output, bias ``rel_h[q, k // width] + rel_w[q, k % width]``."""
        raise NotImplementedError


class SamVisionFlexAttention(_SamVisionRelPosAttention):
    """Global layers: FlexAttention with the bias tables in a ``score_mod``."""

    def _fused_attention(self, query, key, value, rel_h, rel_w, width: int) -> torch.Tensor:
        require_flex_attention()

        def rel_pos_bias(score, b, h, q_idx, kv_idx):
            return score + rel_h[b, h, q_idx, kv_idx // width] + rel_w[b, h, q_idx, kv_idx % width]

        return _flex(query, key, value, rel_pos_bias, self.scale)


class SamVisionTritonAttention(_SamVisionRelPosAttention):
    """Global layers (and windowed ones with :data:`TRITON_WINDOWS`): our Triton flash-attention kernel
    with the bias fused (:mod:`samrs_hf.relpos_flash`)."""

    def _fuse_small_layers(self) -> bool:
        return TRITON_WINDOWS

    def _rel_pos_tables(self, query, height: int, width: int, rows_last: bool = True):
        # the kernel reads one rel_h column per key row: contiguous over its block of queries
        return super()._rel_pos_tables(query, height, width, rows_last=False)

    def _fused_attention(self, query, key, value, rel_h, rel_w, width: int) -> torch.Tensor:
        from .relpos_flash import relpos_attention

        return relpos_attention(query, key, value, rel_h, rel_w, self.scale).transpose(1, 2)
