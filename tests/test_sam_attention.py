"""Our SAM vision layers: windowed layers without the padded tokens' projections (``sdpa``, the
default), and ``--attn flex``, the rel-pos bias inside FlexAttention (CPU reference).

Both must compute what transformers' eager attention and segment-anything compute; flex must take
its route only in the global layers and never build the (B, heads, N, N) bias there; saved models
must stay loadable by stock transformers.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import SamModel
from transformers.models.sam import modeling_sam as ms

from samrs_hf import cli
from samrs_hf.sam import attention as sam_attention
from samrs_hf.build.config import BuildConfig, resolve
from samrs_hf.sam.engine import SamLabeler
from samrs_hf.sam.prompts import PromptBatch
from samrs_hf.sam.attention import SamVisionFlexAttention, SamVisionRelPosAttention, SamVisionWindowLayer
from samrs_hf.sam.loading import ATTN_MARK, OPTIONS_MARK, load_sam, sam_model_from_checkpoint
from samrs_hf.sam.options import SamAttentionOptions
from samrs_hf.sources.samples import write_dior_sample
from samrs_hf.sam.reference.segment_anything import build_reference_sam, import_segment_anything

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")


@pytest.fixture
def flex_calls(monkeypatch):
    """Shapes of the queries flex_attention gets, and token counts of materialised rel-pos biases."""
    calls = {"flex": [], "bias": []}
    real_flex = sam_attention.flex_attention
    real_bias = ms.SamVisionAttention.get_decomposed_rel_pos

    def flex(query, *args, **kwargs):
        calls["flex"].append(tuple(query.shape))
        return real_flex(query, *args, **kwargs)

    def bias(self, query, rel_pos_h, rel_pos_w, q_size, k_size):
        calls["bias"].append(q_size[0] * q_size[1])
        return real_bias(self, query, rel_pos_h, rel_pos_w, q_size, k_size)

    monkeypatch.setattr(sam_attention, "flex_attention", flex)
    monkeypatch.setattr(SamVisionFlexAttention, "get_decomposed_rel_pos", bias)
    return calls


def test_flex_encoder_equals_sdpa_and_eager(encode_tiny_sam, flex_calls):
    # tiny-random: layer 0 windowed (14x14 = 196 tokens), layer 1 global (64x64 = 4096 tokens)
    assert 196 < sam_attention.GLOBAL_MIN_TOKENS <= 4096
    sdpa, eager = encode_tiny_sam("sdpa"), encode_tiny_sam("eager")
    flex = encode_tiny_sam("flex")
    layers = encode_tiny_sam.model.vision_encoder.layers
    assert all(type(layer.attn) is SamVisionFlexAttention for layer in layers)
    torch.testing.assert_close(flex, sdpa, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(flex, eager, rtol=1e-5, atol=1e-5)
    # flex ran once, in the global layer; the only N x N bias built was the windowed layer's
    assert flex_calls["flex"] == [(1, 2, 4096, 16)]
    assert flex_calls["bias"] == [196]


@pytest.fixture
def qkv_inputs(monkeypatch):
    """Shapes of the token grids the vision layers' qkv projections run on."""
    shapes = []
    real = torch.nn.Linear.forward

    def linear(self, x):
        if x.ndim == 4 and self.out_features == 3 * self.in_features:
            shapes.append(tuple(x.shape[:3]))
        return real(self, x)

    monkeypatch.setattr(torch.nn.Linear, "forward", linear)
    return shapes


def test_windowed_layers_project_only_the_unpadded_grid(encode_tiny_sam, qkv_inputs):
    # tiny-random: layer 0 windowed (64x64 tokens, SAM pads them to 70x70 = 25 windows of 14x14)
    eager = encode_tiny_sam("eager")  # transformers' own layers: the reference
    assert qkv_inputs == [(25, 14, 14), (1, 64, 64)]
    qkv_inputs.clear()
    sdpa = encode_tiny_sam("sdpa")
    layers = encode_tiny_sam.model.vision_encoder.layers
    assert all(type(layer) is SamVisionWindowLayer for layer in layers)
    assert all(type(layer.attn) is SamVisionRelPosAttention for layer in layers)
    assert qkv_inputs == [(1, 64, 64), (1, 64, 64)]  # no qkv rows for the 804 padded tokens
    torch.testing.assert_close(sdpa, eager, rtol=1e-5, atol=1e-5)

    padded = SamAttentionOptions("sdpa", unpadded_windows=False)  # transformers' padding, same result
    qkv_inputs.clear()
    torch.testing.assert_close(encode_tiny_sam(padded), eager, rtol=1e-5, atol=1e-5)
    assert qkv_inputs == [(25, 14, 14), (1, 64, 64)]


def test_unpadded_windows_are_one_graph_under_torch_compile(encode_tiny_sam):
    """``samrs build --compile``: the bias strips written into the padded projections trace without
    a graph break."""
    eager = encode_tiny_sam("eager")
    encode_tiny_sam("sdpa")
    torch._dynamo.reset()
    compiled = torch.compile(encode_tiny_sam.model.vision_encoder, fullgraph=True)
    with torch.no_grad():
        got = compiled(encode_tiny_sam.pixels).last_hidden_state
    torch.testing.assert_close(got, eager, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("attn", ["sdpa", "flex"])
@pytest.mark.parametrize("use_rel_pos", [True, False])
def test_unpadded_windowed_layer_equals_segment_anything(attn, use_rel_pos):
    """Padded on one side or both, windows larger than the grid, nonzero qkv biases: the bias-padded
    projections reproduce SAM's zero-padded tokens exactly."""
    from support_sam import BLOCK_CASES, sam_block_and_layer

    for batch, height, width, window, heads, head_dim in BLOCK_CASES:
        block, layer = sam_block_and_layer(heads * head_dim, heads, window, max(height, width), use_rel_pos,
                                           attn=attn)
        x = torch.randn(batch, height, width, heads * head_dim, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            torch.testing.assert_close(layer(x), block(x), rtol=1e-4, atol=2e-4)


@pytest.mark.parametrize("batch,height,width", [(2, 6, 10), (1, 14, 14)])
def test_flex_attention_module_matches_sdpa_on_any_grid(encode_tiny_sam, monkeypatch, batch, height, width):
    """Non-square grids and batches check the kv_idx // width, kv_idx % width and batch indexing."""
    monkeypatch.setattr(sam_attention, "GLOBAL_MIN_TOKENS", 1)
    encode_tiny_sam("sdpa")
    layer = encode_tiny_sam.model.vision_encoder.layers[0]
    config, weights = encode_tiny_sam.model.vision_encoder.config, layer.attn.state_dict()
    sdpa = ms.SamVisionSdpaAttention(config, layer.window_size)
    flex = SamVisionFlexAttention(config, layer.window_size, SamAttentionOptions("flex"))
    sdpa.load_state_dict(weights), flex.load_state_dict(weights)
    hidden = torch.randn(batch, height, width, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = sdpa(hidden)[0]
        got, weights = flex(hidden)
    assert weights is None
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_checkpoint_conversion_takes_flex():
    """segment-anything checkpoints (the .pth path and benchmarks) build with "sdpa", then switch."""
    import_segment_anything()
    model = sam_model_from_checkpoint(build_reference_sam("tiny").state_dict(), "flex")
    assert getattr(model, ATTN_MARK) == "flex" and model.config._attn_implementation == "sdpa"
    assert getattr(model, OPTIONS_MARK) == SamAttentionOptions("flex")
    assert all(type(layer.attn) is SamVisionFlexAttention for layer in model.vision_encoder.layers)


@pytest.mark.parametrize("attn", ["flex", "triton"])
def test_labeler_masks_equal_with_fused_rel_pos_attention(attn):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:240, 0:320]
    base = (np.sin(xx / 17.0) + np.cos(yy / 23.0)) * 60 + 128
    image = np.stack([base, base[::-1], base[:, ::-1]], -1) + rng.normal(0, 8, (240, 320, 3))
    image = np.clip(image, 0, 255).astype(np.uint8)
    boxes = np.array([[10, 20, 120, 90], [150, 60, 300, 220], [40, 120, 140, 230]], np.float32)
    prompts = PromptBatch(boxes=boxes, points=None, point_labels=None, masks=None, box_kind="H-Box")
    results = {}
    for name in ("sdpa", attn):
        model, info = load_sam("tiny-random", attn_implementation=name)
        assert info.config["attn_implementation"] == name and getattr(model, ATTN_MARK) == name
        results[name] = SamLabeler(model).label([image], [prompts])[0]
    sdpa, got = results["sdpa"], results[attn]
    assert got.masks.shape == (3, 240, 320) and 0 < got.masks.mean() < 1
    assert np.mean(got.masks != sdpa.masks) <= 0.0005  # at most a few threshold-borderline pixels
    np.testing.assert_allclose(got.scores, sdpa.scores, rtol=1e-4, atol=1e-5)


def test_saved_flex_model_loads_with_stock_transformers(tmp_path):
    model, _ = load_sam("tiny-random", attn_implementation="flex")
    assert model.config._attn_implementation == "sdpa"
    assert model.mask_decoder.config._attn_implementation == "sdpa"  # the decoder is untouched
    model.save_pretrained(tmp_path / "sam")
    assert "flex" not in (tmp_path / "sam" / "config.json").read_text()
    stock = SamModel.from_pretrained(tmp_path / "sam")
    assert type(stock.vision_encoder.layers[1].attn) in (ms.SamVisionAttention, ms.SamVisionSdpaAttention)
    ours = model.state_dict()
    assert all(torch.equal(v, ours[k]) for k, v in stock.state_dict().items())
    again, info = load_sam(str(tmp_path / "sam"), attn_implementation="flex")
    assert info.kind == "folder" and type(again.vision_encoder.layers[1].attn) is SamVisionFlexAttention


def test_bad_or_unavailable_attention_is_a_clear_error(monkeypatch):
    with pytest.raises(ValueError, match=r"one of sdpa, eager, flex, triton, got 'flash'"):
        load_sam("tiny-random", attn_implementation="flash")
    with pytest.raises(ValueError, match=r"unknown --attn 'flash'"):
        resolve(BuildConfig(preset="sior", source=Path("x"), out=Path("y"), attn="flash"))
    monkeypatch.setattr(sam_attention, "flex_attention", None)  # a torch without FlexAttention
    with pytest.raises(ImportError, match=r"'flex' needs torch\.nn\.attention\.flex_attention"):
        load_sam("tiny-random", attn_implementation="flex")


@pytest.mark.parametrize("attn", ["flex", "triton"])
def test_build_attn_option_is_used_and_recorded(tmp_path, attn):
    dior = write_dior_sample(tmp_path / "dior")
    out = tmp_path / "out"
    argv = ["build", "sior", "--source", str(dior), "--out", str(out), "--model", "tiny-random",
            "--device", "cpu", "--no-progress", "--limit", "1", "--attn", attn]
    assert cli.main(argv) == 0
    report = json.loads((out / "build.json").read_text())
    assert report["model"]["config"]["attn_implementation"] == attn
    assert report["counts"]["objects"] > 0
    # a kernel choice like --compile: resuming with another --attn is allowed (not fingerprinted)
    assert cli.main([*argv[:-1], "sdpa"]) == 0
    assert json.loads((out / "build.json").read_text())["run"]["patches_resumed"] == 1


def test_vision_mlp_is_swapped_in_and_its_fused_gelu_matmul_is_lin1_plus_gelu(encode_tiny_sam):
    encode_tiny_sam("sdpa")
    layers = encode_tiny_sam.model.vision_encoder.layers
    assert all(type(layer.mlp) is sam_attention.SamVisionMLP for layer in layers)
    mlp = layers[0].mlp
    x = torch.randn(2, 5, 7, mlp.lin1.in_features, generator=torch.Generator().manual_seed(3))[:, :, 1:]
    with torch.no_grad():  # (B, H, W, C), not contiguous: how the layer norm's output may arrive
        want = mlp.act(mlp.lin1(x))
        torch.testing.assert_close(mlp.fused_lin1_gelu(x), want, rtol=1e-5, atol=1e-5)
        torch._dynamo.reset()  # `samrs build --compile` traces it as one op (inductor calls it as is)
        compiled = torch.compile(mlp.fused_lin1_gelu, fullgraph=True)
        torch.testing.assert_close(compiled(x), want, rtol=1e-5, atol=1e-5)
    encode_tiny_sam("eager")
    assert all(type(layer.mlp) is ms.SamMLPBlock for layer in layers)


def test_fused_mlp_gelu_stays_off_the_cpu_and_float32(encode_tiny_sam, monkeypatch):
    """cuBLASLt's epilogue GELU (tanh) is for half dtypes on CUDA only: elsewhere SAM's exact GELU."""
    sdpa = encode_tiny_sam(SamAttentionOptions("sdpa", fused_mlp_gelu=False))
    monkeypatch.setattr(torch, "_addmm_activation", lambda *a, **k: pytest.fail("fused on the CPU"))
    assert torch.equal(encode_tiny_sam(SamAttentionOptions("sdpa", fused_mlp_gelu=True)), sdpa)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (cuBLASLt's GELU epilogue)")
def test_fused_mlp_gelu_on_cuda_matches_the_exact_gelu_in_bfloat16(encode_tiny_sam):
    from samrs_hf.sam.attention import install_attention

    model = encode_tiny_sam.model
    pixels, want = encode_tiny_sam.pixels.to("cuda", torch.bfloat16), None
    try:
        with torch.no_grad():
            outputs = {}
            for fused in (False, True):
                install_attention(model, SamAttentionOptions("triton", fused_mlp_gelu=fused))
                encoder = model.vision_encoder.to("cuda", torch.bfloat16)
                outputs[fused] = encoder(pixels).last_hidden_state.float()
            exact, fused = outputs[False], outputs[True]
            want = encoder.float()(pixels.float()).last_hidden_state
    finally:
        model.to("cpu", torch.float32)
    # the tanh GELU moves the output by less than bf16 itself does against float32
    assert (fused - exact).abs().max() <= (exact - want).abs().max()


def test_the_fused_gelu_is_recorded_where_it_applies(monkeypatch):
    """build.json says which GELU ran: the fused tanh form only on CUDA in half dtypes, never eager."""
    from samrs_hf.sam import options as sam_options
    from samrs_hf.sam.loading import load_sam

    def fused(device, dtype, attn="sdpa", **switches):
        return SamAttentionOptions.for_run(device, dtype, attn, **switches).fused_mlp_gelu

    assert fused("cuda", torch.bfloat16)
    assert fused(torch.device("cuda:1"), torch.float16)
    assert not fused("cuda", torch.float32)
    assert not fused("cpu", torch.bfloat16)
    assert not fused("cuda", torch.bfloat16, fused_mlp_gelu=False)
    info = load_sam("tiny-random", dtype=torch.bfloat16)[1]
    assert info.config["mlp_gelu"] == "exact (erf)" and not info.config["attention_options"]["fused_mlp_gelu"]
    monkeypatch.setattr(sam_options, "fused_gelu_applies", lambda device, dtype: True)  # as on CUDA
    info = load_sam("tiny-random", attn_implementation="sdpa")[1]
    assert info.config["mlp_gelu"].startswith("tanh") and info.config["attention_options"]["fused_mlp_gelu"]
    assert load_sam("tiny-random", attn_implementation="eager")[1].config["mlp_gelu"] == "exact (erf)"
    off = SamAttentionOptions("sdpa", fused_mlp_gelu=False)
    assert load_sam("tiny-random", attention_options=off)[1].config["mlp_gelu"] == "exact (erf)"
