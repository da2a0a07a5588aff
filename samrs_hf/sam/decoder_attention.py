"""SAM's mask-decoder attentions (transformers' ``SamAttention`` weights) between a few prompt tokens
and the 4096 image tokens, without projecting the image tokens.

Each prompt has only T ~ 5-8 tokens, so with H heads the H*T small vectors can be carried into the
image's 256-wide input space instead of carrying the (HW x 256) image tokens into the attention's
internal space. Per head h, with weights W_q,h, W_k,h, W_v,h (d x C) and W_o,h (C x d):

* token->image (T queries q against the image tokens x, keyed as x + pe):
  scores_h = q_h ((x + pe) W_k,hᵀ + b_k,h)ᵀ = (q_h W_k,h)(x + pe)ᵀ + q_h·b_k,h — the key-bias term is
  one constant per query row, which the softmax drops; output_h = P_h (x W_v,hᵀ + b_v,h) =
  (P_h x) W_v,hᵀ + b_v,h, as the weights of a row sum to 1. Two (H*T x C) x (C x HW) products replace two (HW x C) x (C x I)
  projections (I = 128 internal channels, H*T = 56 for a box prompt).
* image->token (HW queries from x + pe against the T token keys k and values v):
  scores_h = (x + pe)(W_q,hᵀ k_hᵀ) + b_q,h·k_h — the query-bias term varies with the key, so it stays,
  as one additive term per (head, token) column; output = Σ_h P_h (v_h W_o,hᵀ) + b_o, and as each
  head's rows sum to 1, b_o is added as b_o / H to each of the H*T value rows and the residual
  (the image tokens) is the product's ``input``: one ``baddbmm``, no (HW x I) query, value or
  output projection.

The softmax runs in float32 (as SDPA's does) whatever the tensors' dtype. Same arithmetic as
``SamAttention`` up to float summation order (tests/test_decoder_fast.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def heads(x: torch.Tensor, count: int) -> torch.Tensor:
    """(..., L, H*d) -> (..., H, L, d)."""
    return x.unflatten(-1, (count, -1)).transpose(-3, -2)


def merge(x: torch.Tensor) -> torch.Tensor:
    """(..., H, L, d) -> (..., L, H*d)."""
    return x.transpose(-3, -2).flatten(-2)


def attend(attn, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SamAttention's forward on projected inputs (..., L, internal): heads, softmax(qk*s)v, out_proj."""
    h = attn.num_attention_heads
    out = F.scaled_dot_product_attention(heads(q, h), heads(k, h), heads(v, h), scale=attn.scaling)
    return attn.out_proj(merge(out))


def _per_head(linear, count: int) -> torch.Tensor:
    """A projection's (H*d, C) weight as (H, d, C)."""
    return linear.weight.unflatten(0, (count, -1))


def _softmax(scores: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return scores.softmax(dim, dtype=torch.float32).to(scores.dtype)


def token_to_image(attn, query: torch.Tensor, keyed: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """``attn(q=query, k=keyed, v=image)`` for ``query`` (N, T, C) against per-prompt (or, batch 1,
    shared) image tokens ``keyed`` = image + pe and ``image`` (N or 1, HW, C); returns (N, T, C)."""
    h = attn.num_attention_heads
    n, t, c = query.shape
    q = heads(attn.q_proj(query), h) * attn.scaling  # (N, H, T, d)
    q_in = torch.matmul(q, _per_head(attn.k_proj, h)).reshape(n, h * t, c)  # (N, H*T, C)
    p = _softmax(torch.matmul(q_in, keyed.transpose(-2, -1)))  # (N, H*T, HW); key bias: see the module
    agg = torch.matmul(p, image).view(n, h, t, c)  # the image tokens each head's weights gather
    out = torch.matmul(agg, _per_head(attn.v_proj, h).transpose(-2, -1))  # (N, H, T, d)
    return attn.out_proj(merge(out) + attn.v_proj.bias)


def token_values(attn, tokens: torch.Tensor, h: int) -> torch.Tensor:
    """The image->token values carried through the output projection, bias included as b_o / H per
    head (each head's weights sum to 1): (N, T, C) tokens -> (N, H*T, C)."""
    n, t, c = tokens.shape
    v = heads(attn.v_proj(tokens), h)  # (N, H, T, d)
    w_out = attn.out_proj.weight.unflatten(1, (h, -1)).permute(1, 2, 0)  # (H, d, C): W_o,hᵀ
    return (torch.matmul(v, w_out) + attn.out_proj.bias / h).reshape(n, h * t, -1)


def image_to_token(attn, keyed: torch.Tensor, residual: torch.Tensor, token_keys: torch.Tensor,
                   tokens: torch.Tensor) -> torch.Tensor:
    """``residual + attn(q=keyed, k=token_keys, v=tokens)`` for per-prompt image tokens ``keyed``
    (N, HW, C) against each prompt's T tokens (N, T, C); returns (N, HW, C)."""
    h = attn.num_attention_heads
    n, t, c = tokens.shape
    k = heads(attn.k_proj(token_keys), h) * attn.scaling  # (N, H, T, d)
    m = torch.matmul(k, _per_head(attn.q_proj, h)).reshape(n, h * t, c)  # W_q,hᵀ k_h per column
    key_bias = torch.matmul(k, attn.q_proj.bias.unflatten(0, (h, -1, 1))).reshape(n, h * t, 1)
    scores = torch.baddbmm(key_bias, m, keyed.transpose(1, 2))  # (N, H*T, HW): the softmax over T
    p = _softmax(scores.view(n, h, t, -1), dim=2).view(n, h * t, -1)  # runs along contiguous HW rows
    return torch.baddbmm(residual, p.transpose(1, 2), token_values(attn, tokens, h))


def image_to_token_shared(attn, q_image: torch.Tensor, residual: torch.Tensor, token_keys: torch.Tensor,
                          tokens: torch.Tensor) -> torch.Tensor:
    """:func:`image_to_token` where the image queries are the same for every prompt and already
    projected once per image (the first block): ``q_image`` (H, HW, d), ``residual`` (1, HW, C)."""
    h = attn.num_attention_heads
    n, t, _ = tokens.shape
    k = heads(attn.k_proj(token_keys), h) * attn.scaling  # (N, H, T, d)
    scores = torch.matmul(k.transpose(0, 1).flatten(1, 2), q_image.transpose(1, 2))  # (H, N*T, HW)
    p = _softmax(scores.view(h, n, t, -1), dim=2).transpose(0, 1).reshape(n, h * t, -1)
    return torch.baddbmm(residual, p.transpose(1, 2), token_values(attn, tokens, h))
