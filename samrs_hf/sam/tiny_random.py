"""``tiny-random``: a small seeded SAM for offline demos and tests, with identical weights in every
process and machine, flagged random so outputs say so."""

from __future__ import annotations

TINY_RANDOM = "tiny-random"
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
            is_norm = "layer_norm" in name or "norm" in name.rsplit(".", 2)[-2]
            if is_norm and leaf == "weight":
                value = torch.ones(param.shape)
            elif leaf == "bias" or is_norm:
                value = torch.zeros(param.shape)
            else:
                fan_in = max(1, param[0].numel()) if param.dim() > 1 else 1
                value = torch.randn(param.shape, generator=gen) / fan_in**0.5
            param.copy_(value)


def tiny_random_model(seed: int = 0):
    """The seeded tiny SamModel, flagged random in its config."""
    from transformers import SamModel

    model = SamModel(tiny_random_config())
    _seeded_init(model, seed)
    setattr(model.config, RANDOM_MARK, True)
    return model
