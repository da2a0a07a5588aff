"""Load a SAM model from any of the forms ``--model`` accepts.

SAMRS labelled with the original segment-anything ViT-H checkpoint; the Hub hosts the same weights as
``facebook/sam-vit-huge``. Both forms (and ``save_pretrained`` folders) end up as one transformers
``SamModel`` so the engine has a single code path. ``tiny-random`` is a small seeded model for
offline demos and tests: identical weights in every process, flagged ``random`` so outputs say so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..common.hub_ids import HubError, from_cache_or_hub
from ..sources.records import SourceError


DEFAULT_MODEL = "facebook/sam-vit-huge"
TINY_RANDOM = "tiny-random"
RANDOM_MARK = "samrs_random_weights"  # config attribute: survives save_pretrained, so copies stay flagged
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flex", "triton")
ATTN_MARK = "samrs_vision_attention"  # model attribute; the config keeps "sdpa" so saved folders load anywhere
CUSTOM_VISION_ATTN = ("flex", "triton")  # our vision attention classes (sam_attention.py)


class ModelLoadError(SourceError):
    """The ``--model`` spec cannot be turned into a SamModel; the message names the spec/file."""


@dataclass
class ModelInfo:
    spec: str
    kind: str  # "hub" | "folder" | "pth" | "tiny-random"
    random: bool
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "kind": self.kind, "random": self.random, "config": dict(self.config)}


# --------------------------------------------------------------------------------------------------
# segment-anything checkpoint -> transformers SamModel
# --------------------------------------------------------------------------------------------------

# Ordered (pattern, replacement) pairs applied once each; they mirror the key layout of
# segment_anything.modeling (ImageEncoderViT, PromptEncoder, MaskDecoder, TwoWayTransformer).
_KEY_RULES: tuple[tuple[str, str], ...] = (
    (r"^image_encoder\.", "vision_encoder."),
    (r"\.patch_embed\.proj\.", ".patch_embed.projection."),
    (r"\.blocks\.", ".layers."),
    (r"\.neck\.0\.", ".neck.conv1."),
    (r"\.neck\.1\.", ".neck.layer_norm1."),
    (r"\.neck\.2\.", ".neck.conv2."),
    (r"\.neck\.3\.", ".neck.layer_norm2."),
    (r"\.norm(\d|_final_attn)\.", r".layer_norm\1."),
    (r"\.pe_layer\.positional_encoding_gaussian_matrix$", ".shared_embedding.positional_embedding"),
    (r"\.point_embeddings\.", ".point_embed."),
    (r"\.mask_downscaling\.0\.", ".mask_embed.conv1."),
    (r"\.mask_downscaling\.1\.", ".mask_embed.layer_norm1."),
    (r"\.mask_downscaling\.3\.", ".mask_embed.conv2."),
    (r"\.mask_downscaling\.4\.", ".mask_embed.layer_norm2."),
    (r"\.mask_downscaling\.6\.", ".mask_embed.conv3."),
    (r"\.output_upscaling\.0\.", ".upscale_conv1."),
    (r"\.output_upscaling\.1\.", ".upscale_layer_norm."),
    (r"\.output_upscaling\.3\.", ".upscale_conv2."),
)
# segment-anything's MLP(layers=[in, hidden..., out]) -> SamFeedForward(proj_in, layers, proj_out).
_MLP_KEY = re.compile(r"^(mask_decoder\.(?:iou_prediction_head|output_hypernetworks_mlps\.\d+))\.layers\.(\d+)\.(.*)$")
_IGNORED_KEYS = ("pixel_mean", "pixel_std")


def _rename_key(key: str, mlp_depths: dict[str, int]) -> str:
    match = _MLP_KEY.match(key)
    if match:
        prefix, idx, rest = match.group(1), int(match.group(2)), match.group(3)
        last = mlp_depths[prefix] - 1
        sub = "proj_in" if idx == 0 else "proj_out" if idx == last else f"layers.{idx - 1}"
        return f"{prefix}.{sub}.{rest}"
    for pattern, repl in _KEY_RULES:
        key = re.sub(pattern, repl, key)
    return key


def _count_indexed(state_dict: dict, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in state_dict if (m := pat.match(k))}
    return max(found) + 1 if found else 0


def _infer_config(sd: dict) -> "Any":
    """SamConfig from tensor shapes: segment-anything checkpoints carry no config."""
    from transformers import SamConfig

    def need(key):
        if key not in sd:
            raise KeyError(key)
        return sd[key]

    patch_w = need("image_encoder.patch_embed.proj.weight")
    hidden, patch = int(patch_w.shape[0]), int(patch_w.shape[-1])
    depth = _count_indexed(sd, "image_encoder.blocks.")
    if depth == 0:
        raise KeyError("image_encoder.blocks.0.*")
    pos = sd.get("image_encoder.pos_embed")
    grid = int(pos.shape[1]) if pos is not None else 64
    image_size = grid * patch
    use_rel_pos = "image_encoder.blocks.0.attn.rel_pos_h" in sd
    global_idx, window = [], 14
    if use_rel_pos:
        head_dim = int(sd["image_encoder.blocks.0.attn.rel_pos_h"].shape[1])
        for i in range(depth):
            length = int(need(f"image_encoder.blocks.{i}.attn.rel_pos_h").shape[0])
            if length == 2 * grid - 1:
                global_idx.append(i)
            else:
                window = (length + 1) // 2
    else:  # heads are not visible in the shapes without rel-pos tables; SAM's ViTs use 64-wide heads
        head_dim = 64
    if hidden % head_dim:
        raise ValueError(f"hidden size {hidden} is not a multiple of the head width {head_dim}")
    mlp_dim = int(need("image_encoder.blocks.0.mlp.lin1.weight").shape[0])
    out_chans = int(need("image_encoder.neck.0.weight").shape[0])
    pe = need("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix")
    mask_chans = int(need("prompt_encoder.mask_downscaling.3.weight").shape[0])
    dec_hidden = int(need("mask_decoder.iou_token.weight").shape[1])
    dec_layers = _count_indexed(sd, "mask_decoder.transformer.layers.")
    dec_mlp = int(need("mask_decoder.transformer.layers.0.mlp.lin1.weight").shape[0])
    n_mask_tokens = int(need("mask_decoder.mask_tokens.weight").shape[0])
    iou_depth = _count_indexed(sd, "mask_decoder.iou_prediction_head.layers.")
    iou_hidden = int(need("mask_decoder.iou_prediction_head.layers.0.weight").shape[0])
    inner = int(need("mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight").shape[0])
    return SamConfig(
        vision_config=dict(
            hidden_size=hidden, num_hidden_layers=depth, num_attention_heads=hidden // head_dim,
            mlp_dim=mlp_dim, output_channels=out_chans, image_size=image_size, patch_size=patch,
            use_abs_pos=pos is not None, use_rel_pos=use_rel_pos, window_size=window,
            global_attn_indexes=global_idx, num_pos_feats=int(pe.shape[1]),
        ),
        prompt_encoder_config=dict(
            hidden_size=out_chans, image_size=image_size, patch_size=patch, mask_input_channels=mask_chans,
        ),
        mask_decoder_config=dict(
            hidden_size=dec_hidden, mlp_dim=dec_mlp, num_hidden_layers=dec_layers,
            attention_downsample_rate=max(1, dec_hidden // inner), num_multimask_outputs=n_mask_tokens - 1,
            iou_head_depth=iou_depth, iou_head_hidden_dim=iou_hidden,
        ),
    )


def convert_sam_checkpoint(state_dict: dict) -> tuple[Any, dict]:
    """segment-anything state dict -> (SamConfig, transformers SamModel state dict).

    The decoder's attention head count (8 in every released SAM) is not visible in tensor shapes and
    is kept at SamMaskDecoderConfig's default.
    """
    if isinstance(state_dict, dict) and "model" in state_dict and isinstance(state_dict["model"], dict):
        state_dict = state_dict["model"]
    config = _infer_config(state_dict)
    mlp_depths = {}
    for key in state_dict:
        match = _MLP_KEY.match(key)
        if match:
            mlp_depths[match.group(1)] = max(mlp_depths.get(match.group(1), 0), int(match.group(2)) + 1)
    converted = {
        _rename_key(k, mlp_depths): v for k, v in state_dict.items() if k not in _IGNORED_KEYS
    }
    pe = converted["prompt_encoder.shared_embedding.positional_embedding"]
    converted["shared_image_embedding.positional_embedding"] = pe
    return config, converted


# --------------------------------------------------------------------------------------------------
# tiny-random
# --------------------------------------------------------------------------------------------------


def tiny_random_config():
    """Small SAM with SAM's geometry (1024 input, 64x64 embedding, 256x256 low-res masks)."""
    from transformers import SamConfig

    return SamConfig(
        vision_config=dict(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64, output_channels=32,
            image_size=1024, patch_size=16, window_size=14, global_attn_indexes=[1], num_pos_feats=16,
        ),
        prompt_encoder_config=dict(hidden_size=32, image_size=1024, patch_size=16, mask_input_channels=16),
        mask_decoder_config=dict(
            hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=32,
        ),
    )


def _seeded_init(model, seed: int) -> None:
    """Fill every parameter from one CPU generator in name order: identical in every process/machine.

    Weights are drawn with std 1/sqrt(fan_in) (not transformers' 1e-10 vision init) so the image
    actually influences the masks of a random model.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            leaf = name.rsplit(".", 1)[-1]
            is_norm = "layer_norm" in name or "norm" in name.rsplit(".", 2)[-2]
            if is_norm and leaf == "weight":
                value = torch.ones(param.shape)
            elif leaf == "bias" or is_norm:
                value = torch.zeros(param.shape)
            else:
                fan_in = max(1, param[0].numel()) if param.dim() > 1 else 1
                value = torch.randn(param.shape, generator=gen) / fan_in**0.5
            param.copy_(value)


# --------------------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------------------


def summarize_config(config) -> dict[str, Any]:
    v = config.vision_config
    return {
        "vision_hidden_size": v.hidden_size,
        "vision_depth": v.num_hidden_layers,
        "vision_heads": v.num_attention_heads,
        "global_attn_indexes": list(v.global_attn_indexes),
        "window_size": v.window_size,
        "image_size": v.image_size,
        "patch_size": v.patch_size,
        "decoder_hidden_size": config.mask_decoder_config.hidden_size,
    }


def sam_model_from_checkpoint(state_dict: dict, attn: str = "eager"):
    """SamModel from a segment-anything state dict (converted; weights assigned, no random init).
    ``attn`` as in :func:`set_attn_implementation`.

    Raises KeyError/ValueError for tensors that do not fit SAM's layout.
    """
    import torch
    from transformers import SamModel

    config, converted = convert_sam_checkpoint(state_dict)
    config._attn_implementation = _transformers_attn(attn)
    with torch.device("meta"):  # skip the random init of up to 640M parameters
        model = SamModel(config)
    try:
        missing, unexpected = model.load_state_dict(converted, strict=False, assign=True)
    except RuntimeError as exc:  # a tensor whose shape disagrees with the others
        detail = " ".join(line.strip() for line in str(exc).splitlines()[1:3])
        raise ValueError(f"checkpoint does not match the inferred SAM layout ({detail})") from None
    if missing or unexpected:
        raise ValueError(f"checkpoint does not match the inferred SAM layout (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")
    meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if meta:
        raise ValueError(f"checkpoint does not match the inferred SAM layout (missing {meta[:5]})")
    set_attn_implementation(model, attn)
    return model


def _from_pth(path: Path, attn: str):
    from ..common.safe_load import UnsafePickleError, load_checkpoint

    try:
        state_dict = load_checkpoint(path)
    except UnsafePickleError:
        raise
    except Exception as exc:  # torch raises many types for non-checkpoints (UnpicklingError, RuntimeError...)
        raise ModelLoadError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state_dict, dict):
        raise ModelLoadError(f"{path}: expected a state dict, found {type(state_dict).__name__}")
    try:
        return sam_model_from_checkpoint(state_dict, attn)
    except ValueError as exc:
        raise ModelLoadError(f"{path}: {exc}") from None
    except (KeyError, AttributeError, IndexError) as exc:
        raise ModelLoadError(
            f"{path}: not a segment-anything SAM checkpoint (missing or malformed tensor {exc})"
        ) from None


def load_sam(
    spec: str = DEFAULT_MODEL,
    *,
    device: Any = "cpu",
    dtype: Any = None,
    seed: int = 0,
    attn_implementation: str | None = None,
):
    """Return ``(SamModel, ModelInfo)`` in eval mode on ``device``.

    ``dtype`` (default float32) is applied the way the engine runs it (:func:`prepare_model`):
    encoder and decoder in ``dtype``, prompt encoder in float32. ``attn_implementation`` is
    ``"sdpa"``, ``"eager"``, ``"flex"`` or ``"triton"`` (:mod:`samrs_hf.sam.attention`); None picks the faster
    one for the device (see benchmarks/README.md).
    """
    import torch
    from transformers import SamModel

    dtype = torch.float32 if dtype is None else dtype
    check_device(device)  # before minutes of loading
    attn = attn_implementation or default_attn_implementation(device)
    _check_attn(attn)  # before minutes of loading
    if attn == "triton" and torch.device(device).type == "cuda":
        from .relpos_flash import require_triton

        require_triton()
    spec = str(spec)
    path = Path(spec).expanduser()
    if spec == TINY_RANDOM:
        config = tiny_random_config()
        config._attn_implementation = _transformers_attn(attn)
        model = SamModel(config)
        _seeded_init(model, seed)
        setattr(model.config, RANDOM_MARK, True)
        kind, random = TINY_RANDOM, True
    elif spec.endswith((".pth", ".pt", ".bin")) or path.is_file():
        if not path.is_file():
            raise ModelLoadError(f"{path}: SAM checkpoint file not found")
        model = _from_pth(path, attn)
        kind, random = "pth", False
    elif path.is_dir() or spec.startswith((".", "/", "~")):
        if not path.exists():
            raise ModelLoadError(f"{path}: model folder not found")
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path}: not a save_pretrained SAM folder (no config.json)")
        try:
            model = _from_pretrained(path, attn)
        except OSError as exc:
            raise ModelLoadError(f"{path}: cannot load SamModel ({type(exc).__name__}: {exc})") from None
        kind, random = "folder", bool(getattr(model.config, RANDOM_MARK, False))
    else:
        try:
            model = from_cache_or_hub(lambda source, **hub: _from_pretrained(source, attn, **hub), spec)
        except HubError as exc:
            raise ModelLoadError(f"{exc}; pass a local save_pretrained folder, a segment-anything .pth "
                                 f"checkpoint or 'tiny-random' instead") from None
        except OSError as exc:
            raise ModelLoadError(
                f"{spec}: cannot load the Hub model; pass a local save_pretrained folder, a "
                f"segment-anything .pth checkpoint or 'tiny-random' ({type(exc).__name__}: {exc})"
            ) from None
        kind, random = "hub", bool(getattr(model.config, RANDOM_MARK, False))
    set_attn_implementation(model, attn)
    prepare_model(model, device, dtype)
    summary = summarize_config(model.config)
    summary["parameters"] = sum(p.numel() for p in model.parameters())
    summary["attn_implementation"] = attn
    from .attention import SamVisionMLP, fused_gelu_applies

    fused = isinstance(model.vision_encoder.layers[0].mlp, SamVisionMLP) and fused_gelu_applies(device, dtype)
    summary["mlp_gelu"] = "tanh (fused into lin1, cuBLASLt epilogue)" if fused else "exact (erf)"
    summary["dtype"] = str(dtype).removeprefix("torch.")
    return model, ModelInfo(spec=spec, kind=kind, random=random, config=summary)


def _from_pretrained(source, attn: str, **hub):
    """SamModel.from_pretrained, refusing weights that leave tensors out: transformers would fill them
    with random values and go on (a folder of another model, a partial file), and the masks would be
    noise recorded as a real model. ``hub``: from_pretrained's Hub options (``local_files_only``)."""
    from transformers import SamModel

    try:
        model, loading = SamModel.from_pretrained(
            source, attn_implementation=_transformers_attn(attn), output_loading_info=True, **hub
        )
    except OSError:
        raise  # not there (or not reachable): the caller says what to pass instead
    except Exception as exc:  # RuntimeError (shapes), SafetensorError (truncated file), ValueError...
        raise ModelLoadError(f"{source}: cannot load SamModel ({type(exc).__name__}: {exc})") from None
    missing = sorted(loading.get("missing_keys") or ())
    mismatched = sorted(str(k) for k in loading.get("mismatched_keys") or ())
    if missing or mismatched:
        problem = (f"{len(missing)} SamModel tensors missing from its weights ({', '.join(missing[:3])}"
                   f"{', ...' if len(missing) > 3 else ''})" if missing
                   else f"tensors of the wrong shape ({', '.join(mismatched[:3])})")
        raise ModelLoadError(f"{source}: not a complete SAM model: {problem}")
    return model


def check_device(device: Any) -> None:
    """A clear error for a device this machine lacks, instead of torch's assertion deep in ``.to``."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r} is not a torch device ({exc})") from None
    if dev.type == "cpu":
        return
    try:  # any backend (cuda, mps, xpu...): its own reason, e.g. "Torch not compiled with CUDA enabled"
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError) as exc:
        reason = str(exc).strip().split(". ")[0].splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"device {str(device)!r} is not available: {reason}") from None


def default_attn_implementation(device: Any) -> str:
    """``triton`` on CUDA when triton is installed: on an H200 (vit_h, bf16, compiled, 150 boxes) it
    labelled 25.1 images/s against sdpa's 23.9 at half the peak memory, its encoder at 41.7 % MFU
    against 34.6 %, with the same fp32 parity (benchmarks/README.md); it falls back to the
    materialised-bias SDPA on shapes or GPUs the kernel does not take. ``sdpa`` elsewhere: on this
    project's 2-core CPU the vit_b encoder ran 2.7x (bf16) / 1.5x (fp32) faster than eager."""
    import torch

    from .relpos_flash import triton

    return "triton" if torch.device(device).type == "cuda" and triton is not None else "sdpa"


def _check_attn(attn: str) -> None:
    if attn not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"attention implementation must be one of {', '.join(ATTN_IMPLEMENTATIONS)}, "
                         f"got {attn!r}")
    if attn == "flex":
        from .attention import require_flex_attention

        require_flex_attention()


def _transformers_attn(attn: str) -> str:
    """What transformers is told: it knows no "flex" or "triton" (its decoder then runs sdpa)."""
    _check_attn(attn)
    return "sdpa" if attn in CUSTOM_VISION_ATTN else attn


def set_attn_implementation(model, attn: str) -> None:
    """Switch the vision layer and attention classes in place (transformers picks them at
    construction only).

    ``"sdpa"``, ``"flex"`` and ``"triton"`` take :mod:`samrs_hf.sam.attention`'s classes (windowed
    layers without the padded tokens' projections; the global layers' bias fused for flex and
    triton; the MLP that :data:`~samrs_hf.sam.attention.FUSED_MLP_GELU` switches); ``"eager"`` is
    transformers' own. Only the vision layers change; the choice is recorded
    as ``model.samrs_vision_attention`` and configs say "sdpa" (or "eager"), so ``save_pretrained``
    output loads with stock transformers.
    """
    from transformers.models.sam import modeling_sam as ms

    from . import attention as sam_attention

    config_attn = _transformers_attn(attn)
    cls = {"flex": sam_attention.SamVisionFlexAttention, "triton": sam_attention.SamVisionTritonAttention,
           "sdpa": sam_attention.SamVisionRelPosAttention, "eager": ms.SamVisionAttention}[attn]
    # windowed layers skip SAM's padded tokens' projections; eager stays transformers' own, the reference
    layer_cls = ms.SamVisionLayer if attn == "eager" else sam_attention.SamVisionWindowLayer
    mlp_cls = ms.SamMLPBlock if attn == "eager" else sam_attention.SamVisionMLP
    for layer in model.vision_encoder.layers:
        layer.__class__ = layer_cls
        layer.attn.__class__ = cls
        layer.mlp.__class__ = mlp_cls
    setattr(model, ATTN_MARK, attn)
    model.config._attn_implementation = config_attn
    model.config.mask_decoder_config._attn_implementation = config_attn
    model.mask_decoder.config._attn_implementation = config_attn


def prepare_model(model, device: Any, dtype: Any) -> None:
    """Encoder and mask decoder in ``dtype``; the prompt encoder and the positional tables stay
    float32 because their random-Fourier features lose whole pixels of box position in bfloat16.
    Load the model in the dtype it will run in: casting back up does not restore dropped precision."""
    import torch

    check_device(device)
    model.eval()
    model.to(device=device, dtype=torch.float32)
    if dtype != torch.float32:
        model.vision_encoder.to(dtype)
        model.mask_decoder.to(dtype)
    for p in model.parameters():
        p.requires_grad_(False)
