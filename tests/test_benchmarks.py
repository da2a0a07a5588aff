"""The benchmarks' model-FLOP count, which every MFU figure divides by."""

import sys
from pathlib import Path

from transformers import SamVisionConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_labeling import encoder_flops  # noqa: E402
from sam_reference import SHAPES  # noqa: E402


def hand_count(dim: int, depth: int, global_idx: list[int]) -> int:
    """SAM's ViT written out on the image's 64x64 tokens: windowed layers' queries and projections
    cover those tokens only, their keys each token's whole 14x14 window (SAM pads 64 to 70, so
    border windows hold zero-padded tokens as keys); the patch embedding and the neck see 64x64."""
    grid, window, neck = 64, 14, 256
    flops = 2 * grid**2 * dim * 3 * 16 * 16  # patch embedding
    for i in range(depth):
        keys, side = (grid**2, grid) if i in global_idx else (window**2, window)
        flops += 2 * grid**2 * 4 * dim * dim  # qkv + proj
        flops += 2 * grid**2 * 8 * dim * dim  # MLP
        flops += 2 * 2 * grid**2 * keys * dim  # q.k and attention.v
        flops += 2 * 2 * grid**2 * side * dim  # the decomposed rel-pos einsums
    return flops + 2 * grid**2 * (dim * neck + 9 * neck * neck)


def test_encoder_flops_count_the_image_tokens_not_the_window_padding():
    for shape in ("vit_b", "vit_h"):
        dim, depth, heads, global_idx = SHAPES[shape]
        config = SamVisionConfig(hidden_size=dim, num_hidden_layers=depth, num_attention_heads=heads,
                                 global_attn_indexes=global_idx)
        assert encoder_flops(config) == hand_count(dim, depth, global_idx)
    assert round(encoder_flops(SamVisionConfig()) / 1e9) == 938  # transformers' default is vit_b
