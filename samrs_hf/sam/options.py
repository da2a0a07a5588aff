"""The SAM run options, declared once: attention choices, compute dtypes, the device check, and the
frozen :class:`SamAttentionOptions` a model's vision layers are built with.

The CLI and the build import these names to offer and check ``--attn``, ``--dtype`` and ``--device``;
nothing here imports torch at module level, so ``samrs --help`` stays fast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from ..common.devices import check_device  # noqa: F401  (the SAM options' device check)

ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flex", "triton")
"""``--attn`` choices: ``eager`` is transformers' own SAM layers (the reference); ``sdpa``, ``flex`` and
``triton`` are :mod:`samrs_hf.sam.attention`'s layers."""
CUSTOM_VISION_ATTN = ("flex", "triton")  # transformers does not know these: its config keeps "sdpa"
ATTN_MARK = "samrs_vision_attention"  # model attribute; the config keeps "sdpa" so saved folders load anywhere
OPTIONS_MARK = "samrs_attention_options"  # model attribute: the SamAttentionOptions its layers were built with
DTYPES = ("float32", "bfloat16", "float16")
"""The SAM compute dtypes."""
AUTO_DTYPE = "auto"
DTYPE_CHOICES = (AUTO_DTYPE, *DTYPES)
"""``samrs build --dtype`` choices: ``auto`` is :func:`resolve_dtype`'s pick for the device."""
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = "/proc/cpuinfo"
HALF_DTYPES = ("bfloat16", "float16")


def parse_attn(attn: str) -> str:
    """A checked ``--attn`` value (ValueError naming the choices otherwise)."""
    if attn not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"attention implementation must be one of {', '.join(ATTN_IMPLEMENTATIONS)}, "
                         f"got {attn!r}")
    return attn


def transformers_attn(attn: str) -> str:
    """What transformers' config is told: it knows no "flex" or "triton" (its decoder then runs sdpa)."""
    return "sdpa" if parse_attn(attn) in CUSTOM_VISION_ATTN else attn


def parse_dtype(dtype: Any):
    """``"float32" | "bfloat16" | "float16"`` (or that torch.dtype, or None = float32) -> torch.dtype."""
    import torch

    if dtype is None:
        return torch.float32
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ValueError(f"SAM dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return getattr(torch, name)


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (an x86 ``avx512_bf16`` or ``amx_bf16`` flag in
    /proc/cpuinfo; False where that cannot be read). Without it torch emulates bf16, and SAM's encoder
    runs slower than in float32 (measured per CPU in benchmarks/README.md)."""
    try:
        with open(CPUINFO) as f:
            return any(line.startswith("flags") and set(line.split()) & set(NATIVE_BF16_FLAGS) for line in f)
    except OSError:
        return False


def resolve_dtype(dtype: str, device_type: str) -> str:
    """The dtype a build computes in: ``auto`` is bfloat16 on a CPU with native bf16 (faster than float32
    there) and float32 elsewhere, GPUs included (segment-anything's own precision; ask for
    bfloat16 on a GPU for speed)."""
    if dtype != AUTO_DTYPE:
        return dtype
    return "bfloat16" if device_type == "cpu" and native_cpu_bf16() else "float32"


def slow_dtype_warning(dtype: str, device_type: str) -> str | None:
    """The one-line warning for bfloat16 on a CPU that emulates it, else None."""
    if dtype == "bfloat16" and device_type == "cpu" and not native_cpu_bf16():
        return ("--dtype bfloat16 on a CPU without native bf16 (no avx512_bf16/amx_bf16): torch emulates it, so "
                "labeling will be slower than with --dtype float32 (or --dtype auto)")
    return None


def default_attn_implementation(device: Any) -> str:
    """``triton`` on CUDA when triton is installed (faster, half the peak memory, same parity), ``sdpa``
    elsewhere (faster than eager on CPU); figures in benchmarks/README.md."""
    import torch

    from .relpos_flash import triton

    return "triton" if torch.device(device).type == "cuda" and triton is not None else "sdpa"


def fused_gelu_applies(device: Any, dtype: Any) -> bool:
    """Whether the fused (tanh) GELU can run: cuBLASLt's epilogue, in a half dtype on CUDA only."""
    import torch

    return torch.device(device).type == "cuda" and str(dtype).removeprefix("torch.") in HALF_DTYPES


@dataclass(frozen=True)
class SamAttentionOptions:
    """How a model's vision layers compute, fixed when they are built (:func:`install_attention`).

    ``attn``: one of :data:`ATTN_IMPLEMENTATIONS`. ``fused_mlp_gelu``: each MLP's lin1, bias and GELU
    as one cuBLASLt matmul (tanh GELU, within bfloat16's rounding of SAM's exact one; taken in half
    dtypes on CUDA only). ``triton_windows``: with ``triton``, the windowed layers through the kernel
    too (else SDPA). ``unpadded_windows``: windowed layers project qkv/proj on the unpadded grid
    (else transformers' zero padding). ``flex_inline``: under an outer torch.compile on CUDA, trace
    flex into the same graph (else a separately compiled flex across a graph break).
    """

    attn: str = "sdpa"
    fused_mlp_gelu: bool = True
    triton_windows: bool = True
    unpadded_windows: bool = True
    flex_inline: bool = True

    def __post_init__(self):
        parse_attn(self.attn)

    @classmethod
    def for_run(cls, device: Any, dtype: Any, attn: str | None = None, **switches) -> "SamAttentionOptions":
        """The options a model running on ``device`` in ``dtype`` gets: ``attn`` None = the device's
        default; ``switches`` override the other fields; then :meth:`resolved`."""
        return cls(attn=attn or default_attn_implementation(device), **switches).resolved(device, dtype)

    def resolved(self, device: Any, dtype: Any) -> "SamAttentionOptions":
        """The same options with ``fused_mlp_gelu`` true only where it runs (not eager, CUDA, half
        dtype), so what ``build.json`` records is what ran."""
        fused = self.fused_mlp_gelu and self.attn != "eager" and fused_gelu_applies(device, dtype)
        return replace(self, fused_mlp_gelu=fused)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
