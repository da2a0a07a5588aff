"""``sam2`` checkpoints (``sam2.1_hiera_*.pt``: ``{"model": state_dict}``) -> transformers ``Sam2Model``.

The image predictor needs the Hiera trunk, the FPN neck, the prompt encoder, the mask decoder and
``no_mem_embed``; the video tracker's tensors (:data:`VIDEO_ONLY`, each with why) are left out.
Widths, depths and stages come from the tensor shapes; the head counts, windows and global
blocks are not visible in shapes and come from the released variant with the same widths and stages
(:data:`HIERA_VARIANTS`), or from ``hiera`` for other layouts. The neck/prompt/decoder config and
the renames are shared with the SAM 2 forks (EdgeTAM, :mod:`.edgetam_checkpoint`).
"""

from __future__ import annotations

import re
from typing import Any

# blocks per stage -> (heads of stage 1, window per stage, global attention blocks), from sam2's
# configs/sam2.1/sam2.1_hiera_{t,s,b+,l}.yaml (the stages tell the four variants apart).
HIERA_VARIANTS: dict[tuple[int, ...], dict[str, Any]] = {
    (1, 2, 7, 2): dict(num_heads=1, window_spec=(8, 4, 14, 7), global_att_blocks=(5, 7, 9)),
    (1, 2, 11, 2): dict(num_heads=1, window_spec=(8, 4, 14, 7), global_att_blocks=(7, 10, 13)),
    (2, 3, 16, 3): dict(num_heads=2, window_spec=(8, 4, 14, 7), global_att_blocks=(12, 16, 20)),
    (2, 6, 36, 4): dict(num_heads=2, window_spec=(8, 4, 16, 8), global_att_blocks=(23, 33, 43)),
}
# The video tracker's tensors, which an image predictor never reads: prefix -> why it is left out.
VIDEO_ONLY: dict[str, str] = {
    "memory_attention.": "memory attention: conditions a frame on the memory bank of past frames (video)",
    "memory_encoder.": "memory encoder: turns a frame's predicted mask into a memory (video)",
    "maskmem_": "temporal position encodings of the memories (video)",
    "obj_ptr": "object-pointer projections carried between frames (video)",
    "mask_downsample.": "downsamples an input mask for the memory encoder (video)",
    "no_mem_pos_enc": "position encoding of the empty memory (video)",
    "no_obj_ptr": "the pointer of a frame without the object (video)",
    "no_obj_embed_spatial": "memory embedding of a frame without the object (video)",
}
_RULES: tuple[tuple[str, str], ...] = (
    (r"^no_mem_embed$", "no_memory_embedding"),
    (r"^image_encoder\.trunk\.", "vision_encoder.backbone."),
    (r"^image_encoder\.neck\.convs\.(\d+)\.conv\.", r"vision_encoder.neck.convs.\1."),
    (r"\.patch_embed\.proj\.", ".patch_embed.projection."),
    (r"^sam_prompt_encoder\.", "prompt_encoder."),
    (r"\.pe_layer\.positional_encoding_gaussian_matrix$", ".shared_embedding.positional_embedding"),
    (r"\.mask_downscaling\.0\.", ".mask_embed.conv1."),
    (r"\.mask_downscaling\.1\.", ".mask_embed.layer_norm1."),
    (r"\.mask_downscaling\.3\.", ".mask_embed.conv2."),
    (r"\.mask_downscaling\.4\.", ".mask_embed.layer_norm2."),
    (r"\.mask_downscaling\.6\.", ".mask_embed.conv3."),
    (r"^sam_mask_decoder\.", "mask_decoder."),
    (r"\.out_proj\.", ".o_proj."),
    (r"\.norm(\d|_final_attn)\.", r".layer_norm\1."),
    (r"\.output_upscaling\.0\.", ".upscale_conv1."),
    (r"\.output_upscaling\.1\.", ".upscale_layer_norm."),
    (r"\.output_upscaling\.3\.", ".upscale_conv2."),
)
# sam2's MLP(layers=[...]) -> transformers' FeedForward (proj_in, layers, proj_out).
_MLP = re.compile(r"^(.*(?:\.mlp|iou_prediction_head|output_hypernetworks_mlps\.\d+|pred_obj_score_head))"
                  r"\.layers\.(\d+)\.(.*)$")


def _hiera_layout(sd: dict) -> tuple[int, list[int], list[int]]:
    """(embed_dim, blocks per stage, dims per stage) from the trunk's tensors (a stage starts where
    a block's ``proj`` changes the width)."""
    prefix = "image_encoder.trunk.blocks."
    depth = 1 + max(int(k[len(prefix):].split(".")[0]) for k in sd if k.startswith(prefix))
    dims, stages = [], []
    for i in range(depth):
        dim = int(sd[f"{prefix}{i}.norm2.weight"].shape[0])
        if not dims or dim != dims[-1]:
            dims.append(dim)
            stages.append(0)
        stages[-1] += 1
    return int(sd["image_encoder.trunk.patch_embed.proj.weight"].shape[0]), stages, dims


def _rename(key: str, depths: dict[str, int]) -> str:
    match = _MLP.match(key)
    if match:
        prefix, idx, rest = match.group(1), int(match.group(2)), match.group(3)
        sub = "proj_in" if idx == 0 else "proj_out" if idx == depths[prefix] - 1 else f"layers.{idx - 1}"
        key = f"{prefix}.{sub}.{rest}"
    for pattern, repl in _RULES:
        key = re.sub(pattern, repl, key)
    return key


def sam_heads_config(sd: dict) -> tuple[dict[str, Any], dict[str, Any]]:
    """(prompt encoder, mask decoder) config fields from the SAM 2 heads' tensors (``sam_prompt_encoder.*``,
    ``sam_mask_decoder.*``: sam2's names, which EdgeTAM and SAM 3's tracker keep); 8 decoder heads, every
    released model's, not visible in shapes."""
    q_proj = sd["sam_mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight"]
    inner, d_model = int(q_proj.shape[0]), int(q_proj.shape[1])
    mask_chans = int(sd["sam_prompt_encoder.mask_downscaling.3.weight"].shape[0])
    dec_mlp = int(sd["sam_mask_decoder.transformer.layers.0.mlp.layers.0.weight"].shape[0])
    iou_hidden = int(sd["sam_mask_decoder.iou_prediction_head.layers.0.weight"].shape[0])
    return (dict(hidden_size=d_model, mask_input_channels=mask_chans),
            dict(hidden_size=d_model, mlp_dim=dec_mlp, num_attention_heads=8,
                 attention_downsample_rate=max(1, d_model // inner), iou_head_hidden_dim=iou_hidden))


def sam2_head_configs(sd: dict) -> dict[str, Any]:
    """The parts of a SAM 2-lineage config that SAM 2.1 and EdgeTAM share, from the tensor shapes: the
    FPN neck's widths (``vision``), the prompt encoder and the mask decoder."""
    convs = sorted({int(k.split(".")[3]) for k in sd if k.startswith("image_encoder.neck.convs.")})
    neck = [int(sd[f"image_encoder.neck.convs.{i}.conv.weight"].shape[1]) for i in convs]
    d_model = int(sd["image_encoder.neck.convs.0.conv.weight"].shape[0])
    prompt_encoder, mask_decoder = sam_heads_config(sd)
    return dict(vision=dict(backbone_channel_list=neck, fpn_hidden_size=d_model),
                prompt_encoder_config=prompt_encoder, mask_decoder_config=mask_decoder)


def sam2_config(sd: dict, hiera: dict | None = None):
    """Sam2Config from a sam2 state dict's shapes (``hiera``: num_heads, window_spec,
    global_att_blocks where the layout is no released variant)."""
    from transformers import Sam2Config

    embed, stages, dims = _hiera_layout(sd)
    known = HIERA_VARIANTS.get(tuple(stages))
    spec = hiera or known
    if spec is None:
        raise ValueError(f"Hiera trunk with stages {stages} is no released SAM 2.1 variant; "
                         f"its heads, windows and global blocks are not in the tensors")
    heads = [spec["num_heads"] * 2**i for i in range(len(stages))]
    backbone = dict(model_type="sam2_hiera_det_model", hidden_size=embed, num_attention_heads=spec["num_heads"],
                    blocks_per_stage=stages, embed_dim_per_stage=dims, num_attention_heads_per_stage=heads,
                    window_size_per_stage=list(spec["window_spec"]),
                    global_attention_blocks=list(spec["global_att_blocks"]),
                    window_positional_embedding_background_size=list(sd["image_encoder.trunk.pos_embed"].shape[-2:]))
    heads_cfg = sam2_head_configs(sd)
    return Sam2Config(vision_config=dict(backbone_config=backbone, **heads_cfg.pop("vision")), **heads_cfg)


def convert_sam2_tensors(sd: dict, dropped: dict[str, str] = VIDEO_ONLY, trunk: tuple[str, str] = ("", "")) -> dict:
    """A SAM 2-lineage state dict renamed to transformers' (``Sam2Model``, ``EdgeTamModel``, ...):
    tensors under a ``dropped`` prefix are left out; ``trunk`` = (prefix, new prefix) moves a trunk
    whose own names transformers keeps (EdgeTAM's timm RepViT) without the rules below."""
    kept = {k: v for k, v in sd.items() if not k.startswith(tuple(dropped))}
    moved = {trunk[1] + k[len(trunk[0]):]: v for k, v in kept.items() if trunk[0] and k.startswith(trunk[0])}
    return {**moved, **rename_sam2_tensors({k: v for k, v in kept.items() if not (trunk[0] and k.startswith(trunk[0]))})}


def rename_sam2_tensors(sd: dict) -> dict:
    """sam2-named tensors (trunk, neck, ``no_mem_embed``, SAM heads) -> transformers' names; the
    prompt encoder's point embeddings become one table, and the image-wide positional table is the
    prompt encoder's, as in the reference (SAM 2.1, EdgeTAM and SAM 3's tracker name them alike)."""
    import torch

    depths: dict[str, int] = {}
    for key in sd:
        if (m := _MLP.match(key)):
            depths[m.group(1)] = max(depths.get(m.group(1), 0), int(m.group(2)) + 1)
    out, points = {}, {}
    for key, value in sd.items():
        if (m := re.match(r"^sam_prompt_encoder\.point_embeddings\.(\d+)\.weight$", key)):
            points[int(m.group(1))] = value
            continue
        out[_rename(key, depths)] = value
    out["prompt_encoder.point_embed.weight"] = torch.cat([points[i] for i in sorted(points)])
    out["shared_image_embedding.positional_embedding"] = out["prompt_encoder.shared_embedding.positional_embedding"]
    return out


def convert_sam2_checkpoint(state_dict: dict, hiera: dict | None = None) -> tuple[Any, dict]:
    """sam2 state dict -> (Sam2Config, Sam2Model state dict)."""
    sd = state_dict["model"] if isinstance(state_dict.get("model"), dict) else state_dict
    return sam2_config(sd, hiera), convert_sam2_tensors(sd)
