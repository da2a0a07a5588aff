"""``--attn triton``: SAM's global attention through our flash kernel with the rel-pos bias fused.

Without a GPU the kernel itself runs in Triton's interpreter (``TRITON_INTERPRET=1``, in a child
process because triton reads it at import); the in-process tests check the routing, the custom op
under ``torch.compile`` and the CPU reference path that the op takes off CUDA.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers.models.sam import modeling_sam as ms

from samrs_hf import relpos_flash, sam_attention
from samrs_hf.relpos_flash import kernel_supports
from samrs_hf.sam_attention import SamVisionTritonAttention
from samrs_hf.sam_loading import ATTN_MARK, load_sam


def test_kernel_shapes():
    # vit_b / vit_l heads are 64 wide, vit_h 80 = 64 + 16; SAM's key grid rows: 64 global, 14 windowed
    assert all(kernel_supports(d, 64) for d in (16, 32, 48, 64, 80, 96, 128))
    assert not any(kernel_supports(d, 64) for d in (8, 40, 72, 112, 256))
    assert all(kernel_supports(80, w) for w in (1, 14, 48, 64, 128))
    assert not any(kernel_supports(80, w) for w in (0, 129, 256))


def test_triton_encoder_equals_sdpa_and_uses_the_op_in_global_layers_only(encode_tiny_sam, monkeypatch):
    calls = []
    real = relpos_flash.relpos_attention

    def op(query, key, value, rel_h, rel_w, scale):
        calls.append((tuple(query.shape), tuple(rel_h.shape), tuple(rel_w.shape)))
        assert rel_h.stride(-2) == 1  # key-row-major: one key row's column is contiguous over queries
        return real(query, key, value, rel_h, rel_w, scale)

    monkeypatch.setattr(relpos_flash, "relpos_attention", op)
    sdpa, got = encode_tiny_sam("sdpa"), encode_tiny_sam("triton")
    model = encode_tiny_sam.model
    assert all(type(layer.attn) is SamVisionTritonAttention for layer in model.vision_encoder.layers)
    assert getattr(model, ATTN_MARK) == "triton" and model.config._attn_implementation == "sdpa"
    torch.testing.assert_close(got, sdpa, rtol=1e-5, atol=1e-5)
    # tiny-random: layer 0 windowed (196 tokens, SDPA), layer 1 global (64x64 grid, the op)
    assert calls == [((1, 2, 4096, 16), (1, 2, 4096, 64), (1, 2, 4096, 64))]

    monkeypatch.setattr(sam_attention, "TRITON_WINDOWS", True)
    calls.clear()
    torch.testing.assert_close(encode_tiny_sam("triton"), sdpa, rtol=1e-5, atol=1e-5)
    # now layer 0's 25 windows (64x64 padded to 70x70) go through the op too
    assert calls == [((25, 2, 196, 16), (25, 2, 196, 14), (25, 2, 196, 14)),
                     ((1, 2, 4096, 16), (1, 2, 4096, 64), (1, 2, 4096, 64))]


def test_triton_attention_is_one_graph_under_torch_compile(encode_tiny_sam):
    """The custom op's fake implementation lets dynamo trace the encoder without a graph break."""
    eager = encode_tiny_sam("triton")
    torch._dynamo.reset()
    compiled = torch.compile(encode_tiny_sam.model.vision_encoder, fullgraph=True)
    with torch.no_grad():
        got = compiled(encode_tiny_sam.pixels).last_hidden_state
    torch.testing.assert_close(got, eager, rtol=1e-4, atol=1e-4)


def test_triton_on_cuda_without_triton_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(relpos_flash, "triton", None)
    with pytest.raises(ImportError, match=r"'triton' on CUDA needs the triton package"):
        load_sam("tiny-random", device="cuda", attn_implementation="triton")


def test_saved_triton_model_loads_with_stock_transformers(tmp_path):
    model, info = load_sam("tiny-random", attn_implementation="triton")
    assert info.config["attn_implementation"] == "triton"
    model.save_pretrained(tmp_path / "sam")
    assert "triton" not in (tmp_path / "sam" / "config.json").read_text()
    again, _ = load_sam(str(tmp_path / "sam"), attn_implementation="sdpa")
    assert type(again.vision_encoder.layers[1].attn) is ms.SamVisionSdpaAttention


INTERPRETED = textwrap.dedent("""
    import torch
    from samrs_hf import relpos_flash, sam_attention
    from samrs_hf.relpos_flash import reference_relpos_attention, relpos_attention, triton_relpos_attention
    from samrs_hf.sam_loading import load_sam, set_attn_implementation

    assert relpos_flash.interpreting()
    g = torch.Generator().manual_seed(0)
    # (batch, heads, key rows, key width, head dim): a 64+16 head dim (vit_h), query counts that do
    # not fill the last query block (masked rows), several batches and heads (strides), and rows that
    # are not a power of two (SAM's 14x14 windows: masked keys)
    for batch, heads, rows, width, dim in [(2, 3, 4, 16, 80), (1, 2, 3, 32, 64), (1, 1, 5, 16, 48),
                                           (3, 2, 14, 14, 80), (1, 1, 2, 40, 32)]:
        n = rows * width
        for dtype, tol in ((torch.float32, 1e-5), (torch.float16, 2e-3)):
            qkv = torch.randn(batch, n, 3, heads, dim, generator=g).to(dtype).permute(2, 0, 3, 1, 4)
            query, key, value = qkv.unbind(0)  # strided views of a fused qkv, as SAM makes them
            rel_h = torch.randn(batch, heads, n, rows, generator=g).to(dtype)
            if dtype == torch.float16:  # key-row-major, as --attn triton lays it out
                rel_h = rel_h.transpose(-1, -2).contiguous().transpose(-1, -2)
            rel_w = torch.randn(batch, heads, n, width, generator=g).to(dtype)
            got = triton_relpos_attention(query, key, value, rel_h, rel_w, dim ** -0.5)
            want = reference_relpos_attention(*(t.float() for t in (query, key, value, rel_h, rel_w)),
                                              dim ** -0.5)
            assert got.shape == (batch, n, heads, dim) and got.dtype == dtype
            err = (got.float() - want).abs().max().item()
            assert err < tol, (batch, heads, rows, width, dim, dtype, err)
    # a head dim the kernel does not take (40 = 32 + 8) goes through the reference
    q, k, v = torch.randn(3, 1, 1, 64, 40, generator=g).unbind(0)
    rh, rw = torch.randn(1, 1, 64, 4, generator=g), torch.randn(1, 1, 64, 16, generator=g)
    torch.testing.assert_close(relpos_attention(q, k, v, rh, rw, 0.2), reference_relpos_attention(q, k, v, rh, rw, 0.2))

    model = load_sam("tiny-random", attn_implementation="sdpa")[0]
    pixels = torch.randn(1, 3, 1024, 1024, generator=g)
    with torch.no_grad():
        sdpa = model.vision_encoder(pixels).last_hidden_state
        set_attn_implementation(model, "triton")  # the global layer runs the interpreted kernel
        got = model.vision_encoder(pixels).last_hidden_state
        sam_attention.TRITON_WINDOWS = True  # and the windowed one
        windows_too = model.vision_encoder(pixels).last_hidden_state
    torch.testing.assert_close(got, sdpa, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(windows_too, sdpa, rtol=1e-4, atol=1e-4)
    print("interpreted kernel OK")
""")


def test_kernel_in_triton_interpreter_matches_the_reference():
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", INTERPRETED], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "interpreted kernel OK" in proc.stdout


@pytest.mark.parametrize("dtype,capability", [("bf16", 90), ("fp32", 80)])
def test_kernel_compiles_for_cuda_without_a_gpu(dtype, capability):
    """The interpreter does not type-check like the compiler: compile for H100 (bf16, tensor-core
    wgmma) and A100 (float32, the parity runs' dtype) with triton's own toolchain, no GPU needed."""
    pytest.importorskip("triton")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from relpos_kernel_resources import compile_kernel

    block_m, warps, stages = relpos_flash.TUNING_CONFIGS[0]
    kernel = compile_kernel(dtype, block_m, warps, stages, head_dim=80, width=64, capability=capability)
    assert kernel.asm["cubin"] and kernel.metadata.shared > 0
    assert ("wgmma" in kernel.asm["ptx"]) is (capability == 90)
