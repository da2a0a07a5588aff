"""The benchmarks' model-FLOP count, which every MFU figure divides by."""

import sys
from pathlib import Path

from transformers import SamVisionConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_labeling import encoder_flops  # noqa: E402
from sam_reference import SHAPES  # noqa: E402


def hand_count(dim: int, depth: int, global_idx: list[int]) -> int:
    """SAM's ViT written out: windowed layers pad 64x64 tokens to 70x70 for qkv, attention and proj;
    the MLP, the patch embedding and the neck see the 64x64 grid."""
    grid, window, padded, neck = 64, 14, 70, 256
    flops = 2 * grid**2 * dim * 3 * 16 * 16  # patch embedding
    for i in range(depth):
        if i in global_idx:
            tokens, windows, seq, side = grid**2, 1, grid**2, grid
        else:
            tokens, windows, seq, side = padded**2, (padded // window) ** 2, window**2, window
        flops += 2 * tokens * 4 * dim * dim  # qkv + proj
        flops += 2 * grid**2 * 8 * dim * dim  # MLP, unpadded
        flops += 2 * 2 * windows * seq * seq * dim  # q.k and attention.v
        flops += 2 * 2 * tokens * side * dim  # the decomposed rel-pos einsums
    return flops + 2 * grid**2 * (dim * neck + 9 * neck * neck)


def test_encoder_flops_counts_the_mlp_on_the_unpadded_grid():
    for shape in ("vit_b", "vit_h"):
        dim, depth, heads, global_idx = SHAPES[shape]
        config = SamVisionConfig(hidden_size=dim, num_hidden_layers=depth, num_attention_heads=heads,
                                 global_attn_indexes=global_idx)
        assert encoder_flops(config) == hand_count(dim, depth, global_idx)
    assert round(encoder_flops(SamVisionConfig()) / 1e9) == 972  # transformers' default is vit_b
