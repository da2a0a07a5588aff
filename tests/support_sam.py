"""segment-anything's ViT block beside our layer with the same weights (shared by the attention and kernel
tests; not a test file)."""


import torch

from samrs_hf.sam.attention import SamVisionWindowLayer
from samrs_hf.sam.options import SamAttentionOptions


def sam_block_and_layer(dim, heads, window, grid, use_rel_pos=True, seed=0, attn="triton"):
    """segment-anything's ViT ``Block`` (SAM's reference code) with random weights, nonzero qkv bias and
    rel-pos tables, and the same weights in our layer built for ``attn``."""
    import functools
    from samrs_hf.sam.reference.segment_anything import import_segment_anything
    from transformers import SamVisionConfig

    import_segment_anything()
    from segment_anything.modeling.image_encoder import Block

    torch.manual_seed(seed)
    block = Block(dim, heads, 2.0, True, functools.partial(torch.nn.LayerNorm, eps=1e-6), torch.nn.GELU,
                  use_rel_pos=use_rel_pos, rel_pos_zero_init=False, window_size=window, input_size=(grid, grid))
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    config = SamVisionConfig(hidden_size=dim, num_attention_heads=heads, mlp_dim=2 * dim, image_size=grid * 16,
                             patch_size=16, use_rel_pos=use_rel_pos, layer_norm_eps=1e-6)
    config._attn_implementation = "sdpa"
    layer = SamVisionWindowLayer(config, window, SamAttentionOptions(attn))
    state = {k.replace("norm1", "layer_norm1").replace("norm2", "layer_norm2"): v for k, v in block.state_dict().items()}
    layer.load_state_dict(state)
    return block.eval(), layer.eval()


# (batch, height, width, window, heads, head dim): SAM's 64 -> 70 padding, odd grids padded on one or
# both sides, a window larger than the grid, several batches and heads
BLOCK_CASES = [(1, 64, 64, 14, 2, 16), (2, 20, 23, 7, 3, 16), (1, 9, 12, 5, 2, 32), (2, 5, 5, 7, 1, 16)]


def predictor_and_labeler(folder):
    """segment-anything's SamPredictor on a tiny random SAM from its own builder, and our fp32
    SamLabeler on the same weights loaded from the saved .pth (the conversion is part of the check)."""
    from samrs_hf.sam.engine import SamLabeler
    from samrs_hf.sam.loading import load_sam
    from samrs_hf.sam.reference.segment_anything import build_reference_sam, import_segment_anything

    sa = import_segment_anything()
    sam = build_reference_sam("tiny", seed=0)
    path = folder / "sam_tiny.pth"
    torch.save(sam.state_dict(), path)
    ours, info = load_sam(str(path))
    assert info.kind == "pth"
    return sa.SamPredictor(sam), SamLabeler(ours, dtype=torch.float32)
