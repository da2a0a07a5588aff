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

from samrs_hf.sam import relpos_flash
from samrs_hf.sam.relpos_flash import kernel_supports
from samrs_hf.sam.attention import SamVisionRelPosAttention, SamVisionTritonAttention, SamVisionWindowLayer
from samrs_hf.sam.loading import ATTN_MARK, load_sam
from samrs_hf.sam.options import SamAttentionOptions
from support_sam import BLOCK_CASES, sam_block_and_layer


def test_kernel_shapes():
    # vit_b / vit_l heads are 64 wide, vit_h 80 = 64 + 16; SAM's key grid rows: 64 global, 14 windowed
    assert all(kernel_supports(d, 64) for d in (16, 32, 48, 64, 80, 96, 128))
    assert not any(kernel_supports(d, 64) for d in (8, 40, 72, 112, 256))
    assert all(kernel_supports(80, w) for w in (1, 14, 48, 64, 128))
    assert not any(kernel_supports(80, w) for w in (0, 129, 256))


def test_triton_encoder_equals_sdpa_and_sends_every_layer_through_the_op(encode_tiny_sam, monkeypatch):
    calls = []
    real = relpos_flash.relpos_attention

    def op(query, key, value, key_bias, value_bias, rel_h, rel_w, scale, window):
        calls.append((tuple(query.shape), tuple(rel_h.shape), tuple(rel_w.shape), window))
        assert rel_h.stride(-2) == 1  # key-row-major: one key row's column is contiguous over queries
        return real(query, key, value, key_bias, value_bias, rel_h, rel_w, scale, window)

    monkeypatch.setattr(relpos_flash, "relpos_attention", op)
    sdpa, got = encode_tiny_sam("sdpa"), encode_tiny_sam("triton")
    model = encode_tiny_sam.model
    assert all(type(layer.attn) is SamVisionTritonAttention for layer in model.vision_encoder.layers)
    assert all(type(layer) is SamVisionWindowLayer for layer in model.vision_encoder.layers)
    assert getattr(model, ATTN_MARK) == "triton" and model.config._attn_implementation == "sdpa"
    torch.testing.assert_close(got, sdpa, rtol=1e-5, atol=1e-5)
    # tiny-random: layer 0 windowed, handing the op its unpadded 64x64 grid and the window size (SAM
    # pads it to 70x70), layer 1 global
    assert calls == [((1, 64, 64, 2, 16), (1, 2, 4096, 14), (1, 2, 4096, 14), 14),
                     ((1, 64, 64, 2, 16), (1, 2, 4096, 64), (1, 2, 4096, 64), 0)]

    calls.clear()
    sdpa_windows = SamAttentionOptions("triton", triton_windows=False)
    torch.testing.assert_close(encode_tiny_sam(sdpa_windows), sdpa, rtol=1e-5, atol=1e-5)
    # now the windowed layer runs SDPA on its 14x14 windows, only the global one the op
    assert calls == [((1, 64, 64, 2, 16), (1, 2, 4096, 64), (1, 2, 4096, 64), 0)]
    encode_tiny_sam("eager")  # back to transformers' own layers
    assert all(type(layer) is ms.SamVisionLayer for layer in model.vision_encoder.layers)


@pytest.mark.parametrize("windows", [False, True])
def test_triton_attention_is_one_graph_under_torch_compile(encode_tiny_sam, windows):
    """The custom op's fake implementation lets dynamo trace the encoder without a graph break."""
    eager = encode_tiny_sam(SamAttentionOptions("triton", triton_windows=windows))
    torch._dynamo.reset()
    compiled = torch.compile(encode_tiny_sam.model.vision_encoder, fullgraph=True)
    with torch.no_grad():
        got = compiled(encode_tiny_sam.pixels).last_hidden_state
    torch.testing.assert_close(got, eager, rtol=1e-4, atol=1e-4)


def test_triton_on_cuda_without_triton_is_a_clear_error(monkeypatch):
    from samrs_hf.sam import loading as sam_loading

    monkeypatch.setattr(relpos_flash, "triton", None)
    monkeypatch.setattr(sam_loading, "check_device", lambda device: None)  # this CPU machine has no CUDA
    with pytest.raises(ImportError, match=r"'triton' on CUDA needs the triton package"):
        load_sam("tiny-random", device="cuda", attn_implementation="triton")


def test_saved_triton_model_loads_with_stock_transformers(tmp_path):
    model, info = load_sam("tiny-random", attn_implementation="triton")
    assert info.config["attn_implementation"] == "triton"
    model.save_pretrained(tmp_path / "sam")
    assert "triton" not in (tmp_path / "sam" / "config.json").read_text()
    again, _ = load_sam(str(tmp_path / "sam"), attn_implementation="sdpa")
    assert type(again.vision_encoder.layers[1].attn) is SamVisionRelPosAttention


@pytest.mark.parametrize("use_rel_pos", [True, False])
def test_windowed_layer_on_the_unpadded_grid_equals_segment_anything(use_rel_pos):
    """The layer hands the whole grid to the op, which windows and pads it as SAM does (here through
    the op's CPU reference; the interpreter test runs the kernel the same way)."""
    for batch, height, width, window, heads, head_dim in BLOCK_CASES:
        block, layer = sam_block_and_layer(heads * head_dim, heads, window, max(height, width), use_rel_pos)
        x = torch.randn(batch, height, width, heads * head_dim, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            torch.testing.assert_close(layer(x), block(x), rtol=1e-4, atol=2e-4)


INTERPRETED = textwrap.dedent("""

    import torch
    from samrs_hf.sam import relpos_flash
    from samrs_hf.sam.attention import install_attention
    from samrs_hf.sam.relpos_flash import reference_relpos_attention, relpos_attention, triton_relpos_attention
    from samrs_hf.sam.loading import load_sam
    from samrs_hf.sam.options import SamAttentionOptions

    assert relpos_flash.interpreting()
    g = torch.Generator().manual_seed(0)
    # (batch, heads, grid height, grid width, window, head dim): global grids and windowed ones, some
    # padded like SAM's 64 -> 70 (masked keys filled with the qkv bias, dropped queries), key rows that
    # are not a power of two (masked keys), a 64+16 head dim (vit_h), several batches and heads (strides)
    cases = [(2, 3, 4, 16, 0, 80), (1, 2, 3, 32, 0, 64), (1, 1, 5, 16, 0, 48), (1, 2, 10, 10, 4, 80),
             (2, 1, 9, 12, 5, 32), (1, 2, 28, 28, 14, 48), (1, 1, 2, 40, 0, 32)]
    runs = [(case, rows) for case in cases for rows in ((1, 2, 4, 8) if case[4] else (1, 2))]
    for (batch, heads, height, width, window, dim), key_rows in runs:
        # key rows per block: one, and 2, 4, 8 for windows (the block's rows past the window masked)
        relpos_flash.INTERPRETER_ROWS = key_rows
        rows, cols = (height, width) if window == 0 else (window, window)
        for dtype, tol in ((torch.float32, 1e-5), (torch.float16, 2e-3)):
            qkv = torch.randn(batch, height, width, 3, heads, dim, generator=g).to(dtype)
            query, key, value = qkv.unbind(3)  # strided views of a fused qkv, as SAM makes them
            key_bias, value_bias = torch.randn(2, heads, dim, generator=g).to(dtype).unbind(0)
            rel_h = torch.randn(batch, heads, height * width, rows, generator=g).to(dtype)
            rel_w = torch.randn(batch, heads, height * width, cols, generator=g).to(dtype)
            if dtype == torch.float16:  # key-row-major, as --attn triton lays it out
                rel_h = rel_h.transpose(-1, -2).contiguous().transpose(-1, -2)
            args = (query, key, value, key_bias, value_bias, rel_h, rel_w)
            got = triton_relpos_attention(*args, dim ** -0.5, window)
            want = reference_relpos_attention(*(t.float() for t in args), dim ** -0.5, window)
            assert got.shape == (batch, height, width, heads, dim) and got.dtype == dtype
            err = (got.float() - want).abs().max().item()
            assert err < tol, (batch, heads, height, width, window, dim, key_rows, dtype, err)
    # a head dim the kernel does not take (40 = 32 + 8) goes through the reference
    q, k, v = torch.randn(3, 1, 8, 8, 1, 40, generator=g).unbind(0)
    kb, vb = torch.randn(2, 1, 40, generator=g).unbind(0)
    rh, rw = torch.randn(1, 1, 64, 8, generator=g), torch.randn(1, 1, 64, 8, generator=g)
    torch.testing.assert_close(relpos_attention(q, k, v, kb, vb, rh, rw, 0.2, 0),
                               reference_relpos_attention(q, k, v, kb, vb, rh, rw, 0.2, 0))

    # an fp32 qkv bias (autocast keeps it) with fp16 activations
    q, k, v = torch.randn(3, 1, 10, 10, 2, 32, generator=g).half().unbind(0)
    kb, vb = torch.randn(2, 2, 32, generator=g).unbind(0)
    rh, rw = torch.randn(2, 1, 2, 100, 4, generator=g).half().unbind(0)
    torch.testing.assert_close(triton_relpos_attention(q, k, v, kb, vb, rh, rw, 0.2, 4).float(),
                               reference_relpos_attention(q.float(), k.float(), v.float(), kb, vb, rh.float(),
                                                          rw.float(), 0.2, 4), rtol=2e-3, atol=2e-3)

    # whole layers against segment-anything's Block, the windowed ones through the kernel
    import sys
    sys.path.insert(0, TESTS)
    from support_sam import BLOCK_CASES, sam_block_and_layer
    for batch, height, width, window, heads, head_dim in BLOCK_CASES:
        block, layer = sam_block_and_layer(heads * head_dim, heads, window, max(height, width))
        x = torch.randn(batch, height, width, heads * head_dim, generator=g)
        with torch.no_grad():
            torch.testing.assert_close(layer(x), block(x), rtol=1e-4, atol=2e-4)

    model = load_sam("tiny-random", attn_implementation="sdpa")[0]
    pixels = torch.randn(1, 3, 1024, 1024, generator=g)
    with torch.no_grad():
        sdpa = model.vision_encoder(pixels).last_hidden_state
        install_attention(model, SamAttentionOptions("triton", triton_windows=False))  # the global layer
        got = model.vision_encoder(pixels).last_hidden_state  # runs the interpreted kernel
        install_attention(model, SamAttentionOptions("triton"))  # and the windowed one, on the unpadded grid
        windows_too = model.vision_encoder(pixels).last_hidden_state
    torch.testing.assert_close(got, sdpa, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(windows_too, sdpa, rtol=1e-4, atol=1e-4)
    print("interpreted kernel OK")
""")


LOOP_PROBE = textwrap.dedent("""
    import torch, triton, triton.language as tl

    @triton.jit
    def count(X, n):
        acc = 0.0
        for i in range(0, n, 1):
            acc += 1.0
        tl.store(X, acc)

    x = torch.zeros(1)
    try:
        count[(1,)](x, 3)
    except Exception as exc:
        print("cannot loop:", repr(exc)[:300])
    else:
        print("loops", float(x[0]))
""")


TRITON_ABSENT = "triton is not installed (it is not in the `test` extra: pip install -e '.[triton]')"


def test_kernel_in_triton_interpreter_matches_the_reference():
    pytest.importorskip("triton", reason=TRITON_ABSENT)
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    # The kernel loops over key rows up to a kernel argument. triton 3.6's interpreter (torch 2.11's)
    # cannot run such a loop with numpy 2.4: its __index__ calls int() on a 1-element array (3.9's
    # squeezes it first). Compiled for a GPU the kernel runs (benchmarks/gpu_check.py); say which
    # install cannot check it here.
    probe = subprocess.run([sys.executable, "-c", LOOP_PROBE], env=env, capture_output=True, text=True, timeout=120)
    if "cannot loop" in probe.stdout:
        import numpy
        import triton

        pytest.skip(f"triton {triton.__version__}'s interpreter with numpy {numpy.__version__} cannot run a "
                    f"loop bounded by a kernel argument ({probe.stdout.strip()})")
    assert "loops 3.0" in probe.stdout, probe.stdout + probe.stderr[-2000:]
    code = f"TESTS = {str(Path(__file__).resolve().parent)!r}\n" + INTERPRETED
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "interpreted kernel OK" in proc.stdout


@pytest.mark.parametrize("dtype,capability,window,config", [
    (torch.bfloat16, 90, 0, (64, 1, 4, 2)), (torch.bfloat16, 90, 14, (64, 2, 4, 2)),
    (torch.bfloat16, 90, 14, (64, 8, 8, 2)), (torch.float32, 80, 0, None)])
def test_kernel_compiles_for_cuda_without_a_gpu(dtype, capability, window, config):
    """The interpreter does not type-check like the compiler: compile for H100 (bf16, tensor-core
    wgmma; a global layer, and padded windows two key rows a block) and A100 (float32, the parity
    runs' dtype) with triton's own toolchain and the signature SAM's tensors give the JIT, no GPU needed."""
    pytest.importorskip("triton", reason=TRITON_ABSENT)
    from samrs_hf.sam.relpos_compile import compile_kernel

    config = config or relpos_flash.FLOAT32_CONFIGS[0]
    assert config in relpos_flash.tuning_configs(dtype, window)
    kernel = compile_kernel(dtype, *config, window=window, capability=capability)
    assert kernel.asm["cubin"] and kernel.metadata.shared > 0
    assert ("wgmma" in kernel.asm["ptx"]) is (capability == 90 and dtype == torch.bfloat16)
