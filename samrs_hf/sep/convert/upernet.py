"""The official trimmed UPerHead and the three heads onto SEP's ``UperNetHead`` and ``heads``.

``upernet_mmseg_30.py``'s ``ConvModule`` is a bias-free conv, a BatchNorm named ``bn`` and a ReLU; transformers'
``UperNetConvModule`` is the same with the norm named ``batch_norm``. The official head has no ``conv_seg``;
``models.py`` applies ``semseghead_{1,2,3}`` (``Dropout2d``, 1x1 conv) after the x4 upsample, ours applies the
1x1 conv before it: both are linear per pixel and bilinear weights sum to 1, so the logits agree to float
rounding.
"""

from __future__ import annotations

import re

from .official import ConversionError

HEAD_SUBSETS = {"semseghead_1": "sota", "semseghead_2": "sior", "semseghead_3": "fast"}
"""``models.py``'s forward feeds the SOTA batch to head 1, SIOR to head 2, FAST to head 3."""
POOL_SCALES = (1, 2, 3, 6)
"""``UPerHead``'s default, which ``models.py`` keeps (the scales are not in the weights, only their count)."""

_DECODER_RULE = re.compile(
    r"decoder\.((?:psp_modules\.\d+\.1|bottleneck|lateral_convs\.\d+|fpn_convs\.\d+|fpn_bottleneck))\.(conv|bn)\.(\w+)$")
_HEAD_RULE = re.compile(r"(semseghead_[123])\.1\.(weight|bias)$")


def decoder_key(key: str) -> str | None:
    """Our ``SEPForSemanticSegmentation`` name of an official decoder or head key, None if none."""
    match = _DECODER_RULE.match(key)
    if match:
        module, kind, name = match.groups()
        return f"decode_head.{module}.{'conv' if kind == 'conv' else 'batch_norm'}.{name}"
    match = _HEAD_RULE.match(key)
    if match:
        return f"heads.{HEAD_SUBSETS[match.group(1)]}.{match.group(2)}"
    return None


def map_keys(state_dict: dict, mapper, path, what: str) -> dict:
    """``{our name: tensor}``; any key the mapper does not know is an error listing all of them."""
    mapped, unknown = {}, []
    for key, value in state_dict.items():
        name = mapper(key)
        if name is None:
            unknown.append(key)
        else:
            mapped[name] = value
    if unknown:
        raise ConversionError(f"{path}: {len(unknown)} key(s) have no place in the converted model (not part of "
                              f"the official {what} layout): {unknown[:20]}")
    return mapped


def decoder_layout(state_dict: dict, path) -> dict:
    """SEPConfig values (hidden size, pool scales, heads) of an official full-model state dict."""
    pools = {k.split(".")[2] for k in state_dict if k.startswith("decoder.psp_modules.")}
    if len(pools) != len(POOL_SCALES):
        raise ConversionError(f"{path}: {len(pools)} pyramid-pooling branches; the official UPerHead has "
                              f"{len(POOL_SCALES)} (scales {POOL_SCALES})")
    heads = {}
    for name, subset in HEAD_SUBSETS.items():
        weight = state_dict.get(f"{name}.1.weight")
        if weight is None:
            raise ConversionError(f"{path}: no {name}.1.weight: the official model has three heads "
                                  f"{sorted(HEAD_SUBSETS)}")
        heads[subset] = int(weight.shape[0])
    hidden = state_dict.get("decoder.fpn_bottleneck.conv.weight")
    if hidden is None:
        raise ConversionError(f"{path}: no decoder.fpn_bottleneck.conv.weight (not an official UPerHead)")
    return {"hidden_size": int(hidden.shape[0]), "pool_scales": list(POOL_SCALES), "heads": heads}


__all__ = ["decoder_key", "map_keys", "decoder_layout", "HEAD_SUBSETS", "POOL_SCALES"]
