"""The official ResNet encoder's keys onto transformers' ``ResNetBackbone`` (the decoder: :mod:`.upernet`).

The official model (``models.py``: ``ResNet(50, out_indices=(0, 1, 2, 3))`` from ``resnet_mmseg_10.py``, a
trimmed mmseg ``UPerHead`` and ``semseghead_{1,2,3}``) and ours match module for module:

============================================  =========================================================
official key                                  ours
============================================  =========================================================
``encoder.conv1`` / ``encoder.bn1``           ``backbone.embedder.embedder.convolution`` / ``.normalization``
``encoder.layer{i}.{j}.conv{k}`` / ``bn{k}``  ``backbone.encoder.stages.{i-1}.layers.{j}.layer.{k-1}.convolution`` / ``.normalization``
``encoder.layer{i}.{j}.downsample.0`` / ``.1`` ``backbone.encoder.stages.{i-1}.layers.{j}.shortcut.convolution`` / ``.normalization``
============================================  =========================================================

The stride sits on the 3x3 conv in both (mmseg ``style='pytorch'``; transformers
``downsample_in_bottleneck=False``). The sizes (depths, widths, decoder channels, classes) are read from the
tensors, so the config is the checkpoint's own, never a guess.
"""

from __future__ import annotations

import re

from .official import ConversionError

RESNET50 = {"embedding_size": 64, "hidden_sizes": [256, 512, 1024, 2048], "depths": [3, 4, 6, 3]}

_ENCODER_RULES = [
    (re.compile(r"conv1\.(weight)$"), "embedder.embedder.convolution.{0}"),
    (re.compile(r"bn1\.(\w+)$"), "embedder.embedder.normalization.{0}"),
    (re.compile(r"layer(\d)\.(\d+)\.conv(\d)\.(weight)$"), "encoder.stages.{0}.layers.{1}.layer.{2}.convolution.{3}"),
    (re.compile(r"layer(\d)\.(\d+)\.bn(\d)\.(\w+)$"), "encoder.stages.{0}.layers.{1}.layer.{2}.normalization.{3}"),
    (re.compile(r"layer(\d)\.(\d+)\.downsample\.0\.(weight)$"), "encoder.stages.{0}.layers.{1}.shortcut.convolution.{2}"),
    (re.compile(r"layer(\d)\.(\d+)\.downsample\.1\.(\w+)$"), "encoder.stages.{0}.layers.{1}.shortcut.normalization.{2}"),
]


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


def resnet_pairs(key: str, value) -> list | None:
    name = encoder_key(key)
    return None if name is None else [(name, value)]


def check_resnet50(layout: dict, path) -> None:
    """``--backbone resnet50`` promises ResNet-50: any other depth or width is refused, not converted."""
    if layout != RESNET50:
        raise ConversionError(f"{path}: --backbone resnet50, but the encoder is {layout} (ResNet-50 is {RESNET50}); "
                              f"pass --backbone resnet to convert another mmseg bottleneck ResNet")


__all__ = ["encoder_key", "resnet_pairs", "resnet_layout", "check_resnet50", "RESNET50"]
