"""AdamW parameter groups per backbone family, as the SAMRS authors' pre-training code builds them, read
from the model's own parameter names (``backbone.*``, ``decode_head.*``, ``heads.*``).

- ``plain`` (ResNet): one group, one weight decay for every parameter.
- ``no-decay-norms`` (Swin, ViTAEv2, ConvNeXt): mmengine's ``custom_keys`` with ``decay_mult=0`` for
  ``absolute_pos_embed``, ``relative_position_bias_table`` and ``norm``, matched as substrings of the
  backbone's names (transformers calls Swin's absolute embedding ``position_embeddings``). The decoder's
  BatchNorm keeps its decay: in the authors' mmseg decoder it is named ``bn``, which ``norm`` does not match.
- ``layer-decay`` (ViT, ViT-Adapter, InternImage): BEiT's layer-wise lr decay. Layer 0 is the patch and
  position embeddings, block i is layer i + 1, everything else (decoder, heads) layer L + 1; a group's lr is
  ``lr x rate ** (L + 1 - layer)``. 1-D tensors, biases and position embeddings get no weight decay.
"""

from __future__ import annotations

import re

from torch import nn

# family -> layer-wise lr decay rate of the authors' code (ViT-B 0.9 over its 12 blocks)
LAYER_DECAY = {"vit": 0.9, "vitdet": 0.9, "vit-adapter": 0.95, "internimage": 1.0}
NORM_RULE_FAMILIES = ("swin", "vitaev2", "convnext")
NO_DECAY_NAMES = ("absolute_pos_embed", "position_embeddings", "relative_position_bias_table", "norm")
POSITION_NAMES = ("pos_embed", "position_embeddings")
RULES = ("plain", "no-decay-norms", "layer-decay")

_BLOCK = re.compile(r"^backbone\.(?:encoder\.layers?|blocks)\.(\d+)\.")
_EMBEDDINGS = ("backbone.embeddings.", "backbone.patch_embed", "backbone.pos_embed", "backbone.cls_token")


def rule_of(family: str) -> str:
    """Which of :data:`RULES` a backbone family (a ``TABLE8`` key) trains with."""
    if family in LAYER_DECAY:
        return "layer-decay"
    return "no-decay-norms" if family in NORM_RULE_FAMILIES else "plain"


def layer_id(name: str, num_layers: int) -> int:
    """BEiT's layer of a parameter: 0 embeddings, i + 1 for block i, ``num_layers + 1`` for the rest."""
    if name.startswith(_EMBEDDINGS):
        return 0
    match = _BLOCK.match(name)
    return int(match.group(1)) + 1 if match else num_layers + 1


def _num_layers(model: nn.Module) -> int:
    config = getattr(getattr(model, "config", None), "backbone_config", None)
    layers = getattr(config, "num_hidden_layers", None)
    if not layers:
        raise ValueError("layer-wise lr decay needs the backbone's num_hidden_layers in its config")
    return int(layers)


def _placement(name: str, param, rule: str, weight_decay: float, rate: float, layers: int):
    """(group name, weight decay, lr scale) of one parameter."""
    if rule == "plain":
        return "all", weight_decay, 1.0
    if rule == "no-decay-norms":
        no_decay = name.startswith("backbone.") and any(k in name for k in NO_DECAY_NAMES)
        return ("no_decay", 0.0, 1.0) if no_decay else ("decay", weight_decay, 1.0)
    no_decay = param.ndim == 1 or name.endswith(".bias") or any(k in name for k in POSITION_NAMES)
    layer = layer_id(name, layers)
    kind, wd = ("no_decay", 0.0) if no_decay else ("decay", weight_decay)
    return f"layer_{layer}_{kind}", wd, rate ** (layers + 1 - layer)


def param_groups(model: nn.Module, family: str, lr: float, weight_decay: float,
                 layer_decay: float | None = None) -> tuple[list[dict], dict]:
    """AdamW groups (``params``, ``lr``, ``weight_decay``, ``name``, ``lr_scale``) for ``model`` and a
    JSON summary of them (rule, decay rate, the names without weight decay, each group's size) for the run
    config and the model card. ``layer_decay`` None: the family's rate; only layer-decay families take one."""
    rule = rule_of(family)
    if layer_decay is not None and rule != "layer-decay":
        raise ValueError(f"--layer-decay applies to ViT-like backbones ({', '.join(LAYER_DECAY)}), not to a "
                         f"{family} backbone")
    rate = LAYER_DECAY.get(family, 1.0) if layer_decay is None else layer_decay
    layers = _num_layers(model) if rule == "layer-decay" else 0
    groups: dict[str, dict] = {}
    no_decay = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key, wd, scale = _placement(name, param, rule, weight_decay, rate, layers)
        group = groups.setdefault(key, {"params": [], "lr": lr * scale, "weight_decay": wd, "name": key,
                                        "lr_scale": scale})
        group["params"].append(param)
        if key.endswith("no_decay"):
            no_decay.append(name)
    summary = {"rule": rule, "family": family, "weight_decay": weight_decay,
               "layer_decay": rate if rule == "layer-decay" else None, "no_decay": no_decay,
               "groups": [{"name": g["name"], "lr_scale": g["lr_scale"], "weight_decay": g["weight_decay"],
                           "params": len(g["params"])} for g in groups.values()]}
    return list(groups.values()), summary
