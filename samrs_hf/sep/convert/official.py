"""What an official SAMRS SEP ``.pth`` holds, read through the project's safe loader.

``main_pretrain.py`` of ViTAE-Transformer/SAMRS saves ``{'epoch', 'iteration', 'state_dict', 'optimizer',
'scheduler', 'loss_pretrain': <numpy array>}``: ``state_dict`` is the whole ``SemsegPretrnFramework``
(``encoder.`` / ``decoder.`` / ``semseghead_{1,2,3}.`` keys), or, in the ``..._encoder.pth`` twin, the
encoder's own keys. A run without ``torch.distributed`` wraps every part in ``DataParallel``, which puts a
``module`` segment into the keys; both spellings are read. Nothing is unpickled but plain data, tensors and
numpy arrays of the file's own bytes (:func:`samrs_hf.common.safe_load.load_checkpoint`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ...common.errors import SamrsError
from ...common.safe_load import load_checkpoint

FULL, ENCODER = "full", "encoder"
"""The two forms: the whole pre-training model, or its ``..._encoder.pth`` backbone."""

TOP_LEVEL_DROPPED = {
    "epoch": "training progress (recorded in the model card)",
    "iteration": "training progress (recorded in the model card)",
    "optimizer": "optimizer state: only needed to resume the authors' training run",
    "scheduler": "learning-rate scheduler state: only needed to resume the authors' training run",
    "loss_pretrain": "the pre-training loss curve (numpy array): a log, not a weight",
}
"""Entries of the checkpoint dict besides ``state_dict`` that a converted model deliberately leaves out."""


class ConversionError(SamrsError, ValueError):
    """An official checkpoint that cannot be converted exactly: unknown or missing keys, another
    architecture, or a backbone that transformers does not host exactly."""


@dataclass
class OfficialCheckpoint:
    """The state dict of an official file, its form and what was left out (key -> reason)."""

    path: Path
    sha256: str
    form: str
    state_dict: dict
    dropped: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _strip_module(key: str) -> str:
    """``module.encoder.conv1.weight`` / ``encoder.module.conv1.weight`` -> ``encoder.conv1.weight``
    (no official key has a segment named exactly ``module``)."""
    return ".".join(part for part in key.split(".") if part != "module")


def _is_tensor_dict(value) -> bool:
    import torch

    return isinstance(value, dict) and bool(value) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _state_dict_of(path: Path, loaded) -> tuple[dict, dict, dict]:
    """(state_dict, dropped top-level entries with reasons, epoch/iteration) of a loaded file."""
    if _is_tensor_dict(loaded):  # a bare state dict
        return loaded, {}, {}
    if not isinstance(loaded, dict) or not _is_tensor_dict(loaded.get("state_dict")):
        what = sorted(loaded) if isinstance(loaded, dict) else type(loaded).__name__
        raise ConversionError(f"{path}: not an SEP checkpoint: expected a dict with a 'state_dict' of tensors "
                              f"(main_pretrain.py's form) or a bare state dict, found {what}")
    unknown = sorted(set(loaded) - set(TOP_LEVEL_DROPPED) - {"state_dict"})
    if unknown:
        raise ConversionError(f"{path}: unknown top-level entries {unknown}; main_pretrain.py writes only "
                              f"'state_dict' and {sorted(TOP_LEVEL_DROPPED)}")
    dropped = {k: TOP_LEVEL_DROPPED[k] for k in loaded if k != "state_dict"}
    meta = {k: loaded[k] for k in ("epoch", "iteration") if isinstance(loaded.get(k), int)}
    return loaded["state_dict"], dropped, meta


def read_official(path) -> OfficialCheckpoint:
    """Read an official SEP checkpoint (full or ``..._encoder.pth``) through the safe loader.

    Keys lose any ``module`` segment; a file whose keys collide once it is gone is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such checkpoint file")
    raw, dropped, meta = _state_dict_of(path, load_checkpoint(path))
    state_dict = {}
    for key, value in raw.items():
        name = _strip_module(key)
        if name in state_dict:
            raise ConversionError(f"{path}: keys {key!r} and another both name {name!r} once 'module.' is removed")
        state_dict[name] = value
    form = FULL if any(k.startswith(("encoder.", "decoder.", "semseghead_")) for k in state_dict) else ENCODER
    return OfficialCheckpoint(path, sha256_of(path), form, state_dict, dropped, meta)


__all__ = ["ConversionError", "OfficialCheckpoint", "read_official", "sha256_of", "FULL", "ENCODER",
           "TOP_LEVEL_DROPPED"]
