"""The benchmarks' model-FLOP count, which every MFU figure divides by, and their --attn switches."""

import sys
from dataclasses import replace
from pathlib import Path

import pytest
from transformers import SamVisionConfig

from samrs_hf.sam.options import SamAttentionOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_labeling import ATTN_CHOICES, benchmark_options, encoder_flops  # noqa: E402
from samrs_hf.sam.reference.segment_anything import SHAPES  # noqa: E402


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


def test_attn_choices_name_the_options_they_switch_off():
    """A benchmark figure labelled "triton" must be what ``samrs build --attn triton`` runs."""
    defaults = SamAttentionOptions()
    assert benchmark_options("triton+unfused-gelu") == replace(defaults, attn="triton", fused_mlp_gelu=False)
    assert benchmark_options("triton+sdpa-windows") == replace(defaults, attn="triton", triton_windows=False)
    assert benchmark_options("sdpa+padded") == replace(defaults, unpadded_windows=False)
    assert benchmark_options("flex+separate-flex") == replace(defaults, attn="flex", flex_inline=False)
    for plain in ("triton", "triton+windows", "triton+gelu", "sdpa", "sdpa+gelu"):
        assert benchmark_options(plain) == replace(defaults, attn=plain.split("+")[0])
    assert {c.split("+")[0] for c in ATTN_CHOICES} == {"sdpa", "eager", "flex", "triton"}
    with pytest.raises(ValueError, match="--attn must be one of"):
        benchmark_options("triton+fast")
