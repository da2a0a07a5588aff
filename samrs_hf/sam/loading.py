"""Load a SAM model from any of the forms ``--model`` accepts: a Hub id, a ``save_pretrained`` folder,
a reference package's checkpoint (:mod:`.checkpoint`, :mod:`.family_checkpoint`) or ``tiny-random`` /
``tiny-random-<family>`` (:mod:`.tiny_random`), of any SAM generation (:mod:`.families`).

All of them end up as the family's transformers model (``SamModel``, ``SamHQModel``, ``Sam2Model``,
``Sam3TrackerModel``, ``EdgeTamModel``); SAM's vision layers are built for the run's
:class:`~samrs_hf.sam.options.SamAttentionOptions`, so the engine has one interface and ``build.json``
records exactly what ran (family included).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..common.hub_ids import HubError, from_cache_or_hub
from ..common.errors import SamrsError
from .checkpoint import convert_sam_checkpoint, sam_model_from_checkpoint  # noqa: F401 (re-export)
from .options import (  # noqa: F401 (re-exported: their old home)
    ATTN_IMPLEMENTATIONS, ATTN_MARK, CUSTOM_VISION_ATTN, OPTIONS_MARK, SamAttentionOptions, check_device, default_attn_implementation,
    parse_dtype, transformers_attn,
)
from .families import Family, UnknownFamilyError, family_of, family_of_model_type, family_of_state_dict, get_family
from .tiny_random import RANDOM_MARK, TINY_RANDOM, tiny_random_config, tiny_random_model, tiny_random_spec_family  # noqa: F401

DEFAULT_MODEL = "facebook/sam-vit-huge"


class ModelLoadError(SamrsError, ValueError):
    """The ``--model`` spec cannot be turned into a SamModel; the message names the spec/file."""


@dataclass
class ModelInfo:
    spec: str
    kind: str  # "hub" | "folder" | "pth" | "tiny-random"
    random: bool
    config: dict[str, Any] = field(default_factory=dict)
    family: str = "sam"

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "kind": self.kind, "random": self.random, "family": self.family,
                "config": dict(self.config)}


def summarize_config(config) -> dict[str, Any]:
    """The config in build.json: SAM's ViT in a few numbers, other generations' vision/decoder configs
    as they differ from transformers' defaults (enough to rebuild the architecture)."""
    if getattr(config, "model_type", "sam") != "sam":
        return _summarize_family_config(config)
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


def _summarize_family_config(config) -> dict[str, Any]:
    def plain(sub) -> dict[str, Any]:
        return {k: v for k, v in sub.to_diff_dict().items()
                if isinstance(v, (int, float, str, bool, list)) and not k.startswith(("_", "transformers_"))}

    vision = config.vision_config
    backbone = getattr(vision, "backbone_config", None)
    summary = {"model_type": config.model_type, "image_size": int(config.prompt_encoder_config.image_size),
               "patch_size": int(config.prompt_encoder_config.patch_size),
               "decoder_hidden_size": config.mask_decoder_config.hidden_size,
               "vision": plain(vision), "mask_decoder": plain(config.mask_decoder_config)}
    if backbone is not None:
        summary["backbone"] = {"model_type": backbone.model_type, **plain(backbone)}
        if getattr(backbone, "model_args", None):  # a timm trunk (EdgeTAM): the arguments timm builds it with
            summary["backbone"]["model_args"] = dict(backbone.model_args)
    return summary


def resolve_attention(device: Any, dtype: Any, attn_implementation: str | None = None,
                      options: SamAttentionOptions | None = None) -> SamAttentionOptions:
    """The options a model loaded for ``device``/``dtype`` is built with: ``options`` (resolved: the
    fused GELU only where it runs), else ``attn_implementation`` (None: the device's default) with
    every switch on; checks that this torch/machine can run the attention."""
    if options is None:
        options = SamAttentionOptions.for_run(device, dtype, attn_implementation)
    elif attn_implementation is not None and attn_implementation != options.attn:
        raise ValueError(f"attn_implementation {attn_implementation!r} disagrees with "
                         f"attention_options.attn {options.attn!r}")
    else:
        options = options.resolved(device, dtype)
    import torch

    if options.attn == "flex":
        from .attention import require_flex_attention

        require_flex_attention()
    if options.attn == "triton" and torch.device(device).type == "cuda":
        from .relpos_flash import require_triton

        require_triton()
    return options


def load_sam(
    spec: str = DEFAULT_MODEL,
    *,
    device: Any = "cpu",
    dtype: Any = None,
    seed: int = 0,
    attn_implementation: str | None = None,
    attention_options: SamAttentionOptions | None = None,
):
    """Return ``(SamModel, ModelInfo)`` in eval mode on ``device``.

    ``dtype`` (default float32) is applied the way the engine runs it (:func:`prepare_model`):
    encoder and decoder in ``dtype``, prompt encoder in float32. ``attn_implementation`` is one of
    :data:`ATTN_IMPLEMENTATIONS` (None picks the faster one for the device); ``attention_options``
    sets every switch (:class:`SamAttentionOptions`). The options are checked before minutes of
    loading, fixed in the vision layers and recorded in ``ModelInfo.config``.
    """
    dtype = parse_dtype(dtype)
    check_device(device)  # before minutes of loading
    options = resolve_attention(device, dtype, attn_implementation, attention_options)
    spec = str(spec)
    model, kind = _load_model(spec, options, seed)
    family = family_of(model)
    random = kind == TINY_RANDOM or bool(getattr(model.config, RANDOM_MARK, False))
    summary = summarize_config(model.config)
    if family.name == "sam":  # SAM's own vision layers; the others run transformers' (sdpa or eager)
        from .attention import install_attention

        install_attention(model, options)
        summary["attn_implementation"] = options.attn
        summary["mlp_gelu"] = "tanh (fused into lin1, cuBLASLt epilogue)" if options.fused_mlp_gelu else "exact (erf)"
        summary["attention_options"] = options.to_dict()
    else:
        summary["attn_implementation"] = model.config._attn_implementation
    prepare_model(model, device, dtype)
    summary["parameters"] = sum(p.numel() for p in model.parameters())
    summary["dtype"] = str(dtype).removeprefix("torch.")
    return model, ModelInfo(spec=spec, kind=kind, random=random, config=summary, family=family.name)


def _load_model(spec: str, options: SamAttentionOptions, seed: int):
    """``(SamModel, kind)`` for the spec's form; ModelLoadError naming the spec otherwise."""
    path = Path(spec).expanduser()
    tiny = tiny_random_spec_family(spec)
    if tiny is not None:
        try:
            return tiny_random_model(seed, get_family(tiny).name), TINY_RANDOM
        except ValueError as exc:  # UnknownFamilyError, or a family without a tiny config
            raise ModelLoadError(f"{spec}: {exc}") from None
    if spec.endswith((".pth", ".pt", ".bin")) or path.is_file():
        if not path.is_file():
            raise ModelLoadError(f"{path}: SAM checkpoint file not found")
        return _from_pth(path, options), "pth"
    if path.is_dir() or spec.startswith((".", "/", "~")):
        if not path.exists():
            raise ModelLoadError(f"{path}: model folder not found")
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path}: not a save_pretrained SAM folder (no config.json)")
        _family_of_folder(path)  # a folder of another model: a clear error before loading
        try:
            return _from_pretrained(path, options), "folder"
        except OSError as exc:
            raise ModelLoadError(f"{path}: cannot load SamModel ({type(exc).__name__}: {exc})") from None
    try:
        return from_cache_or_hub(lambda source, **hub: _from_pretrained(source, options, **hub), spec), "hub"
    except HubError as exc:
        raise ModelLoadError(f"{exc}; pass a local save_pretrained folder, a segment-anything .pth "
                             f"checkpoint or 'tiny-random' instead") from None
    except OSError as exc:
        raise ModelLoadError(
            f"{spec}: cannot load the Hub model; pass a local save_pretrained folder, a "
            f"segment-anything .pth checkpoint or 'tiny-random' ({type(exc).__name__}: {exc})"
        ) from None


def _family_of_folder(path: Path) -> Family:
    import json

    try:
        model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelLoadError(f"{path / 'config.json'}: unreadable ({type(exc).__name__}: {exc})") from None
    try:
        return family_of_model_type(model_type, str(path / "config.json"))
    except UnknownFamilyError as exc:
        raise ModelLoadError(str(exc)) from None


def _from_pth(path: Path, options: SamAttentionOptions):
    from ..common.safe_load import CorruptPickleError, UnsafePickleError, load_checkpoint

    try:
        state_dict = load_checkpoint(path)
    except UnsafePickleError:
        raise
    except CorruptPickleError as exc:
        raise ModelLoadError(str(exc)) from None
    except Exception as exc:  # torch raises many types for non-checkpoints (UnpicklingError, RuntimeError...)
        raise ModelLoadError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state_dict, dict):
        raise ModelLoadError(f"{path}: expected a state dict, found {type(state_dict).__name__}")
    family = family_of_state_dict(state_dict, str(path))
    try:
        if family.name != "sam":
            from .family_checkpoint import family_model_from_checkpoint

            return family_model_from_checkpoint(state_dict, family, transformers_attn(options.attn))
        return sam_model_from_checkpoint(state_dict, options)
    except ValueError as exc:
        raise ModelLoadError(f"{path}: {exc}") from None
    except (KeyError, AttributeError, IndexError) as exc:
        raise ModelLoadError(
            f"{path}: not a segment-anything SAM checkpoint (missing or malformed tensor {exc})"
        ) from None


def _from_pretrained(source, options: SamAttentionOptions, **hub):
    """The family's ``from_pretrained`` (the class named by config.json's model_type), refusing weights
    that leave tensors out: transformers would fill them with random values and go on (a folder of
    another model, a partial file), and the masks would be noise recorded as a real model. ``hub``:
    from_pretrained's Hub options (``local_files_only``)."""
    from transformers import PretrainedConfig

    try:
        config_dict, _ = PretrainedConfig.get_config_dict(source, **hub)
        family = family_of_model_type(config_dict.get("model_type"), f"{source}: config.json")
    except UnknownFamilyError as exc:
        raise ModelLoadError(str(exc)) from None
    try:
        model, loading = family.model_cls().from_pretrained(
            source, attn_implementation=transformers_attn(options.attn), output_loading_info=True, **hub
        )
    except OSError:
        raise  # not there (or not reachable): the caller says what to pass instead
    except Exception as exc:  # RuntimeError (shapes), SafetensorError (truncated file), ValueError...
        raise ModelLoadError(f"{source}: cannot load {family.model_class} ({type(exc).__name__}: {exc})") from None
    missing = sorted(loading.get("missing_keys") or ())
    mismatched = sorted(str(k) for k in loading.get("mismatched_keys") or ())
    if missing or mismatched:
        problem = (f"{len(missing)} {family.model_class} tensors missing from its weights ({', '.join(missing[:3])}"
                   f"{', ...' if len(missing) > 3 else ''})" if missing
                   else f"tensors of the wrong shape ({', '.join(mismatched[:3])})")
        raise ModelLoadError(f"{source}: not a complete SAM model: {problem}")
    return model


def prepare_model(model, device: Any, dtype: Any) -> None:
    """Encoder and mask decoder in ``dtype``; the prompt encoder and the positional tables stay
    float32 because their random-Fourier features lose whole pixels of box position in bfloat16.
    Load the model in the dtype it will run in: casting back up does not restore dropped precision."""
    import torch

    check_device(device)
    done = (str(torch.device(device)), dtype)
    if getattr(model, "samrs_prepared", None) == done:
        return  # load_sam prepared it and SamLabeler asks again: casting vit_h twice costs seconds
    model.eval()
    model.to(device=device, dtype=torch.float32)
    if dtype != torch.float32:
        model.vision_encoder.to(dtype)
        model.mask_decoder.to(dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    model.samrs_prepared = done
