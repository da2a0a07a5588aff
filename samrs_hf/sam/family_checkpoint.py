"""Reference-package checkpoints of the other SAM generations -> their transformers models.

HQ-SAM (``segment-anything-hq``, ``sam_hq_vit_*.pth``) is SAM's layout plus the HQ decoder's
tensors, so SAM's converter (:mod:`.checkpoint`) does the shared part and the renames below the rest;
the config comes from the tensor shapes. SAM 2.1 (``sam2``, ``sam2.1_hiera_*.pt``) is converted by
:mod:`.sam2_checkpoint`, EdgeTAM (``edgetam.pt``) by :mod:`.edgetam_checkpoint`, SAM 3 (``sam3``, ``sam3.pt``)
by :mod:`.sam3_checkpoint`. Every form is read through ``common.safe_load`` by the caller.
"""

from __future__ import annotations

import re
from typing import Any

from .checkpoint import convert_sam_checkpoint
from .families import Family

# segment_anything_hq.modeling.mask_decoder_hq.MaskDecoderHQ -> transformers SamHQMaskDecoder
_HQ_RULES: tuple[tuple[str, str], ...] = (
    (r"^mask_decoder\.hf_token\.", "mask_decoder.hq_token."),
    (r"^mask_decoder\.compress_vit_feat\.0\.", "mask_decoder.compress_vit_conv1."),
    (r"^mask_decoder\.compress_vit_feat\.1\.", "mask_decoder.compress_vit_norm."),
    (r"^mask_decoder\.compress_vit_feat\.3\.", "mask_decoder.compress_vit_conv2."),
    (r"^mask_decoder\.embedding_encoder\.0\.", "mask_decoder.encoder_conv1."),
    (r"^mask_decoder\.embedding_encoder\.1\.", "mask_decoder.encoder_norm."),
    (r"^mask_decoder\.embedding_encoder\.3\.", "mask_decoder.encoder_conv2."),
    (r"^mask_decoder\.embedding_maskfeature\.0\.", "mask_decoder.mask_conv1."),
    (r"^mask_decoder\.embedding_maskfeature\.1\.", "mask_decoder.mask_norm."),
    (r"^mask_decoder\.embedding_maskfeature\.3\.", "mask_decoder.mask_conv2."),
)
_HQ_MLP = re.compile(r"^mask_decoder\.hf_mlp\.layers\.(\d+)\.(.*)$")


def convert_sam_hq_checkpoint(state_dict: dict) -> tuple[Any, dict]:
    """segment-anything-hq state dict -> (SamHQConfig, SamHQModel state dict)."""
    from transformers import SamHQConfig

    if isinstance(state_dict.get("model"), dict):
        state_dict = state_dict["model"]
    sam_config, converted = convert_sam_checkpoint(state_dict)
    depth = 1 + max(int(m.group(1)) for k in converted if (m := _HQ_MLP.match(k)))
    out = {}
    for key, value in converted.items():
        match = _HQ_MLP.match(key)
        if match:
            idx, rest = int(match.group(1)), match.group(2)
            sub = "proj_in" if idx == 0 else "proj_out" if idx == depth - 1 else f"layers.{idx - 1}"
            key = f"mask_decoder.hq_mask_mlp.{sub}.{rest}"
        for pattern, repl in _HQ_RULES:
            key = re.sub(pattern, repl, key)
        out[key] = value
    cfg = sam_config.to_dict()
    vit_dim = int(state_dict["mask_decoder.compress_vit_feat.0.weight"].shape[0])
    config = SamHQConfig(vision_config=cfg["vision_config"], prompt_encoder_config=cfg["prompt_encoder_config"],
                         mask_decoder_config={**cfg["mask_decoder_config"], "vit_dim": vit_dim})
    return config, out


def convert_family_checkpoint(state_dict: dict, family: Family) -> tuple[Any, dict]:
    """(config, transformers state dict) of a reference checkpoint of ``family``."""
    if family.name == "sam_hq":
        return convert_sam_hq_checkpoint(state_dict)
    if family.name == "sam2":
        from .sam2_checkpoint import convert_sam2_checkpoint

        return convert_sam2_checkpoint(state_dict)
    if family.name == "edgetam":
        from .edgetam_checkpoint import convert_edgetam_checkpoint

        return convert_edgetam_checkpoint(state_dict)
    if family.name == "sam3":
        from .sam3_checkpoint import convert_sam3_checkpoint, log_dropped

        config, converted, dropped = convert_sam3_checkpoint(state_dict)
        log_dropped(dropped)
        return config, converted
    raise ValueError(f"{family.title} reference checkpoints are not converted here; pass its Hub id or a "
                     f"save_pretrained folder ({', '.join(family.checkpoints)})")


def family_model_from_checkpoint(state_dict: dict, family: Family, attn: str = "sdpa"):
    """The family's transformers model with a reference checkpoint's weights (assigned, no random
    init). ValueError when tensors are missing, left over or of the wrong shape."""
    from transformers.initialization import no_init_weights

    config, converted = convert_family_checkpoint(state_dict, family)
    config._attn_implementation = attn
    # Parameters allocated but not initialised (the checkpoint's are assigned over them), not on the
    # meta device: tables computed in __init__ as non-persistent buffers (SAM 3's RoPE) must be real.
    with no_init_weights():
        model = family.model_cls()(config)
    try:
        missing, unexpected = model.load_state_dict(converted, strict=False, assign=True)
    except RuntimeError as exc:
        detail = " ".join(line.strip() for line in str(exc).splitlines()[1:3])
        raise ValueError(f"checkpoint does not match the inferred {family.title} layout ({detail})") from None
    meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if missing or unexpected or meta:
        raise ValueError(f"checkpoint does not match the inferred {family.title} layout (missing "
                         f"{(missing or meta)[:5]}, unexpected {unexpected[:5]})")
    return model.eval()
