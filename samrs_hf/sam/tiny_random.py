"""``tiny-random`` (and ``tiny-random-<family>``): small seeded models of each SAM generation for
offline demos and tests, with identical weights in every process and machine, flagged random so outputs
say so. Each keeps its family's geometry (input size, embedding grid, low-res mask size)."""

from __future__ import annotations

TINY_RANDOM = "tiny-random"
TINY_FAMILIES = ("sam", "sam_hq", "sam2", "sam3", "edgetam")  # edgetam: where timm is installed
RANDOM_MARK = "samrs_random_weights"  # config attribute: survives save_pretrained, so copies stay flagged

def tiny_random_config():
    """Small SAM with SAM's geometry (1024 input, 64x64 embedding, 256x256 low-res masks)."""
    from transformers import SamConfig

    return SamConfig(
        vision_config=dict(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64, output_channels=32,
            image_size=1024, patch_size=16, window_size=14, global_attn_indexes=[1], num_pos_feats=16,
        ),
        prompt_encoder_config=dict(hidden_size=32, image_size=1024, patch_size=16, mask_input_channels=16),
        mask_decoder_config=dict(
            hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=32,
        ),
    )


def _tiny_family_config(family: str):
    """Small configs of the other generations (EdgeTAM's RepViT trunk is a timm model: only with timm)."""
    import transformers

    decoder = dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32)
    if family == "sam_hq":
        cfg = tiny_random_config().to_dict()
        return transformers.SamHQConfig(vision_config=cfg["vision_config"],
                                        prompt_encoder_config=cfg["prompt_encoder_config"],
                                        mask_decoder_config={**cfg["mask_decoder_config"], "vit_dim": 32})
    if family == "sam2":
        hiera = dict(model_type="sam2_hiera_det_model", hidden_size=8, num_attention_heads=1,
                     blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[8, 16, 32, 64],
                     num_attention_heads_per_stage=[1, 2, 4, 8], window_size_per_stage=[8, 4, 14, 7],
                     global_attention_blocks=[3])
        return transformers.Sam2Config(
            vision_config=dict(backbone_config=hiera, backbone_channel_list=[64, 32, 16, 8], fpn_hidden_size=32),
            prompt_encoder_config=dict(hidden_size=32), mask_decoder_config=decoder)
    if family == "sam3":
        vit = dict(model_type="sam3_vit_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=2, window_size=24, global_attn_indexes=[1])
        # the tracker's three levels (4x, 2x, 1x), as sam3.pt converts: transformers' default neck adds a
        # 0.5x level that SAM 3 discards, and its own forward would put no_mem_embed on it
        return transformers.Sam3TrackerConfig(vision_config=dict(backbone_config=vit, fpn_hidden_size=32,
                                                                 scale_factors=[4.0, 2.0, 1.0]),
                                              prompt_encoder_config=dict(hidden_size=32), mask_decoder_config=decoder)
    if family == "edgetam":  # timm's repvit_m1 narrowed to one block per stage
        from .edgetam_checkpoint import require_timm

        require_timm()
        repvit = dict(model_type="timm_wrapper", architecture="repvit_m1", num_classes=0,
                      model_args=dict(in_chans=3, features_only=True, out_indices=[0, 1, 2, 3],
                                      embed_dim=[8, 16, 32, 64], depth=[1, 1, 1, 1]))
        return transformers.EdgeTamConfig(
            vision_config=dict(backbone_config=repvit, backbone_channel_list=[64, 32, 16, 8], fpn_hidden_size=32),
            prompt_encoder_config=dict(hidden_size=32), mask_decoder_config=decoder)
    raise ValueError(f"no tiny-random config for the {family} family (tiny-random-<family>: "
                     f"{', '.join(TINY_FAMILIES)})")


def tiny_random_spec_family(spec: str) -> str | None:
    """``tiny-random`` -> "sam", ``tiny-random-sam2`` -> "sam2"; None for any other spec."""
    if spec == TINY_RANDOM:
        return "sam"
    if spec.startswith(TINY_RANDOM + "-"):
        return spec[len(TINY_RANDOM) + 1:].lower().replace("-", "_")
    return None


def _seeded_init(model, seed: int) -> None:
    """Fill every parameter from one CPU generator in name order: identical in every process/machine.

    Weights are drawn with std 1/sqrt(fan_in) (not transformers' 1e-10 vision init) so the image
    actually influences the masks of a random model.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            leaf = name.rsplit(".", 1)[-1]
            owner = name.rsplit(".", 2)[-2] if name.count(".") else ""
            is_norm = "layer_norm" in name or "norm" in owner
            if is_norm and leaf == "weight":
                value = torch.ones(param.shape)
            elif leaf == "bias" or is_norm:
                value = torch.zeros(param.shape)
            else:
                fan_in = max(1, param[0].numel()) if param.dim() > 1 else 1
                value = torch.randn(param.shape, generator=gen) / fan_in**0.5
            param.copy_(value)
        # SAM 2's random-Fourier tables are buffers drawn from the global generator at construction:
        # seed them too, one table for the image and the prompts, as a converted checkpoint has.
        tables = [b for n, b in sorted(model.named_buffers()) if n.endswith("positional_embedding")]
        if tables:
            table = torch.randn(tables[0].shape, generator=gen)
            for buf in tables:
                buf.copy_(table)


def tiny_random_model(seed: int = 0, family: str = "sam"):
    """The seeded tiny model of ``family`` (SamModel by default), flagged random in its config."""
    import transformers

    if family == "sam":
        model = transformers.SamModel(tiny_random_config())
    else:
        from .families import get_family

        fam = get_family(family)
        model = fam.model_cls()(_tiny_family_config(fam.name))
    _seeded_init(model, seed)
    setattr(model.config, RANDOM_MARK, True)
    return model
