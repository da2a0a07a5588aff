"""The official ResNet + UperNet key layout onto transformers' ``ResNetBackbone`` + SEP's ``UperNetHead``.

The official model (``models.py``: ``ResNet(50, out_indices=(0, 1, 2, 3))`` from ``resnet_mmseg_10.py``, a
trimmed mmseg ``UPerHead`` and ``semseghead_{1,2,3}``) and ours match module for module:

============================================  =========================================================
official key                                  ours
============================================  =========================================================
``encoder.conv1`` / ``encoder.bn1``           ``backbone.embedder.embedder.convolution`` / ``.normalization``
``encoder.layer{i}.{j}.conv{k}`` / ``bn{k}``  ``backbone.encoder.stages.{i-1}.layers.{j}.layer.{k-1}.convolution`` / ``.normalization``
``encoder.layer{i}.{j}.downsample.0`` / ``.1`` ``backbone.encoder.stages.{i-1}.layers.{j}.shortcut.convolution`` / ``.normalization``
``decoder.<module>.conv`` / ``.bn``           ``decode_head.<module>.conv`` / ``.batch_norm``
``semseghead_1/2/3.1``                        ``heads.sota`` / ``heads.sior`` / ``heads.fast``
============================================  =========================================================

The stride sits on the 3x3 conv in both (mmseg ``style='pytorch'``; transformers
``downsample_in_bottleneck=False``). The sizes (depths, widths, decoder channels, classes) are read from the
tensors, so the config is the checkpoint's own, never a guess.
"""

from __future__ import annotations

import re

from .official import ConversionError

HEAD_SUBSETS = {"semseghead_1": "sota", "semseghead_2": "sior", "semseghead_3": "fast"}
"""``models.py``'s forward feeds the SOTA batch to head 1, SIOR to head 2, FAST to head 3."""
POOL_SCALES = (1, 2, 3, 6)
"""``UPerHead``'s default, which ``models.py`` keeps (the scales are not in the weights, only their count)."""
RESNET50 = {"embedding_size": 64, "hidden_sizes": [256, 512, 1024, 2048], "depths": [3, 4, 6, 3]}

_ENCODER_RULES = [
    (re.compile(r"conv1\.(weight)$"), "embedder.embedder.convolution.{0}"),
    (re.compile(r"bn1\.(\w+)$"), "embedder.embedder.normalization.{0}"),
    (re.compile(r"layer(\d)\.(\d+)\.conv(\d)\.(weight)$"), "encoder.stages.{0}.layers.{1}.layer.{2}.convolution.{3}"),
    (re.compile(r"layer(\d)\.(\d+)\.bn(\d)\.(\w+)$"), "encoder.stages.{0}.layers.{1}.layer.{2}.normalization.{3}"),
    (re.compile(r"layer(\d)\.(\d+)\.downsample\.0\.(weight)$"), "encoder.stages.{0}.layers.{1}.shortcut.convolution.{2}"),
    (re.compile(r"layer(\d)\.(\d+)\.downsample\.1\.(\w+)$"), "encoder.stages.{0}.layers.{1}.shortcut.normalization.{2}"),
]
_DECODER_RULE = re.compile(
    r"decoder\.((?:psp_modules\.\d+\.1|bottleneck|lateral_convs\.\d+|fpn_convs\.\d+|fpn_bottleneck))\.(conv|bn)\.(\w+)$")
_HEAD_RULE = re.compile(r"(semseghead_[123])\.1\.(weight|bias)$")


def _shift(groups: tuple[str, ...], rule: str) -> tuple:
    """1-based official stage / conv numbers -> 0-based module indices (block numbers stay)."""
    if rule.startswith("encoder.stages"):
        stage, block, *rest = groups
        if "layer.{2}" in rule:
            return (int(stage) - 1, block, int(rest[0]) - 1, *rest[1:])
        return (int(stage) - 1, block, *rest)
    return groups


def encoder_key(key: str) -> str | None:
    """Our ``ResNetBackbone`` name of an official encoder key (without ``encoder.``), None if none."""
    for pattern, rule in _ENCODER_RULES:
        match = pattern.match(key)
        if match:
            return rule.format(*_shift(match.groups(), rule))
    return None


def sep_key(key: str) -> str | None:
    """Our ``SEPForSemanticSegmentation`` name of an official full-model key, None if none."""
    if key.startswith("encoder."):
        mapped = encoder_key(key.removeprefix("encoder."))
        return None if mapped is None else "backbone." + mapped
    match = _DECODER_RULE.match(key)
    if match:
        module, kind, name = match.groups()
        return f"decode_head.{module}.{'conv' if kind == 'conv' else 'batch_norm'}.{name}"
    match = _HEAD_RULE.match(key)
    if match:
        return f"heads.{HEAD_SUBSETS[match.group(1)]}.{match.group(2)}"
    return None


def map_keys(state_dict: dict, mapper, path) -> dict:
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
                              f"the official ResNet + UperNet layout): {unknown[:20]}")
    return mapped


def resnet_layout(encoder: dict, path) -> dict:
    """ResNetConfig values of an official encoder state dict (keys without ``encoder.``)."""
    blocks = {}
    for key in encoder:
        match = re.match(r"layer(\d)\.(\d+)\.", key)
        if match:
            blocks.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    if sorted(blocks) != [1, 2, 3, 4] or any(sorted(b) != list(range(len(b))) for b in blocks.values()):
        raise ConversionError(f"{path}: the encoder's residual stages are {sorted(blocks)} with blocks "
                              f"{ {i: sorted(b) for i, b in blocks.items()} }; the official ResNet has layer1..layer4")
    if any(f"layer{i}.0.conv3.weight" not in encoder for i in blocks):
        raise ConversionError(f"{path}: basic-block ResNet (no conv3): the official SEP backbone is the bottleneck "
                              f"ResNet-50")
    return {"embedding_size": int(encoder["conv1.weight"].shape[0]),
            "hidden_sizes": [int(encoder[f"layer{i}.0.conv3.weight"].shape[0]) for i in range(1, 5)],
            "depths": [len(blocks[i]) for i in range(1, 5)]}


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


def check_resnet50(layout: dict, path) -> None:
    """``--backbone resnet50`` promises ResNet-50: any other depth or width is refused, not converted."""
    if layout != RESNET50:
        raise ConversionError(f"{path}: --backbone resnet50, but the encoder is {layout} (ResNet-50 is {RESNET50}); "
                              f"pass --backbone resnet to convert another mmseg bottleneck ResNet")


__all__ = ["encoder_key", "sep_key", "map_keys", "resnet_layout", "decoder_layout", "check_resnet50",
           "HEAD_SUBSETS", "POOL_SCALES", "RESNET50"]
