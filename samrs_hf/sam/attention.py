"""SAM's vision attention as ``samrs build`` runs it: windowed layers on the unpadded grid, and the
global layers' rel-pos bias inside FlexAttention or our Triton kernel.

SAM pads its 64x64 token grid to 70x70 for the 14x14 windows. A zero-padded token projects to the
qkv bias, so :class:`SamVisionWindowLayer` projects qkv on the 64x64 grid and pads the projections
with that bias, and runs proj after cropping: SAM's math without the 16 % padded rows in qkv and
proj (vit_h: 5 % of the encoder's FLOPs).

SAM adds a decomposed relative-position bias ``rel_h[q, k // kw] + rel_w[q, k % kw]`` to every
score. transformers' SDPA attention materialises that sum as a float (B, heads, N, N) mask: for
vit_h's global layers (64x64 = 4096 tokens, 16 heads) that is 1 GiB per image in float32, written
and read once per layer. ``flex`` adds the two small tables inside a FlexAttention kernel instead
(a ``score_mod``); ``triton`` adds them inside our flash-attention kernel, one key-grid row per key
block (:mod:`samrs_hf.sam.relpos_flash`). Either way the N x N bias never exists. With ``triton`` the
windowed layers (14x14 = 196 tokens) go through the kernel too (``triton_windows``); with
``flex`` they keep SDPA with the materialised bias, as ``sdpa`` does everywhere.

Every switch is a field of the frozen :class:`~samrs_hf.sam.options.SamAttentionOptions` the layers
are built with (:func:`install_attention`); nothing here reads a module flag at run time.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from transformers.activations import GELUActivation
from transformers.models.sam.modeling_sam import SamMLPBlock, SamVisionAttention, SamVisionLayer
from transformers.modeling_layers import GradientCheckpointingLayer

from .options import ATTN_MARK, OPTIONS_MARK, SamAttentionOptions, transformers_attn

try:
    from torch.nn.attention.flex_attention import flex_attention
except ImportError:  # torch < 2.5
    flex_attention = None

GLOBAL_MIN_TOKENS = 1024
"""Layers with at least this many tokens (SAM's global layers) use flex / the Triton kernel; fewer
(14x14 windows) keep SDPA with the materialised bias."""

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


def _flex(query, key, value, score_mod, scale, inline: bool):
    if query.is_cuda and inline and torch.compiler.is_compiling():
        return flex_attention(query, key, value, score_mod=score_mod, scale=scale)
    return _flex_outside_graph(query, key, value, score_mod, scale)


class SamVisionRelPosAttention(SamVisionAttention):
    """``sdpa``: transformers' SamVisionSdpaAttention math (the rel-pos bias materialised as the SDPA
    mask), split at the projections so that :class:`SamVisionWindowLayer` can hand :meth:`attend`
    windows of projections it padded itself. Subclasses change how the global layers add the bias
    (``_global_attention``)."""

    def __init__(self, config, window_size: int, options: SamAttentionOptions):
        super().__init__(config, window_size)
        self.options = options

    def forward(self, hidden_states: torch.Tensor, output_attentions=False):
        return self.proj(self.attend(self.qkv(hidden_states))), None

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """(batch, height, width, 3 * dim) projections of one token grid -> the (batch, height, width,
        dim) attention output, before proj."""
        batch, height, width, _ = qkv.shape
        heads, tokens = self.num_attention_heads, height * width
        qkv = qkv.reshape(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.unbind(0)  # each (batch, heads, tokens, head_dim)

        if not self.use_rel_pos:
            out = F.scaled_dot_product_attention(query, key, value, scale=self.scale)
        elif tokens < GLOBAL_MIN_TOKENS:
            out = self._materialised_bias_attention(query, key, value, height, width)
        else:
            out = self._global_attention(query, key, value, height, width)
        return out.reshape(batch, heads, height, width, -1).permute(0, 2, 3, 1, 4).reshape(batch, height, width, -1)

    def _materialised_bias_attention(self, query, key, value, height: int, width: int) -> torch.Tensor:
        """(batch, heads, tokens, head_dim) attention output, the rel-pos bias an N x N SDPA mask."""
        batch, heads, tokens, _ = query.shape
        flat = query.reshape(batch * heads, tokens, -1)
        bias = self.get_decomposed_rel_pos(flat, self.rel_pos_h, self.rel_pos_w, (height, width), (height, width))
        bias = bias.reshape(batch, heads, tokens, tokens)
        return F.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=self.scale)

    def _global_attention(self, query, key, value, height: int, width: int) -> torch.Tensor:
        return self._materialised_bias_attention(query, key, value, height, width)


class SamVisionFlexAttention(SamVisionRelPosAttention):
    """Global layers: FlexAttention with the bias tables ``rel_h[q, k // width] + rel_w[q, k % width]``
    in a ``score_mod``."""

    def _global_attention(self, query, key, value, height: int, width: int) -> torch.Tensor:
        require_flex_attention()
        batch, heads, tokens, _ = query.shape
        rel_pos_h = self.get_rel_pos(height, height, self.rel_pos_h)  # (height, kh, head_dim)
        rel_pos_w = self.get_rel_pos(width, width, self.rel_pos_w)  # (width, kw, head_dim)
        grid = query.reshape(batch, heads, height, width, -1)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid, rel_pos_h).reshape(batch, heads, tokens, height)
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid, rel_pos_w).reshape(batch, heads, tokens, width)

        def rel_pos_bias(score, b, h, q_idx, kv_idx):
            return score + rel_h[b, h, q_idx, kv_idx // width] + rel_w[b, h, q_idx, kv_idx % width]

        return _flex(query, key, value, rel_pos_bias, self.scale, self.options.flex_inline)


class SamVisionTritonAttention(SamVisionRelPosAttention):
    """Global layers (and, with ``options.triton_windows``, windowed ones) through our Triton flash-attention
    kernel with the bias fused (:mod:`samrs_hf.sam.relpos_flash`).

    ``window``: 0 when the layer hands over attention on its own token grid (global layers, or windows
    the layer already partitioned); else the window size, and ``hidden_states`` is the whole unpadded
    grid: the kernel walks the windows itself, so SAM's padding costs neither qkv/proj rows nor
    partition copies (:class:`SamVisionWindowLayer`).
    """

    def forward(self, hidden_states: torch.Tensor, output_attentions=False, window: int = 0):
        if window == 0:
            return super().forward(hidden_states)
        return self.proj(self._kernel_attend(self.qkv(hidden_states), window)), None

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        height, width = qkv.shape[1:3]
        if not self.use_rel_pos or height * width < GLOBAL_MIN_TOKENS:
            return super().attend(qkv)
        return self._kernel_attend(qkv, 0)

    def _kernel_attend(self, qkv: torch.Tensor, window: int) -> torch.Tensor:
        from .relpos_flash import relpos_attention, window_shape

        batch, height, width, _ = qkv.shape
        heads = self.num_attention_heads
        query, key, value = qkv.reshape(batch, height, width, 3, heads, -1).unbind(3)  # (b, h, w, heads, d)
        head_dim = query.shape[-1]
        if self.qkv.bias is not None:
            _, key_bias, value_bias = self.qkv.bias.reshape(3, heads, head_dim).unbind(0)
        else:
            key_bias = value_bias = query.new_zeros(heads, head_dim)
        if self.use_rel_pos:
            rel_h, rel_w = self._window_rel_pos_tables(query, window)
        else:  # windows without SAM's bias: the same kernel, zero tables
            rows, cols = window_shape(height, width, window)
            rel_h = query.new_zeros(batch, heads, rows, height * width).transpose(-1, -2)
            rel_w = query.new_zeros(batch, heads, height * width, cols)
        out = relpos_attention(query, key, value, key_bias, value_bias, rel_h, rel_w, self.scale, window)
        return out.reshape(batch, height, width, -1)

    def _window_rel_pos_tables(self, query, window: int):
        """rel_h (batch, heads, tokens, rows), key-row-major (one key row's column is contiguous over
        queries, as the kernel reads it), and rel_w (batch, heads, tokens, cols): each token's bias
        terms against its window's key rows and columns, from its position inside the window."""
        from .relpos_flash import window_shape

        batch, height, width, heads, _ = query.shape
        rows, cols = window_shape(height, width, window)
        rel_pos_h = self.get_rel_pos(rows, rows, self.rel_pos_h)  # (rows, kh, head_dim)
        rel_pos_w = self.get_rel_pos(cols, cols, self.rel_pos_w)  # (cols, kw, head_dim)
        device = query.device
        rel_pos_h = rel_pos_h[torch.arange(height, device=device) % rows]  # per image row
        rel_pos_w = rel_pos_w[torch.arange(width, device=device) % cols]
        rel_h = torch.einsum("byxnc,ykc->bnkyx", query, rel_pos_h).reshape(batch, heads, rows, height * width)
        rel_w = torch.einsum("byxnc,xkc->bnyxk", query, rel_pos_w).reshape(batch, heads, height * width, cols)
        return rel_h.transpose(-1, -2), rel_w


class SamVisionWindowLayer(SamVisionLayer):
    """``SamVisionLayer`` built from the options: a windowed layer that never projects padded tokens:
    with ``unpadded_windows``, qkv on the unpadded grid, padded with the qkv bias (what SAM's
    zero-padded tokens project to), windows through :meth:`SamVisionRelPosAttention.attend`, proj after
    cropping; with ``triton_windows`` and the Triton attention, the kernel walks the windows of the
    unpadded grid itself. Otherwise, and for global layers, exactly ``SamVisionLayer``."""

    def __init__(self, config, window_size: int, options: SamAttentionOptions):
        GradientCheckpointingLayer.__init__(self)  # SamVisionLayer's parts, our classes
        self.layer_norm1 = torch.nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = ATTENTION_CLASSES[options.attn](config, window_size, options)
        self.layer_norm2 = torch.nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = SamVisionMLP(config, fused_gelu=options.fused_mlp_gelu)
        self.window_size = window_size
        self.triton_windows = options.triton_windows and options.attn == "triton"
        self.unpadded = window_size > 0 and (options.unpadded_windows or self.triton_windows)

    def forward(self, hidden_states: torch.Tensor):
        if not self.unpadded:
            return super().forward(hidden_states)
        normed = self.layer_norm1(hidden_states)
        if self.triton_windows:
            attn_out, _ = self.attn(normed, window=self.window_size)
        else:
            attn_out = self._unpadded_window_attention(normed)
        hidden_states = hidden_states + attn_out
        return hidden_states + self.mlp(self.layer_norm2(hidden_states))

    def _unpadded_window_attention(self, normed: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = normed.shape
        window = self.window_size
        qkv = self.attn.qkv(normed)
        pad_h, pad_w = (-height) % window, (-width) % window
        if pad_h or pad_w:
            qkv = F.pad(qkv, (0, 0, 0, pad_w, 0, pad_h))
            if self.attn.qkv.bias is not None:  # the padded strips: what zero tokens project to
                bias = self.attn.qkv.bias.to(qkv.dtype)
                qkv[:, height:] = bias
                qkv[:, :height, width:] = bias
        rows, cols = (height + pad_h) // window, (width + pad_w) // window
        windows = qkv.view(batch, rows, window, cols, window, -1).transpose(2, 3).reshape(-1, window, window, qkv.shape[-1])
        out = self.window_unpartition(self.attn.attend(windows), window, (height + pad_h, width + pad_w), (height, width))
        return self.attn.proj(out)


class SamVisionMLP(SamMLPBlock):
    """transformers' SAM MLP; with ``fused_gelu``, in a half dtype on CUDA, ``lin1`` + bias + GELU as
    one matmul with a GELU epilogue, so the 4x-wide hidden activations are written once instead of
    three times. cuBLASLt's GELU is the tanh form (within 5e-4 of SAM's erf, below bfloat16's
    rounding), so float32 always keeps the exact GELU. Same parameters, so checkpoints are unchanged."""

    def __init__(self, config, fused_gelu: bool):
        super().__init__(config)
        self.fused_gelu = fused_gelu

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not (self.fused_gelu and hidden_states.is_cuda
                and hidden_states.dtype in (torch.bfloat16, torch.float16)
                and self.lin1.weight.dtype == hidden_states.dtype and isinstance(self.act, GELUActivation)
                and self.lin1.bias is not None):
            return super().forward(hidden_states)
        return self.lin2(self.fused_lin1_gelu(hidden_states))

    def fused_lin1_gelu(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """GELU(lin1(x)) in one ``_addmm_activation`` (on CPU that op's GELU is the exact one)."""
        flat = hidden_states.reshape(-1, hidden_states.shape[-1])
        out = torch._addmm_activation(self.lin1.bias, flat, self.lin1.weight.t(), use_gelu=True)
        return out.reshape(*hidden_states.shape[:-1], out.shape[-1])


ATTENTION_CLASSES = {"sdpa": SamVisionRelPosAttention, "flex": SamVisionFlexAttention,
                     "triton": SamVisionTritonAttention}


def vision_layer(config, window_size: int, options: SamAttentionOptions) -> torch.nn.Module:
    """One vision layer built for ``options``: ours, or transformers' own for ``eager``."""
    if options.attn == "eager":
        config = copy.copy(config)
        config._attn_implementation = "eager"
        return SamVisionLayer(config, window_size)
    return SamVisionWindowLayer(config, window_size, options)


def install_attention(model, options: SamAttentionOptions) -> None:
    """Give ``model``'s vision encoder layers built for ``options`` (its weights, moved, not copied).

    transformers builds the layers from ``config._attn_implementation`` only, so each one is built
    again (on the meta device, free) with the classes ``options`` names and takes the old layer's
    tensors. Parameter names do not change, and the config keeps ``sdpa`` (or ``eager``), so
    ``save_pretrained`` output loads with stock transformers. The options are recorded as
    ``model.samrs_attention_options`` (and the attention name as ``model.samrs_vision_attention``).
    """
    encoder = model.vision_encoder
    for index, old in enumerate(encoder.layers):
        with torch.device("meta"):
            new = vision_layer(encoder.config, old.window_size, options)
        new.load_state_dict(old.state_dict(), assign=True)
        encoder.layers[index] = new.train(old.training)
    config_attn = transformers_attn(options.attn)
    for config in (model.config, model.config.mask_decoder_config, model.mask_decoder.config):
        config._attn_implementation = config_attn
    setattr(model, OPTIONS_MARK, options)
    setattr(model, ATTN_MARK, options.attn)
