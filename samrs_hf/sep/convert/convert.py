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
from ..configuration_sep import SEPConfig
from ..processing import image_processor
from .card import INITS, converted_card
from .families import Family, family_of
from .official import FULL, ConversionError, OfficialCheckpoint, read_official
from .reference import official_logits
from .support import check_supported
from .upernet import decoder_key, decoder_layout, map_keys

logger = logging.getLogger(__name__)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
"""``datasets.py``: ``ToTensor`` (/255) then ``Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)``."""
CHECK_SIZES = (224, 96)
"""Sides of the seeded check inputs, divisible by 32 so the official x4 upsample lands on the input size: the
pre-training crop (Swin's stage 4 then equals its window) and a smaller one (stage 4 padded to the window)."""
TOLERANCE = 1e-4


@dataclass
class ConversionResult:
    """What was written where, from which file (SHA-256, number of tensors), what was left out or added (key ->
    reason) and the largest difference from the official forward per subset (or stage, for an encoder)."""

    out_dir: Path
    form: str
    sha256: str
    tensors: int
    dropped: dict
    max_diff: dict = field(default_factory=dict)
    added: dict = field(default_factory=dict)
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


def _max_diff(ours, expected, diffs: dict, name) -> None:
    diffs[name] = max(diffs.get(name, 0.0), float((ours - expected).abs().max()))


def _check_inputs():
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(1, 3, size, size, generator=gen) for size in CHECK_SIZES]


def _checked(diffs: dict, path) -> dict:
    worst = max(diffs.values())
    if not worst <= TOLERANCE:
        raise ConversionError(f"{path}: the converted model differs from the official forward by {diffs} "
                              f"(tolerance {TOLERANCE}); nothing was written")
    return diffs


def _head_labels(heads: dict) -> dict:
    return {s: list(get_class_table(s).names) for s, n in heads.items() if len(get_class_table(s).names) == n}


@dataclass
class _Encoder:
    """The encoder part of a checkpoint, mapped: what both forms share."""

    family: Family
    layout: dict
    config: object
    mapped: dict
    left_out: dict
    state_dict: dict  # the whole official state dict, float32


def _encoder(ck: OfficialCheckpoint, backbone: str) -> _Encoder:
    family = family_of(backbone)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in ck.state_dict.items()}
    encoder = ({k.removeprefix("encoder."): v for k, v in sd.items() if k.startswith("encoder.")}
               if ck.form == FULL else sd)
    layout = family.layout(encoder, ck.path)
    if family.named[backbone] is not None:
        family.named[backbone](layout, ck.path)
    mapped, left_out = family.map_encoder(encoder, ck.path)
    return _Encoder(family, layout, family.backbone_config(layout), mapped, left_out, sd)


def _with_extras(enc: _Encoder, model_sd: dict, prefix: str) -> dict:
    """The mapped weights plus the documented fills of our keys that have no official counterpart."""
    extras = {prefix + k: torch.full_like(model_sd[prefix + k], v) for k, v in enc.family.extras.items()}
    return {**{prefix + k: v for k, v in enc.mapped.items()}, **extras}


def convert_full(ck: OfficialCheckpoint, backbone: str):
    """(SEP model, max |difference| per subset, left-out keys) of a full official checkpoint."""
    from ..modeling_sep import SEPForSemanticSegmentation

    enc = _encoder(ck, backbone)
    decoder_sd = {k: v for k, v in enc.state_dict.items() if not k.startswith("encoder.")}
    decoder = decoder_layout(decoder_sd, ck.path)
    config = SEPConfig(backbone_config=enc.config, head_labels=_head_labels(decoder["heads"]),
                       image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, **decoder)
    model = SEPForSemanticSegmentation(config).eval()
    weights = {**_with_extras(enc, model.state_dict(), "backbone."),
               **map_keys(decoder_sd, decoder_key, ck.path, "UperNet decoder and heads")}
    strict_load(model, weights, ck.path)
    diffs = {}
    for x in _check_inputs():
        expected = official_logits(x, enc.state_dict, encoder=enc.family.reference)
        with torch.no_grad():
            for subset, ref in expected.items():
                _max_diff(model(x, subset=subset).logits, ref, diffs, subset)
        _checked(diffs, ck.path)  # each size at once: the first that differs stops the conversion
    return model, diffs, enc


def convert_encoder(ck: OfficialCheckpoint, backbone: str):
    """(transformers backbone, max |difference| per stage, left-out keys) of an ``..._encoder.pth``."""
    from transformers import AutoBackbone

    enc = _encoder(ck, backbone)
    model = AutoBackbone.from_config(enc.config).eval()
    strict_load(model, _with_extras(enc, model.state_dict(), ""), ck.path)
    diffs = {}
    for x in _check_inputs():
        with torch.no_grad():
            for i, (ours, ref) in enumerate(zip(model(x).feature_maps, enc.family.reference(x, enc.state_dict, ""))):
                _max_diff(ours, ref, diffs, f"stage{i + 1}")
        _checked(diffs, ck.path)
    return model, diffs, enc


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConversionError(f"--to {out_dir}: exists and is not an empty folder; pass a new folder")


def _named(backbone: str, enc: _Encoder) -> str:
    """The exact name (``resnet50``, ``swin-t``) of a ``--backbone resnet|swin`` file that has its sizes."""
    for name, check in enc.family.named.items():
        try:
            if check is not None:
                check(enc.layout, "")
                return name
        except ConversionError:
            continue
    return backbone


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
    model, diffs, enc = (convert_full if ck.form == FULL else convert_encoder)(ck, backbone)
    dropped = {**ck.dropped, **enc.left_out}
    added = {k: enc.family.extras_reason for k in enc.family.extras}
    model.save_pretrained(out_dir)
    if ck.form != FULL:  # SEP models write their processor themselves
        image_processor(IMAGENET_MEAN, IMAGENET_STD).save_pretrained(out_dir)
    card = converted_card(source=ck.path, sha256=ck.sha256, form=ck.form, backbone=_named(backbone, enc),
                          init=init, meta=ck.meta, dropped=dropped, added=added, max_diff=diffs,
                          heads=dict(model.config.heads) if ck.form == FULL else None)
    atomic_write(out_dir / "README.md", card.encode())
    result = ConversionResult(out_dir, ck.form, ck.sha256, len(ck.state_dict), dropped, diffs, added)
    if push_to_hub:
        from ..card import push_folder

        push_folder(out_dir, push_to_hub)
        result.pushed_to = push_to_hub
    logger.info("converted %s (%s form, %d tensors) to %s", ck.path, ck.form, result.tensors, out_dir)
    return result


__all__ = ["convert_sep_checkpoint", "convert_full", "convert_encoder", "strict_load", "ConversionResult",
           "TOLERANCE", "IMAGENET_MEAN", "IMAGENET_STD"]
