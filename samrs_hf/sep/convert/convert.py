"""``samrs convert-sep``: an official SEP ``.pth`` -> an SEP folder (or, from ``..._encoder.pth``, a
transformers backbone folder), strictly mapped and checked against the official forward before it is written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ...common.files import atomic_write
from ...sources.classes import get_class_table
from ..configuration_sep import HIERARCHICAL_OUT_FEATURES, SEPConfig
from ..processing import image_processor
from .card import INITS, converted_card
from .official import ENCODER, FULL, ConversionError, OfficialCheckpoint, read_official
from .reference import official_encoder, official_logits
from .resnet_upernet import RESNET50, check_resnet50, decoder_layout, encoder_key, map_keys, resnet_layout, sep_key
from .support import check_supported

logger = logging.getLogger(__name__)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
"""``datasets.py``: ``ToTensor`` (/255) then ``Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)``."""
CHECK_SIZE = 96
"""Side of the seeded check input: divisible by 32, so the official x4 upsample lands on the input size."""
TOLERANCE = 1e-4


@dataclass
class ConversionResult:
    out_dir: Path
    form: str
    sha256: str
    tensors: int
    dropped: dict
    max_diff: dict = field(default_factory=dict)
    pushed_to: str | None = None


def strict_load(model: torch.nn.Module, mapped: dict, path) -> None:
    """Fill every parameter and buffer of ``model`` from ``mapped``, or raise listing what does not fit."""
    ours = model.state_dict()
    missing = sorted(set(ours) - set(mapped))
    unexpected = sorted(set(mapped) - set(ours))
    shapes = [f"{k}: file {tuple(v.shape)} vs model {tuple(ours[k].shape)}" for k, v in mapped.items()
              if k in ours and tuple(v.shape) != tuple(ours[k].shape)]
    if missing or unexpected or shapes:
        raise ConversionError(f"{path}: the weights do not fill the model exactly: missing {missing[:20]}, "
                              f"unexpected {unexpected[:20]}, shape mismatches {shapes[:20]}")
    model.load_state_dict(mapped, strict=True)


def _resnet_config(layout: dict):
    from transformers import ResNetConfig

    return ResNetConfig(**layout, layer_type="bottleneck", hidden_act="relu", downsample_in_first_stage=False,
                        downsample_in_bottleneck=False, out_features=list(HIERARCHICAL_OUT_FEATURES))


def _check_input() -> torch.Tensor:
    return torch.randn(1, 3, CHECK_SIZE, CHECK_SIZE, generator=torch.Generator().manual_seed(0))


def _checked(diffs: dict, path) -> dict:
    worst = max(diffs.values())
    if not worst <= TOLERANCE:
        raise ConversionError(f"{path}: the converted model differs from the official forward by {diffs} "
                              f"(tolerance {TOLERANCE}); nothing was written")
    return diffs


def _head_labels(heads: dict) -> dict:
    return {s: list(get_class_table(s).names) for s, n in heads.items() if len(get_class_table(s).names) == n}


def _floats(state_dict: dict) -> dict:
    return {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}


def convert_full(ck: OfficialCheckpoint, backbone: str):
    """(SEP model, max |difference| per subset) of a full official checkpoint."""
    from ..modeling_sep import SEPForSemanticSegmentation

    sd = _floats(ck.state_dict)
    layout = resnet_layout({k.removeprefix("encoder."): v for k, v in sd.items() if k.startswith("encoder.")},
                           ck.path)
    if backbone == "resnet50":
        check_resnet50(layout, ck.path)
    decoder = decoder_layout(sd, ck.path)
    config = SEPConfig(backbone_config=_resnet_config(layout), head_labels=_head_labels(decoder["heads"]),
                       image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, **decoder)
    model = SEPForSemanticSegmentation(config).eval()
    strict_load(model, map_keys(sd, sep_key, ck.path), ck.path)
    x = _check_input()
    expected = official_logits(x, sd)
    with torch.no_grad():
        diffs = {s: float((model(x, subset=s).logits - ref).abs().max()) for s, ref in expected.items()}
    return model, _checked(diffs, ck.path)


def convert_encoder(ck: OfficialCheckpoint, backbone: str):
    """(transformers ResNetBackbone, max |difference| per stage) of an ``..._encoder.pth``."""
    from transformers import ResNetBackbone

    sd = _floats(ck.state_dict)
    layout = resnet_layout(sd, ck.path)
    if backbone == "resnet50":
        check_resnet50(layout, ck.path)
    model = ResNetBackbone(_resnet_config(layout)).eval()
    strict_load(model, map_keys(sd, encoder_key, ck.path), ck.path)
    x = _check_input()
    with torch.no_grad():
        ours = model(x).feature_maps
        expected = official_encoder(x, sd, prefix="")
    diffs = {f"stage{i + 1}": float((a - b).abs().max()) for i, (a, b) in enumerate(zip(ours, expected))}
    return model, _checked(diffs, ck.path)


def _named(model, backbone: str) -> str:
    """``resnet50`` when a ``--backbone resnet`` file turns out to be ResNet-50 (the card then has its scores)."""
    config = getattr(model.config, "backbone_config", None) or model.config
    layout = {k: getattr(config, k) for k in RESNET50}
    return "resnet50" if layout == RESNET50 else backbone


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConversionError(f"--to {out_dir}: exists and is not an empty folder; pass a new folder")


def convert_sep_checkpoint(path, backbone: str, out_dir, *, init: str | None = None,
                           push_to_hub: str | None = None) -> ConversionResult:
    """Convert an official SEP checkpoint into ``out_dir``; see the module docstring.

    ``init``: ``imp``, ``rsp`` or ``none`` (what the authors started the encoder from; for the card only).
    Raises :class:`ConversionError` for anything that would not be an exact conversion; nothing is written then.
    """
    out_dir = Path(out_dir)
    if init is not None and init not in INITS:
        raise ConversionError(f"--init {init!r}: use one of {', '.join(INITS)}")
    _check_out_dir(out_dir)
    ck = read_official(path)
    check_supported(backbone, ck.state_dict, ck.path)
    model, diffs = (convert_full if ck.form == FULL else convert_encoder)(ck, backbone)
    model.save_pretrained(out_dir)
    if ck.form == ENCODER:  # SEP models write their processor themselves
        image_processor(IMAGENET_MEAN, IMAGENET_STD).save_pretrained(out_dir)
    card = converted_card(source=ck.path, sha256=ck.sha256, form=ck.form, backbone=_named(model, backbone), init=init,
                          meta=ck.meta, dropped=ck.dropped, max_diff=diffs,
                          heads=dict(model.config.heads) if ck.form == FULL else None)
    atomic_write(out_dir / "README.md", card.encode())
    result = ConversionResult(out_dir, ck.form, ck.sha256, len(ck.state_dict), dict(ck.dropped), diffs)
    if push_to_hub:
        from ..card import push_folder

        push_folder(out_dir, push_to_hub)
        result.pushed_to = push_to_hub
    logger.info("converted %s (%s form, %d tensors) to %s", ck.path, ck.form, result.tensors, out_dir)
    return result


__all__ = ["convert_sep_checkpoint", "convert_full", "convert_encoder", "strict_load", "ConversionResult",
           "TOLERANCE", "IMAGENET_MEAN", "IMAGENET_STD"]
