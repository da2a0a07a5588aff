"""``sam3`` checkpoints (the released ``sam3.pt``) -> transformers ``Sam3TrackerModel``.

``sam3.pt`` holds SAM 3's video model: ``detector.*`` (the image model: ViT trunk, its two FPN
necks, text encoder, DETR encoder/decoder, geometry encoder, segmentation head) and ``tracker.*``
(SAM 2-style prompt encoder and mask decoder plus the video memory). sam3's ``build_sam3_image_model``
loads ``detector.*`` into the image model and ``tracker.*`` into its interactive predictor; box and
point prompts then run the ViT trunk, the *second* neck (``sam2_convs``, the tracker's), the tracker's
prompt encoder and mask decoder, and ``no_mem_embed``. That is what ``Sam3TrackerModel`` holds, so
only those tensors are converted; :data:`DROPPED` says why each other group is left out.

The config comes from the tensor shapes: widths, depths and the MLP size from their matrices; the
window size, the global-attention blocks, the head width and the input size from the trunk's RoPE
tables (``attn.freqs_cis``: window**2 rows for a windowed block, (input/patch)**2 for a global one,
head_dim / 2 columns). A checkpoint without those tables gets the released model's (window 24,
head width 64, a global block every 8th and the last, 1008 input).
"""

from __future__ import annotations

import math
import re
from typing import Any

from .sam2_checkpoint import rename_sam2_tensors, sam_heads_config

TRUNK = "detector.backbone.vision_backbone.trunk."
TRACKER_NECK = "detector.backbone.vision_backbone.sam2_convs."
RELEASED = dict(window_size=24, head_dim=64, global_every=8, image_size=1008)
# prefix -> why SAM 3's box/point path never reads it
DROPPED: dict[str, str] = {
    "detector.backbone.vision_backbone.convs.": "the detector's own FPN neck (text/concept prompts)",
    "detector.backbone.language_backbone.": "the text encoder",
    "detector.backbone.": "other detector backbone state",
    "detector.": "the detector (DETR encoder/decoder, geometry encoder, segmentation head, scoring)",
    "tracker.maskmem_": "the video memory encoder",
    "tracker.transformer.": "the video memory attention",
    "tracker.obj_ptr": "video object pointers",
    "tracker.no_mem_pos_enc": "video memory",
    "tracker.no_obj_": "video memory",
    "tracker.mask_downsample.": "video memory",
    "tracker.": "other tracker state",
}
_NECK_PARTS = (("dconv_2x2_0.", "scale_layers.0."), ("dconv_2x2_1.", "scale_layers.2."),
               ("dconv_2x2.", "scale_layers.0."), ("conv_1x1.", "proj1."), ("conv_3x3.", "proj2."))


def _sam2_name(key: str) -> str:
    """A ``tracker.`` head tensor under sam2's name: sam3's two-way transformer keeps SAM 1's
    ``mlp.lin1`` / ``mlp.lin2`` where sam2 has ``mlp.layers.0`` / ``mlp.layers.1``."""
    key = key.removeprefix("tracker.")
    return re.sub(r"\.mlp\.lin([12])\.", lambda m: f".mlp.layers.{int(m.group(1)) - 1}.", key)


def _trunk_layout(sd: dict) -> dict[str, Any]:
    """Sam3ViTConfig fields from the trunk's tensors."""
    blocks = 1 + max(int(k[len(TRUNK) + 7:].split(".")[0]) for k in sd if k.startswith(TRUNK + "blocks."))
    hidden, _, patch, _ = sd[TRUNK + "patch_embed.proj.weight"].shape
    positions = int(sd[TRUNK + "pos_embed"].shape[1])
    side = math.isqrt(positions)
    side = side if side * side == positions else math.isqrt(positions - 1)  # a class-token row first
    rope = [sd.get(f"{TRUNK}blocks.{i}.attn.freqs_cis") for i in range(blocks)]
    if all(t is not None for t in rope):
        rows = [int(t.shape[0]) for t in rope]
        image_side, window_rows = max(rows), min(rows)
        global_blocks = [i for i, r in enumerate(rows) if r == image_side]
        window = math.isqrt(window_rows) if window_rows != image_side else RELEASED["window_size"]
        head_dim = 2 * int(rope[0].shape[1])
        image_size = math.isqrt(image_side) * int(patch)
    else:
        every = RELEASED["global_every"]
        global_blocks = sorted({i for i in range(blocks) if (i + 1) % every == 0} | {blocks - 1})
        window, head_dim, image_size = RELEASED["window_size"], RELEASED["head_dim"], RELEASED["image_size"]
    return dict(model_type="sam3_vit_model", hidden_size=int(hidden), num_hidden_layers=blocks,
                intermediate_size=int(sd[TRUNK + "blocks.0.mlp.fc1.weight"].shape[0]),
                num_attention_heads=max(1, int(hidden) // head_dim), image_size=image_size, patch_size=int(patch),
                window_size=window, global_attn_indexes=global_blocks, pretrain_image_size=side * int(patch),
                layer_norm_eps=1e-5)  # sam3's ViT: nn.LayerNorm(eps=1e-5)


def sam3_tracker_config(sd: dict):
    """Sam3TrackerConfig of the box/point path of a ``sam3.pt`` state dict. The trunk runs up to its
    last global block (the reference's output); the neck keeps the 4x, 2x and 1x levels (the 0.5x one
    is discarded by the reference, ``scalp=1``)."""
    from transformers import Sam3TrackerConfig

    needed = (TRUNK + "patch_embed.proj.weight", TRUNK + "pos_embed", TRUNK + "blocks.0.mlp.fc1.weight",
              TRACKER_NECK + "0.conv_1x1.weight", "tracker.sam_mask_decoder.iou_token.weight",
              "tracker.sam_prompt_encoder.mask_downscaling.3.weight", "tracker.no_mem_embed")
    absent = [k for k in needed if k not in sd]
    if absent:
        raise ValueError(f"not a SAM 3 checkpoint with the interactive tracker (sam3.pt): no {', '.join(absent[:3])}")
    vit = _trunk_layout(sd)
    vit["num_hidden_layers"] = vit["global_attn_indexes"][-1] + 1
    heads = {_sam2_name(k): v for k, v in sd.items() if k.startswith("tracker.sam_")}
    prompt_encoder, mask_decoder = sam_heads_config(heads)
    grid = vit["image_size"] // vit["patch_size"]
    prompt_encoder.update(image_size=vit["image_size"], patch_size=vit["patch_size"])
    return Sam3TrackerConfig(
        vision_config=dict(backbone_config=vit, fpn_hidden_size=int(sd[TRACKER_NECK + "0.conv_1x1.weight"].shape[0]),
                           scale_factors=[4.0, 2.0, 1.0], backbone_feature_sizes=[[grid * s] * 2 for s in (4, 2, 1)]),
        prompt_encoder_config=prompt_encoder, mask_decoder_config=mask_decoder)


def _trunk_tensor(key: str, value, out: dict, layers: int) -> bool:
    """Rename one trunk tensor into ``out``; False when the reference never reads it, ValueError for a
    tensor of no known role (an ``ln_post``, say, which the reference would apply)."""
    rest = key[len(TRUNK):]
    if rest == "pos_embed":
        side = math.isqrt(value.shape[1])  # a class-token row first where the count is no square
        value = value if side * side == value.shape[1] else value[:, 1:]
        out["vision_encoder.backbone.embeddings.position_embeddings"] = value
        return True
    if rest == "patch_embed.proj.weight":
        out["vision_encoder.backbone.embeddings.patch_embeddings.projection.weight"] = value
        return True
    if rest.startswith("ln_pre."):
        out["vision_encoder.backbone.layer_norm." + rest[7:]] = value
        return True
    m = re.match(r"^blocks\.(\d+)\.(.*)$", rest)
    if m and (int(m.group(1)) >= layers or m.group(2) == "attn.freqs_cis"):
        return False  # blocks past the last global one; RoPE tables are recomputed from the config
    if not m:
        raise ValueError(f"{key}: a ViT tensor the SAM 3 converter does not know")
    prefix, part = f"vision_encoder.backbone.layers.{m.group(1)}.", m.group(2)
    if part.startswith("attn.qkv."):
        for name, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
            out[f"{prefix}attention.{name}.{part[9:]}"] = chunk
        return True
    for old, new in (("norm1.", "layer_norm1."), ("norm2.", "layer_norm2."), ("attn.proj.", "attention.o_proj."),
                     ("mlp.", "mlp.")):
        if part.startswith(old):
            out[prefix + new + part[len(old):]] = value
            return True
    raise ValueError(f"{key}: a ViT tensor the SAM 3 converter does not know")


def convert_sam3_checkpoint(state_dict: dict) -> tuple[Any, dict, dict[str, str]]:
    """``sam3.pt`` state dict -> (Sam3TrackerConfig, Sam3TrackerModel state dict, {dropped tensor: why})."""
    sd = state_dict["model"] if isinstance(state_dict.get("model"), dict) else state_dict
    config = sam3_tracker_config(sd)
    layers = config.vision_config.backbone_config.num_hidden_layers
    out, heads, dropped = {}, {}, {}
    for key, value in sd.items():
        if key.startswith(TRUNK) and _trunk_tensor(key, value, out, layers):
            continue
        m = re.match(r"^" + re.escape(TRACKER_NECK) + r"(\d+)\.(.*)$", key)
        if m and int(m.group(1)) < len(config.vision_config.scale_factors):
            part = next((new + m.group(2)[len(old):] for old, new in _NECK_PARTS if m.group(2).startswith(old)), None)
            if part is None:
                raise ValueError(f"{key}: a neck tensor the SAM 3 converter does not know")
            out[f"vision_encoder.neck.fpn_layers.{m.group(1)}.{part}"] = value
            continue
        if key.startswith(("tracker.sam_prompt_encoder.", "tracker.sam_mask_decoder.", "tracker.no_mem_embed")):
            heads[_sam2_name(key)] = value
            continue
        dropped[key] = ("the trunk past its last global block, or a RoPE table (recomputed)" if key.startswith(TRUNK)
                        else "the tracker neck's 0.5x level (discarded by the reference)" if m
                        else next((why for p, why in DROPPED.items() if key.startswith(p)), "not SAM 3"))
    out.update(rename_sam2_tensors(heads))
    return config, out, dropped


def log_dropped(dropped: dict[str, str]) -> None:
    """One log line per reason: how many tensors the box/point path leaves out, and why."""
    import logging
    from collections import Counter

    for why, count in sorted(Counter(dropped.values()).items()):
        logging.getLogger(__name__).info("sam3 checkpoint: %d tensors left out: %s", count, why)
