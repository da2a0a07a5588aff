"""`--dtype auto`: bfloat16 only on CPUs that compute it natively; a warning for emulated bf16."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from samrs_hf.build.config import BuildConfig, resolve
from samrs_hf.sam import options

INTEL_FLAGS = "flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw avx512_vnni\n"
EPYC_FLAGS = "flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
SAPPHIRE_FLAGS = "flags\t\t: fpu sse avx2 avx512f amx_bf16 amx_tile amx_int8\n"


@pytest.fixture
def cpuinfo(tmp_path, monkeypatch):
    def write(text: str | None):
        path = tmp_path / "cpuinfo"
        if text is None:
            path = tmp_path / "missing"
        else:
            path.write_text("processor\t: 0\nmodel name\t: X\n" + text)
        monkeypatch.setattr(options, "CPUINFO", str(path))
    return write


@pytest.mark.parametrize("flags, native", [(INTEL_FLAGS, False), (EPYC_FLAGS, True), (SAPPHIRE_FLAGS, True),
                                           (None, False)])
def test_native_bf16_from_the_cpu_flags(cpuinfo, flags, native):
    cpuinfo(flags)
    assert options.native_cpu_bf16() is native
    assert options.resolve_dtype("auto", "cpu") == ("bfloat16" if native else "float32")
    assert options.resolve_dtype("auto", "cuda") == "float32"  # GPUs: segment-anything's precision
    assert options.resolve_dtype("float16", "cpu") == "float16"  # an explicit choice is kept
    assert (options.slow_dtype_warning("bfloat16", "cpu") is None) is native
    assert options.slow_dtype_warning("float32", "cpu") is None


def test_the_plan_fingerprints_the_resolved_dtype(cpuinfo, tmp_path):
    config = BuildConfig("sior", tmp_path, tmp_path / "o", model="tiny-random", device="cpu")
    assert config.dtype == "auto"
    cpuinfo(EPYC_FLAGS)
    on_epyc = resolve(config)
    cpuinfo(INTEL_FLAGS)
    on_xeon = resolve(config)
    assert (on_epyc.dtype, on_xeon.dtype) == ("bfloat16", "float32")
    # resuming on another kind of CPU would mix precisions: the fingerprints differ
    assert on_epyc.fingerprint != on_xeon.fingerprint
    assert on_xeon.fingerprint == resolve(BuildConfig("sior", tmp_path, tmp_path / "o", model="tiny-random",
                                                      device="cpu", dtype="float32")).fingerprint


def test_emulated_bf16_build_warns_once(cpuinfo, caplog, dior_sample):
    from samrs_hf.build.run import run_build

    cpuinfo(INTEL_FLAGS)
    out = dior_sample.parent / "b"
    with caplog.at_level(logging.WARNING):
        report = run_build(BuildConfig("sior", dior_sample, out, model="tiny-random", device="cpu",
                                       dtype="bfloat16", limit=1, progress=False))
    warnings = [r for r in caplog.records if "without native bf16" in r.getMessage()]
    assert len(warnings) == 1
    assert report["dtype"] == "bfloat16" and report["dtype_requested"] == "bfloat16"
    assert report["cpu_native_bf16"] is False


@pytest.fixture
def dior_sample(tmp_path) -> Path:
    from samrs_hf.sources.samples import write_dior_sample

    return write_dior_sample(tmp_path / "dior")
