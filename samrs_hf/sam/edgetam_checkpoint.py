"""EdgeTAM reference checkpoints (``edgetam.pt``: ``{"model": state_dict}``) -> transformers ``EdgeTamModel``.

EdgeTAM (facebookresearch/EdgeTAM; on the package registry as ``edgetam-dimos``, a fork of ``sam2``)
is SAM 2 with a timm RepViT trunk (``image_encoder.trunk.body.*``: timm's own feature-extractor
names) and a perceiver that compresses the memories of past frames (``spatial_perceiver.*``). The
neck, prompt encoder, mask decoder and their renames are SAM 2's (:mod:`.sam2_checkpoint`); the trunk
keeps timm's names under transformers' ``TimmWrapperModel``; the RepViT variant is read from the
shapes (stage widths and depths, the legacy token mixer). ``EdgeTamModel`` builds its trunk with timm,
so converting needs timm installed; without it the error says so.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any

from .sam2_checkpoint import VIDEO_ONLY, convert_sam2_tensors, sam2_head_configs

TRUNK = "image_encoder.trunk.body."
HF_TRUNK = "vision_encoder.backbone.timm_model."
# What an image predictor never reads: sam2's video tensors plus EdgeTAM's perceiver, with why.
DROPPED: dict[str, str] = {
    **VIDEO_ONLY,
    "spatial_perceiver.": "EdgeTAM's perceiver: compresses each past frame's memory to a few latents (video)",
}
# timm's RepViT variants (timm/models/repvit.py): (stage widths, stage depths, legacy token mixer) -> name
REPVIT_VARIANTS: dict[tuple, str] = {
    ((48, 96, 192, 384), (2, 2, 14, 2), True): "repvit_m1",  # EdgeTAM's trunk (repvit_m1.dist_in1k)
    ((64, 128, 256, 512), (2, 2, 12, 2), True): "repvit_m2",
    ((64, 128, 256, 512), (4, 4, 18, 2), True): "repvit_m3",
    ((48, 96, 192, 384), (2, 2, 14, 2), False): "repvit_m0_9",
    ((56, 112, 224, 448), (2, 2, 14, 2), False): "repvit_m1_0",
    ((64, 128, 256, 512), (2, 2, 12, 2), False): "repvit_m1_1",
    ((64, 128, 256, 512), (4, 4, 24, 4), False): "repvit_m1_5",
    ((80, 160, 320, 640), (6, 6, 34, 2), False): "repvit_m2_3",
}
_STAGE = re.compile(r"^stages_(\d+)\.blocks\.(\d+)\.")


def require_timm() -> None:
    """ValueError (a ModelLoadError naming the spec, from load_sam) where timm is not installed."""
    if importlib.util.find_spec("timm") is None:
        raise ValueError("EdgeTAM needs timm (its image encoder is a timm RepViT): pip install timm")


def repvit_layout(sd: dict) -> dict[str, Any]:
    """The RepViT trunk's arguments from its tensors: stage widths and depths (blocks per stage, the
    downsampling block apart), the legacy token mixer (``conv1`` with its own BatchNorm), the MLP
    ratio and the kernel size."""
    trunk = {k[len(TRUNK):]: v for k, v in sd.items() if k.startswith(TRUNK)}
    blocks: dict[int, set[int]] = {}
    for key in trunk:
        if (m := _STAGE.match(key)):
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    if not blocks or sorted(blocks) != list(range(len(blocks))):
        raise ValueError(f"no RepViT trunk under {TRUNK}* (stages_<i>.blocks.<j>.* expected)")
    dims = tuple(int(trunk[f"stages_{i}.blocks.0.channel_mixer.conv2.c.weight"].shape[0]) for i in sorted(blocks))
    first = "stages_0.blocks.0."
    return dict(embed_dim=dims, depth=tuple(len(blocks[i]) for i in sorted(blocks)),
                legacy=f"{first}token_mixer.conv1.c.weight" in trunk,
                mlp_ratio=int(trunk[f"{first}channel_mixer.conv1.c.weight"].shape[0]) // dims[0],
                kernel_size=int(trunk[f"{first}token_mixer.conv.c.weight"].shape[-1]))


def repvit_backbone_config(sd: dict) -> dict[str, Any]:
    """transformers' ``timm_wrapper`` config of the trunk: a released timm variant by name, else the
    variant of the same token mixer with the widths/depths/ratio/kernel given as timm arguments."""
    layout = repvit_layout(sd)
    name = REPVIT_VARIANTS.get((layout["embed_dim"], layout["depth"], layout["legacy"]))
    args: dict[str, Any] = dict(in_chans=3, features_only=True, out_indices=list(range(len(layout["depth"]))))
    if name is None or (layout["mlp_ratio"], layout["kernel_size"]) != (2, 3):
        name = "repvit_m1" if layout["legacy"] else "repvit_m0_9"
        args.update({k: list(v) if isinstance(v, tuple) else v for k, v in layout.items()})
    return dict(model_type="timm_wrapper", architecture=name, num_classes=0, model_args=args)


def edgetam_config(sd: dict):
    """EdgeTamConfig from an EdgeTAM state dict's shapes (needs timm: transformers' timm config does)."""
    from transformers import EdgeTamConfig

    require_timm()
    heads = sam2_head_configs(sd)
    return EdgeTamConfig(vision_config=dict(backbone_config=repvit_backbone_config(sd), **heads.pop("vision")),
                         **heads)


def convert_edgetam_tensors(sd: dict) -> dict:
    """EdgeTAM's tensors under EdgeTamModel's names, :data:`DROPPED` left out."""
    return convert_sam2_tensors(sd, DROPPED, (TRUNK, HF_TRUNK))


def convert_edgetam_checkpoint(state_dict: dict) -> tuple[Any, dict]:
    """EdgeTAM state dict (or ``{"model": ...}``) -> (EdgeTamConfig, EdgeTamModel state dict)."""
    sd = state_dict["model"] if isinstance(state_dict.get("model"), dict) else state_dict
    return edgetam_config(sd), convert_edgetam_tensors(sd)
