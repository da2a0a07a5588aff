"""The benchmarks' model-FLOP count, which every MFU figure divides by, and their --attn switches."""

import sys
from pathlib import Path

import pytest
from transformers import SamVisionConfig

from samrs_hf.sam import attention as sam_attention

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_labeling import ATTN_CHOICES, benchmark_attn, encoder_flops  # noqa: E402
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


def test_attn_choices_set_the_switches_they_name_and_reset_the_rest():
    """A benchmark figure labelled "triton" must be what ``samrs build --attn triton`` runs."""
    def switches():
        return sam_attention.TRITON_WINDOWS, sam_attention.UNPADDED_WINDOWS, sam_attention.FUSED_MLP_GELU

    defaults = switches()
    try:
        assert benchmark_attn("triton+unfused-gelu") == "triton" and not sam_attention.FUSED_MLP_GELU
        assert benchmark_attn("triton+sdpa-windows") == "triton" and not sam_attention.TRITON_WINDOWS
        assert sam_attention.FUSED_MLP_GELU  # the previous choice's switch is undone
        assert benchmark_attn("sdpa+padded") == "sdpa" and not sam_attention.UNPADDED_WINDOWS
        for plain in ("triton", "triton+windows", "triton+gelu", "sdpa", "sdpa+gelu"):
            assert benchmark_attn(plain) == plain.split("+")[0] and switches() == defaults
        assert {c.split("+")[0] for c in ATTN_CHOICES} == {"sdpa", "eager", "flex", "triton"}
        with pytest.raises(ValueError, match="--attn must be one of"):
            benchmark_attn("triton+fast")
    finally:
        sam_attention.TRITON_WINDOWS, sam_attention.UNPADDED_WINDOWS, sam_attention.FUSED_MLP_GELU = defaults
