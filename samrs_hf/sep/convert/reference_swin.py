"""The official SEP Swin encoder (``backbone/swin.py`` of ViTAE-Transformer/SAMRS), restated in plain torch.

From the official file: patch embedding (pad to the patch size, conv, LayerNorm); per stage, blocks whose odd
members roll the map by half a window, in *every* stage, with the -100 attention mask of the padded map;
windows padded with zeros after the first LayerNorm; relative position bias from the stored index; exact
GELU MLP; patch merging (pad odd sizes, concatenate [0::2,0::2], [1::2,0::2], [0::2,1::2], [1::2,1::2],
LayerNorm, bias-free linear); one output LayerNorm per stage (``norm0``..``norm3``). LayerNorm eps 1e-5.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LN_EPS = 1e-5


def _ln(x, sd, prefix):
    return F.layer_norm(x, x.shape[-1:], sd[prefix + "weight"], sd[prefix + "bias"], LN_EPS)


def _windows(x, ws):
    b, h, w, c = x.shape
    return x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)


def _unwindows(x, ws, b, h, w):
    return x.view(b, h // ws, w // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


def _shift_mask(hp, wp, ws, shift):
    """(windows, N, N) additive mask: 0 within a region of the rolled map, -100 across regions."""
    region = torch.zeros(1, hp, wp, 1)
    cuts = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    for i, (hs, wsl) in enumerate((hs, wsl) for hs in cuts for wsl in cuts):
        region[:, hs, wsl, :] = i
    ids = _windows(region, ws).squeeze(-1)
    diff = ids.unsqueeze(1) - ids.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


def _attention(x, sd, p, heads, mask):
    bw, n, c = x.shape
    qkv = F.linear(x, sd[p + "qkv.weight"], sd.get(p + "qkv.bias")).reshape(bw, n, 3, heads, c // heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    attn = (q * (c // heads) ** -0.5) @ k.transpose(-2, -1)
    bias = sd[p + "relative_position_bias_table"][sd[p + "relative_position_index"].view(-1)]
    attn = attn + bias.view(n, n, heads).permute(2, 0, 1).unsqueeze(0)
    if mask is not None:
        nw = mask.shape[0]
        attn = (attn.view(bw // nw, nw, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)).view(bw, heads, n, n)
    out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(bw, n, c)
    return F.linear(out, sd[p + "proj.weight"], sd[p + "proj.bias"])


def _block(x, sd, p, hw, ws, shift, heads, mask):
    (h, w), (b, _, c) = hw, x.shape
    y = F.pad(_ln(x, sd, p + "norm1.").view(b, h, w, c), (0, 0, 0, (-w) % ws, 0, (-h) % ws))
    hp, wp = y.shape[1:3]
    if shift:
        y = torch.roll(y, (-shift, -shift), (1, 2))
    y = _unwindows(_attention(_windows(y, ws), sd, p + "attn.", heads, mask if shift else None), ws, b, hp, wp)
    if shift:
        y = torch.roll(y, (shift, shift), (1, 2))
    x = x + y[:, :h, :w, :].reshape(b, h * w, c)
    hidden = F.gelu(F.linear(_ln(x, sd, p + "norm2."), sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"]))
    return x + F.linear(hidden, sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])


def _merge(x, sd, p, h, w):
    b, _, c = x.shape
    x = F.pad(x.view(b, h, w, c), (0, 0, 0, w % 2, 0, h % 2))
    x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1).view(b, -1, 4 * c)
    return F.linear(_ln(x, sd, p + "norm."), sd[p + "reduction.weight"])


def official_swin_encoder(x, sd, prefix="encoder."):
    """The four normalised stage outputs (strides 4, 8, 16, 32) of the official Swin."""
    proj = sd[prefix + "patch_embed.proj.weight"]
    patch = proj.shape[-1]
    x = F.pad(x, (0, (-x.shape[3]) % patch, 0, (-x.shape[2]) % patch))
    x = F.conv2d(x, proj, sd[prefix + "patch_embed.proj.bias"], stride=patch)
    h, w = x.shape[2:]
    x = _ln(x.flatten(2).transpose(1, 2), sd, prefix + "patch_embed.norm.")
    outs, stage = [], 0
    while f"{prefix}layers.{stage}.blocks.0.norm1.weight" in sd:
        p = f"{prefix}layers.{stage}."
        table = sd[p + "blocks.0.attn.relative_position_bias_table"]
        ws, heads = (math.isqrt(table.shape[0]) + 1) // 2, table.shape[1]
        hp, wp = math.ceil(h / ws) * ws, math.ceil(w / ws) * ws
        mask = _shift_mask(hp, wp, ws, ws // 2)
        block = 0
        while f"{p}blocks.{block}.norm1.weight" in sd:
            x = _block(x, sd, f"{p}blocks.{block}.", (h, w), ws, ws // 2 if block % 2 else 0, heads, mask)
            block += 1
        out = _ln(x, sd, f"{prefix}norm{stage}.")
        outs.append(out.view(x.shape[0], h, w, -1).permute(0, 3, 1, 2).contiguous())
        if p + "downsample.reduction.weight" in sd:
            x, h, w = _merge(x, sd, p + "downsample.", h, w), (h + 1) // 2, (w + 1) // 2
        stage += 1
    return outs


def relative_position_index(ws: int) -> torch.Tensor:
    """The (ws*ws, ws*ws) index every official and transformers Swin window attention uses."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return rel[:, :, 0] * (2 * ws - 1) + rel[:, :, 1]


def _ln_shapes(prefix, n):
    return {prefix + "weight": (n,), prefix + "bias": (n,)}


def official_swin_encoder_shapes(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window=7,
                                 patch=4, mlp_ratio=4) -> dict:
    """``{key: shape}`` of the official ``swin(...)`` encoder (no prefix; 189 keys for Swin-T)."""
    shapes = {"patch_embed.proj.weight": (embed_dim, 3, patch, patch), "patch_embed.proj.bias": (embed_dim,),
              **_ln_shapes("patch_embed.norm.", embed_dim)}
    for i, (depth, heads) in enumerate(zip(depths, num_heads)):
        dim = embed_dim * 2 ** i
        for j in range(depth):
            p = f"layers.{i}.blocks.{j}."
            shapes.update({**_ln_shapes(p + "norm1.", dim),
                           p + "attn.relative_position_bias_table": ((2 * window - 1) ** 2, heads),
                           p + "attn.relative_position_index": (window * window, window * window),
                           p + "attn.qkv.weight": (3 * dim, dim), p + "attn.qkv.bias": (3 * dim,),
                           p + "attn.proj.weight": (dim, dim), p + "attn.proj.bias": (dim,),
                           **_ln_shapes(p + "norm2.", dim),
                           p + "mlp.fc1.weight": (mlp_ratio * dim, dim), p + "mlp.fc1.bias": (mlp_ratio * dim,),
                           p + "mlp.fc2.weight": (dim, mlp_ratio * dim), p + "mlp.fc2.bias": (dim,)})
        if i < len(depths) - 1:
            shapes.update({f"layers.{i}.downsample.reduction.weight": (2 * dim, 4 * dim),
                           **_ln_shapes(f"layers.{i}.downsample.norm.", 4 * dim)})
    for i in range(len(depths)):
        shapes.update(_ln_shapes(f"norm{i}.", embed_dim * 2 ** i))
    return shapes


__all__ = ["official_swin_encoder", "official_swin_encoder_shapes", "relative_position_index"]
