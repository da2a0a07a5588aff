"""segment-anything ``.pth`` checkpoints -> transformers ``SamModel``.

SAMRS labelled with the original segment-anything ViT-H checkpoint, which carries no config: the
SamConfig is inferred from tensor shapes and the keys are renamed to transformers' layout, so the
engine has a single code path for every ``--model`` form.
"""

from __future__ import annotations

import re
from typing import Any

from .options import SamAttentionOptions, transformers_attn

# Ordered (pattern, replacement) pairs applied once each; they mirror the key layout of
# segment_anything.modeling (ImageEncoderViT, PromptEncoder, MaskDecoder, TwoWayTransformer).
_KEY_RULES: tuple[tuple[str, str], ...] = (
    (r"^image_encoder\.", "vision_encoder."),
    (r"\.patch_embed\.proj\.", ".patch_embed.projection."),
    (r"\.blocks\.", ".layers."),
    (r"\.neck\.0\.", ".neck.conv1."),
    (r"\.neck\.1\.", ".neck.layer_norm1."),
    (r"\.neck\.2\.", ".neck.conv2."),
    (r"\.neck\.3\.", ".neck.layer_norm2."),
    (r"\.norm(\d|_final_attn)\.", r".layer_norm\1."),
    (r"\.pe_layer\.positional_encoding_gaussian_matrix$", ".shared_embedding.positional_embedding"),
    (r"\.point_embeddings\.", ".point_embed."),
    (r"\.mask_downscaling\.0\.", ".mask_embed.conv1."),
    (r"\.mask_downscaling\.1\.", ".mask_embed.layer_norm1."),
    (r"\.mask_downscaling\.3\.", ".mask_embed.conv2."),
    (r"\.mask_downscaling\.4\.", ".mask_embed.layer_norm2."),
    (r"\.mask_downscaling\.6\.", ".mask_embed.conv3."),
    (r"\.output_upscaling\.0\.", ".upscale_conv1."),
    (r"\.output_upscaling\.1\.", ".upscale_layer_norm."),
    (r"\.output_upscaling\.3\.", ".upscale_conv2."),
)
# segment-anything's MLP(layers=[in, hidden..., out]) -> SamFeedForward(proj_in, layers, proj_out).
_MLP_KEY = re.compile(r"^(mask_decoder\.(?:iou_prediction_head|output_hypernetworks_mlps\.\d+))\.layers\.(\d+)\.(.*)$")
_IGNORED_KEYS = ("pixel_mean", "pixel_std")


def _rename_key(key: str, mlp_depths: dict[str, int]) -> str:
    match = _MLP_KEY.match(key)
    if match:
        prefix, idx, rest = match.group(1), int(match.group(2)), match.group(3)
        last = mlp_depths[prefix] - 1
        sub = "proj_in" if idx == 0 else "proj_out" if idx == last else f"layers.{idx - 1}"
        return f"{prefix}.{sub}.{rest}"
    for pattern, repl in _KEY_RULES:
        key = re.sub(pattern, repl, key)
    return key


def _count_indexed(state_dict: dict, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in state_dict if (m := pat.match(k))}
    return max(found) + 1 if found else 0


def _infer_config(sd: dict) -> "Any":
    """SamConfig from tensor shapes: segment-anything checkpoints carry no config."""
    from transformers import SamConfig

    def need(key):
        if key not in sd:
            raise KeyError(key)
        return sd[key]

    patch_w = need("image_encoder.patch_embed.proj.weight")
    hidden, patch = int(patch_w.shape[0]), int(patch_w.shape[-1])
    depth = _count_indexed(sd, "image_encoder.blocks.")
    if depth == 0:
        raise KeyError("image_encoder.blocks.0.*")
    pos = sd.get("image_encoder.pos_embed")
    grid = int(pos.shape[1]) if pos is not None else 64
    image_size = grid * patch
    use_rel_pos = "image_encoder.blocks.0.attn.rel_pos_h" in sd
    global_idx, window = [], 14
    if use_rel_pos:
        head_dim = int(sd["image_encoder.blocks.0.attn.rel_pos_h"].shape[1])
        for i in range(depth):
            length = int(need(f"image_encoder.blocks.{i}.attn.rel_pos_h").shape[0])
            if length == 2 * grid - 1:
                global_idx.append(i)
            else:
                window = (length + 1) // 2
    else:  # heads are not visible in the shapes without rel-pos tables; SAM's ViTs use 64-wide heads
        head_dim = 64
    if hidden % head_dim:
        raise ValueError(f"hidden size {hidden} is not a multiple of the head width {head_dim}")
    mlp_dim = int(need("image_encoder.blocks.0.mlp.lin1.weight").shape[0])
    out_chans = int(need("image_encoder.neck.0.weight").shape[0])
    pe = need("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix")
    mask_chans = int(need("prompt_encoder.mask_downscaling.3.weight").shape[0])
    dec_hidden = int(need("mask_decoder.iou_token.weight").shape[1])
    dec_layers = _count_indexed(sd, "mask_decoder.transformer.layers.")
    dec_mlp = int(need("mask_decoder.transformer.layers.0.mlp.lin1.weight").shape[0])
    n_mask_tokens = int(need("mask_decoder.mask_tokens.weight").shape[0])
    iou_depth = _count_indexed(sd, "mask_decoder.iou_prediction_head.layers.")
    iou_hidden = int(need("mask_decoder.iou_prediction_head.layers.0.weight").shape[0])
    inner = int(need("mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight").shape[0])
    return SamConfig(
        vision_config=dict(
            hidden_size=hidden, num_hidden_layers=depth, num_attention_heads=hidden // head_dim,
            mlp_dim=mlp_dim, output_channels=out_chans, image_size=image_size, patch_size=patch,
            use_abs_pos=pos is not None, use_rel_pos=use_rel_pos, window_size=window,
            global_attn_indexes=global_idx, num_pos_feats=int(pe.shape[1]),
        ),
        prompt_encoder_config=dict(
            hidden_size=out_chans, image_size=image_size, patch_size=patch, mask_input_channels=mask_chans,
        ),
        mask_decoder_config=dict(
            hidden_size=dec_hidden, mlp_dim=dec_mlp, num_hidden_layers=dec_layers,
            attention_downsample_rate=max(1, dec_hidden // inner), num_multimask_outputs=n_mask_tokens - 1,
            iou_head_depth=iou_depth, iou_head_hidden_dim=iou_hidden,
        ),
    )


def convert_sam_checkpoint(state_dict: dict) -> tuple[Any, dict]:
    """segment-anything state dict -> (SamConfig, transformers SamModel state dict).

    The decoder's attention head count (8 in every released SAM) is not visible in tensor shapes and
    is kept at SamMaskDecoderConfig's default.
    """
    if isinstance(state_dict, dict) and "model" in state_dict and isinstance(state_dict["model"], dict):
        state_dict = state_dict["model"]
    config = _infer_config(state_dict)
    mlp_depths = {}
    for key in state_dict:
        match = _MLP_KEY.match(key)
        if match:
            mlp_depths[match.group(1)] = max(mlp_depths.get(match.group(1), 0), int(match.group(2)) + 1)
    converted = {
        _rename_key(k, mlp_depths): v for k, v in state_dict.items() if k not in _IGNORED_KEYS
    }
    pe = converted["prompt_encoder.shared_embedding.positional_embedding"]
    converted["shared_image_embedding.positional_embedding"] = pe
    return config, converted


def sam_model_from_checkpoint(state_dict: dict, attn: str | SamAttentionOptions = "eager"):
    """SamModel from a segment-anything state dict (converted; weights assigned, no random init), its
    vision layers built for ``attn`` (an attention name, or the options; :func:`install_attention`).

    Raises KeyError/ValueError for tensors that do not fit SAM's layout.
    """
    import torch
    from transformers import SamModel

    from .attention import install_attention

    options = attn if isinstance(attn, SamAttentionOptions) else SamAttentionOptions(attn=attn)
    config, converted = convert_sam_checkpoint(state_dict)
    config._attn_implementation = transformers_attn(options.attn)
    with torch.device("meta"):  # skip the random init of up to 640M parameters
        model = SamModel(config)
    try:
        missing, unexpected = model.load_state_dict(converted, strict=False, assign=True)
    except RuntimeError as exc:  # a tensor whose shape disagrees with the others
        detail = " ".join(line.strip() for line in str(exc).splitlines()[1:3])
        raise ValueError(f"checkpoint does not match the inferred SAM layout ({detail})") from None
    if missing or unexpected:
        raise ValueError(f"checkpoint does not match the inferred SAM layout (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")
    meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if meta:
        raise ValueError(f"checkpoint does not match the inferred SAM layout (missing {meta[:5]})")
    install_attention(model, options)
    return model
