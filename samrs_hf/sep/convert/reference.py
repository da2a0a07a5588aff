"""The official SEP ResNet + UperNet forward, restated in plain ``torch.nn.functional`` on the official keys.

The authors' code does not import without mmcv's compiled ops and torchvision, so conversions are checked
against this restatement instead, written from ``resnet_mmseg_10.py`` (7x7 stem, max-pool, bottlenecks with
the stride on the 3x3 conv and a conv + BN shortcut in each stage's first block), ``upernet_mmseg_30.py``
(``ConvModule`` = conv without bias, BN, ReLU; PPM scales 1,2,3,6; bilinear resizes with
``align_corners=False``; no ``conv_seg``; the ``fpn_bottleneck`` output upsampled x4) and ``models.py``
(``Dropout2d`` then a 1x1 conv per subset). Evaluation mode: BatchNorm uses its running statistics
(eps 1e-5), dropout is off. It shares no code with the transformers modules it checks.

:func:`official_shapes` / :func:`random_official_state_dict` give that key layout with seeded weights, so
the converter can be checked without a downloaded checkpoint.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .reference_swin import relative_position_index
from .upernet import HEAD_SUBSETS, POOL_SCALES

BN_EPS = 1e-5
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(x, sd, prefix):
    return F.batch_norm(x, sd[prefix + "running_mean"], sd[prefix + "running_var"], sd[prefix + "weight"],
                        sd[prefix + "bias"], training=False, momentum=0.0, eps=BN_EPS)


def _bottleneck(x, sd, prefix, stride):
    out = F.relu(_bn(F.conv2d(x, sd[prefix + "conv1.weight"]), sd, prefix + "bn1."))
    out = F.relu(_bn(F.conv2d(out, sd[prefix + "conv2.weight"], stride=stride, padding=1), sd, prefix + "bn2."))
    out = _bn(F.conv2d(out, sd[prefix + "conv3.weight"]), sd, prefix + "bn3.")
    identity = x
    if prefix + "downsample.0.weight" in sd:
        identity = _bn(F.conv2d(x, sd[prefix + "downsample.0.weight"], stride=stride), sd, prefix + "downsample.1.")
    return F.relu(out + identity)


def official_encoder(x, sd, prefix="encoder."):
    """The four stage outputs (strides 4, 8, 16, 32) of the official ResNet."""
    x = F.relu(_bn(F.conv2d(x, sd[prefix + "conv1.weight"], stride=2, padding=3), sd, prefix + "bn1."))
    x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
    outs = []
    for stage in range(1, 5):
        block = 0
        while f"{prefix}layer{stage}.{block}.conv1.weight" in sd:
            stride = 2 if stage > 1 and block == 0 else 1
            x = _bottleneck(x, sd, f"{prefix}layer{stage}.{block}.", stride)
            block += 1
        outs.append(x)
    return outs


def _conv_module(x, sd, prefix, padding):
    return F.relu(_bn(F.conv2d(x, sd[prefix + "conv.weight"], padding=padding), sd, prefix + "bn."))


def _resize(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def official_decoder(feats, sd, prefix="decoder."):
    """The trimmed UPerHead: fused features at stride 4, upsampled x4 (stride 1 for inputs divisible by 32)."""
    top = feats[-1]
    pooled = [_resize(_conv_module(F.adaptive_avg_pool2d(top, s), sd, f"{prefix}psp_modules.{i}.1.", 0),
                      top.shape[2:]) for i, s in enumerate(POOL_SCALES)]
    laterals = [_conv_module(f, sd, f"{prefix}lateral_convs.{i}.", 0) for i, f in enumerate(feats[:-1])]
    laterals.append(_conv_module(torch.cat([top, *pooled], dim=1), sd, prefix + "bottleneck.", 1))
    for i in range(len(laterals) - 1, 0, -1):
        laterals[i - 1] = laterals[i - 1] + _resize(laterals[i], laterals[i - 1].shape[2:])
    outs = [_conv_module(laterals[i], sd, f"{prefix}fpn_convs.{i}.", 1) for i in range(len(laterals) - 1)]
    outs.append(laterals[-1])
    outs = [outs[0]] + [_resize(o, outs[0].shape[2:]) for o in outs[1:]]
    fused = _conv_module(torch.cat(outs, dim=1), sd, prefix + "fpn_bottleneck.", 1)
    return F.interpolate(fused, scale_factor=4, mode="bilinear")


@torch.no_grad()
def official_logits(pixel_values, sd, encoder=None) -> dict:
    """``{subset: logits}`` of the official full model (eval mode) for a full-model state dict; ``encoder``:
    the official encoder's forward (default the ResNet's, :func:`official_encoder`)."""
    fused = official_decoder((encoder or official_encoder)(pixel_values, sd, "encoder."), sd)
    return {subset: F.conv2d(fused, sd[f"{head}.1.weight"], sd[f"{head}.1.bias"])
            for head, subset in HEAD_SUBSETS.items()}


def _bn_shapes(prefix, n):
    return {f"{prefix}{k}": (() if k == "num_batches_tracked" else (n,)) for k in BN_KEYS}


def official_encoder_shapes(stem=64, hidden_sizes=(256, 512, 1024, 2048), depths=(3, 4, 6, 3)) -> dict:
    """``{key: shape}`` of ``ResNet(depth)`` of ``resnet_mmseg_10.py`` (encoder keys, no prefix)."""
    shapes = {"conv1.weight": (stem, 3, 7, 7), **_bn_shapes("bn1.", stem)}
    cin = stem
    for stage, (out, depth) in enumerate(zip(hidden_sizes, depths), start=1):
        mid = out // 4
        for block in range(depth):
            p = f"layer{stage}.{block}."
            shapes.update({p + "conv1.weight": (mid, cin, 1, 1), **_bn_shapes(p + "bn1.", mid),
                           p + "conv2.weight": (mid, mid, 3, 3), **_bn_shapes(p + "bn2.", mid),
                           p + "conv3.weight": (out, mid, 1, 1), **_bn_shapes(p + "bn3.", out)})
            if block == 0:
                shapes.update({p + "downsample.0.weight": (out, cin, 1, 1), **_bn_shapes(p + "downsample.1.", out)})
            cin = out
    return shapes


def official_shapes(stem=64, hidden_sizes=(256, 512, 1024, 2048), depths=(3, 4, 6, 3), channels=512,
                    heads=(18, 20, 37)) -> dict:
    """``{key: shape}`` of ``SemsegPretrnFramework`` with a ResNet encoder and UperNet (396 keys for ResNet-50)."""
    return official_model_shapes(official_encoder_shapes(stem, hidden_sizes, depths), hidden_sizes, channels, heads)


def official_model_shapes(encoder_shapes: dict, hidden_sizes, channels, heads=(18, 20, 37)) -> dict:
    """``{key: shape}`` of ``SemsegPretrnFramework``: an encoder's shapes (stage widths ``hidden_sizes``),
    the trimmed UPerHead with ``channels`` and the three heads."""
    shapes = {"encoder." + k: v for k, v in encoder_shapes.items()}

    def conv_module(name, cin, k):
        shapes.update({f"decoder.{name}.conv.weight": (channels, cin, k, k), **_bn_shapes(f"decoder.{name}.bn.",
                                                                                        channels)})

    for i in range(len(POOL_SCALES)):
        conv_module(f"psp_modules.{i}.1", hidden_sizes[-1], 1)
    conv_module("bottleneck", hidden_sizes[-1] + len(POOL_SCALES) * channels, 3)
    for i, cin in enumerate(hidden_sizes[:-1]):
        conv_module(f"lateral_convs.{i}", cin, 1)
    for i in range(len(hidden_sizes) - 1):
        conv_module(f"fpn_convs.{i}", channels, 3)
    conv_module("fpn_bottleneck", len(hidden_sizes) * channels, 3)
    for head, n in zip(HEAD_SUBSETS, heads):
        shapes.update({f"{head}.1.weight": (n, channels, 1, 1), f"{head}.1.bias": (n,)})
    return shapes


def random_official_state_dict(shapes: dict, seed: int = 0) -> dict:
    """Seeded weights for ``shapes`` that keep activations near unit scale (random BN statistics included)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in shapes.items():
        if key.endswith("relative_position_index"):  # a fixed buffer, not a weight
            out[key] = relative_position_index(int(round(shape[0] ** 0.5)))
        elif key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(int(torch.randint(1, 10**5, (), generator=gen)))
        elif key.endswith("running_var"):
            out[key] = 0.5 + torch.rand(shape, generator=gen)
        elif key.endswith(("running_mean", "bias")):
            out[key] = 0.1 * torch.randn(shape, generator=gen)
        elif len(shape) == 1:  # BatchNorm / LayerNorm weight
            out[key] = 0.5 + 0.5 * torch.rand(shape, generator=gen)
        else:  # conv, linear, relative position bias table
            fan_in = int(torch.tensor(shape[1:]).prod())
            out[key] = torch.randn(shape, generator=gen) / fan_in ** 0.5
    return out


__all__ = ["official_encoder", "official_decoder", "official_logits", "official_shapes", "official_encoder_shapes",
           "official_model_shapes",
           "random_official_state_dict"]
