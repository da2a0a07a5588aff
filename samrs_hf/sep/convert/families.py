"""The backbone families an official SEP checkpoint can have, as the converter needs them: how to read the
config from the encoder's tensors, how its keys map, which official forward checks it, and which ``--backbone``
names promise which exact sizes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..configuration_sep import HIERARCHICAL_OUT_FEATURES
from .official import ConversionError
from .reference import official_encoder
from .reference_swin import official_swin_encoder
from .resnet import check_resnet50, resnet_layout, resnet_pairs
from .support import FAMILY
from .swin import EXTRAS, EXTRAS_REASON, INDEX_REASON, check_swin_t, swin_layout, swin_pairs


@dataclass(frozen=True)
class Family:
    name: str
    layout: Callable  # (encoder state dict, path) -> backbone config values
    pairs: Callable  # (official encoder key, tensor) -> [(our backbone key, tensor)], [] left out, None unknown
    reference: Callable  # (pixels, state dict, prefix) -> the official stage outputs
    named: dict  # --backbone name -> check(layout, path) of its exact sizes (None: any size)
    left_out: dict = field(default_factory=dict)  # suffix of deliberately left-out keys -> reason
    extras: dict = field(default_factory=dict)  # our backbone key with no official counterpart -> fill value
    extras_reason: str = ""

    def backbone_config(self, layout: dict):
        from transformers import ResNetConfig, SwinConfig

        out = list(HIERARCHICAL_OUT_FEATURES)
        if self.name == "resnet":
            return ResNetConfig(**layout, layer_type="bottleneck", hidden_act="relu", downsample_in_first_stage=False,
                                downsample_in_bottleneck=False, out_features=out)
        return SwinConfig(**layout, hidden_act="gelu", layer_norm_eps=1e-5, drop_path_rate=0.0, qkv_bias=True,
                          use_absolute_embeddings=False, out_features=out)

    def map_encoder(self, encoder: dict, path) -> tuple[dict, dict]:
        """(``{our backbone key: tensor}``, ``{left-out key pattern: reason}``); unknown keys are an error."""
        mapped, unknown, left_out = {}, [], {}
        for key, value in encoder.items():
            pairs = self.pairs(key, value)
            if pairs is None:
                unknown.append(key)
            elif not pairs:
                suffix = next(s for s in self.left_out if key.endswith(s))
                left_out[f"encoder.*.{suffix}"] = self.left_out[suffix]
            mapped.update(pairs or [])
        if unknown:
            raise ConversionError(f"{path}: {len(unknown)} encoder key(s) have no place in transformers' {self.name} "
                                  f"backbone: {unknown[:20]}")
        return mapped, left_out


FAMILIES = {
    "resnet": Family("resnet", resnet_layout, resnet_pairs, official_encoder,
                     {"resnet50": check_resnet50, "resnet": None}),
    "swin": Family("swin", swin_layout, swin_pairs, official_swin_encoder, {"swin-t": check_swin_t, "swin": None},
                   {"relative_position_index": INDEX_REASON}, EXTRAS, EXTRAS_REASON),
}


def family_of(backbone: str) -> Family:
    return FAMILIES[FAMILY[backbone]]


__all__ = ["Family", "FAMILIES", "family_of"]
