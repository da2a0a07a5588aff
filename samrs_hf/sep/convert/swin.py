"""The official Swin encoder's keys onto transformers' ``SwinBackbone``.

transformers' ``SwinBackbone`` runs its stages with ``always_partition=True``: every odd block keeps its
half-window shift at every resolution, stage 4 included, as the official Swin does (a plain ``SwinModel``
would turn the shift off where the map is no larger than the window). The keys:

=====================================================  ====================================================
official (``encoder.`` removed)                        ours (``SwinBackbone``)
=====================================================  ====================================================
``patch_embed.proj`` / ``patch_embed.norm``             ``swin.embeddings.patch_embeddings.projection`` / ``swin.embeddings.norm``
``layers.i.blocks.j.norm1`` / ``norm2``                 ``swin.encoder.layers.i.blocks.j.layernorm_before`` / ``layernorm_after``
``...attn.qkv`` (rows q, k, v)                          ``...attention.q_proj`` / ``k_proj`` / ``v_proj``
``...attn.proj``                                        ``...attention.o_proj``
``...attn.relative_position_bias_table``                ``...attention.relative_position_bias.relative_position_bias_table``
``...mlp.fc1`` / ``mlp.fc2``                            ``...mlp.fc1`` / ``mlp.fc2``
``layers.i.downsample.reduction`` / ``.norm``           ``swin.encoder.layers.i.downsample.reduction`` / ``.norm``
``norm{i}``                                             ``hidden_states_norms.stage{i+1}``
=====================================================  ====================================================

``relative_position_index`` buffers are a fixed function of the window size, which transformers rebuilds;
each is checked equal to it and then left out. ``swin.layernorm`` (``SwinModel``'s final norm) has no official
counterpart and does not touch the feature maps; it is set to the identity.
"""

from __future__ import annotations

import math
import re

import torch

from .official import ConversionError
from .reference_swin import relative_position_index

SWIN_T = {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24], "window_size": 7, "patch_size": 4,
          "mlp_ratio": 4.0}
INDEX_REASON = "a fixed function of the window size that transformers rebuilds (checked equal before leaving it out)"
EXTRAS = {"swin.layernorm.weight": 1.0, "swin.layernorm.bias": 0.0}
"""Our keys with no official counterpart: SwinModel's final LayerNorm, which SwinBackbone's feature maps skip."""
EXTRAS_REASON = "SwinModel's final LayerNorm: no official counterpart, unused by SwinBackbone's feature maps; identity"

_BLOCK = r"layers\.(\d+)\.blocks\.(\d+)\."
_RULES = [
    (r"patch_embed\.proj\.(\w+)", "swin.embeddings.patch_embeddings.projection.{0}"),
    (r"patch_embed\.norm\.(\w+)", "swin.embeddings.norm.{0}"),
    (_BLOCK + r"norm1\.(\w+)", "swin.encoder.layers.{0}.blocks.{1}.layernorm_before.{2}"),
    (_BLOCK + r"norm2\.(\w+)", "swin.encoder.layers.{0}.blocks.{1}.layernorm_after.{2}"),
    (_BLOCK + r"attn\.proj\.(\w+)", "swin.encoder.layers.{0}.blocks.{1}.attention.o_proj.{2}"),
    (_BLOCK + r"attn\.relative_position_bias_table",
     "swin.encoder.layers.{0}.blocks.{1}.attention.relative_position_bias.relative_position_bias_table"),
    (_BLOCK + r"mlp\.(fc[12])\.(\w+)", "swin.encoder.layers.{0}.blocks.{1}.mlp.{2}.{3}"),
    (r"layers\.(\d+)\.downsample\.(reduction|norm)\.(\w+)", "swin.encoder.layers.{0}.downsample.{1}.{2}"),
]


def swin_pairs(key: str, value: torch.Tensor) -> list | None:
    """``[(our key, tensor), ...]`` for an official encoder key (``[]``: deliberately left out), None if unknown."""
    match = re.fullmatch(_BLOCK + r"attn\.qkv\.(\w+)", key)
    if match:
        base = "swin.encoder.layers.{}.blocks.{}.attention.".format(*match.groups()[:2])
        return [(f"{base}{n}_proj.{match.group(3)}", part) for n, part in zip("qkv", value.chunk(3, dim=0))]
    if re.fullmatch(_BLOCK + r"attn\.relative_position_index", key):
        return []
    match = re.fullmatch(r"norm(\d)\.(\w+)", key)
    if match:
        return [(f"hidden_states_norms.stage{int(match.group(1)) + 1}.{match.group(2)}", value)]
    for pattern, rule in _RULES:
        match = re.fullmatch(pattern, key)
        if match:
            return [(rule.format(*match.groups()), value)]
    return None


def check_indices(encoder: dict, window: int, path) -> None:
    expected = relative_position_index(window)
    bad = [k for k, v in encoder.items() if k.endswith("relative_position_index") and not torch.equal(v, expected)]
    if bad:
        raise ConversionError(f"{path}: relative_position_index differs from a {window}x{window} window's in {bad[:5]}; "
                              f"transformers' Swin cannot hold it")


def swin_layout(encoder: dict, path) -> dict:
    """SwinConfig values of an official Swin encoder state dict (keys without ``encoder.``)."""
    if any(k.startswith("absolute_pos_embed") for k in encoder):
        raise ConversionError(f"{path}: a Swin with absolute position embeddings (ape=True); the official SEP Swin-T "
                              f"has none, and transformers' Swin resizes them differently")
    blocks = {}
    for key in encoder:
        match = re.match(_BLOCK, key)
        if match:
            blocks.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    stages = sorted(blocks)
    if stages != list(range(len(stages))) or any(f"norm{i}.weight" not in encoder for i in stages):
        raise ConversionError(f"{path}: Swin stages {stages} without one output norm (norm0..norm{len(stages) - 1}) each")
    proj = encoder["patch_embed.proj.weight"]
    tables = [encoder[f"layers.{i}.blocks.0.attn.relative_position_bias_table"] for i in stages]
    window = (math.isqrt(tables[0].shape[0]) + 1) // 2
    layout = {"embed_dim": int(proj.shape[0]), "depths": [len(blocks[i]) for i in stages],
              "num_heads": [int(t.shape[1]) for t in tables], "window_size": window, "patch_size": int(proj.shape[-1]),
              "mlp_ratio": encoder["layers.0.blocks.0.mlp.fc1.weight"].shape[0] / proj.shape[0]}
    check_indices(encoder, window, path)
    return layout


def check_swin_t(layout: dict, path) -> None:
    if layout != SWIN_T:
        raise ConversionError(f"{path}: --backbone swin-t, but the encoder is {layout} (Swin-T is {SWIN_T}); "
                              f"pass --backbone swin to convert another official-style Swin")


__all__ = ["swin_pairs", "swin_layout", "check_swin_t", "SWIN_T", "EXTRAS", "EXTRAS_REASON", "INDEX_REASON"]
