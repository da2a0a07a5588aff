"""Which official SEP checkpoints convert exactly, and why the others are refused.

A conversion is exact or it does not happen: a backbone is listed as convertible only where a transformers
backbone computes what the official one computes, layer for layer. The refusals say what is missing.
"""

from __future__ import annotations

from .official import ConversionError

CONVERTIBLE = {
    "resnet50": "mmseg ResNet(50) (7x7 stem, stride on the 3x3 conv) -> transformers ResNetBackbone",
    "resnet": "an mmseg bottleneck ResNet of any depth (read from the keys) -> transformers ResNetBackbone",
    "swin-t": "the official Swin-T (window 7, shifted windows in every stage) -> transformers SwinBackbone, "
              "which keeps the shift at every resolution (always_partition)",
    "swin": "an official-style Swin of any size (read from the keys) -> transformers SwinBackbone",
}
FAMILY = {"resnet50": "resnet", "resnet": "resnet", "swin-t": "swin", "swin": "swin"}

REFUSED = {
    "vit-b": "the official ViT-B feeds UperNet through a multi-scale neck (fpn1: two ConvTranspose2d with BatchNorm "
             "and GELU, fpn2: ConvTranspose2d, fpn4: max-pool) that neither transformers' VitDet backbone nor stock "
             "UperNet has",
    "vitaev2-s": "ViTAEv2 (reduction and normal cells with convolutional branches) has no transformers backbone",
    "internimage-t": "InternImage's DCNv3 operator has no transformers backbone",
    "vit-adapter-b": "ViT-Adapter's deformable-attention spatial prior and injector/extractor modules have no "
                     "transformers backbone",
    "vit-b-rvsa": "rotated varied-size window attention (RVSA) has no transformers backbone",
}

DECODERS_REFUSED = {
    "unet": "this is a UNet checkpoint (its decoder has 'blocks.*'); the SEP model is UperNet, and transformers "
            "has no UNet with that decoder, so UNet checkpoints are not converted",
    "mask2former": "this is a Mask2Former checkpoint; a mapping to transformers' Mask2Former is not written (the "
                   "paper leaves it out of Table 9: its SAMRS validation accuracies are close to 0)",
}

BACKBONE_CHOICES = (*CONVERTIBLE, *REFUSED)


def _decoder_kind(keys) -> str:
    """'upernet', 'unet', 'mask2former' or 'none' (an encoder-only file) from the decoder keys."""
    if any(k.startswith("decoder.psp_modules.") for k in keys):
        return "upernet"
    if any(k.startswith(("decoder.blocks.", "decoder.center.")) for k in keys):
        return "unet"
    if any("pixel_decoder" in k or "transformer_decoder" in k or "query_embed" in k for k in keys):
        return "mask2former"
    return "none" if not any(k.startswith("decoder.") for k in keys) else "unknown"


def _encoder_kind(keys) -> str:
    """'resnet', 'resnet-deep-stem', 'swin', 'vit' or 'unknown' from the encoder keys."""
    if "conv1.weight" in keys and any(k.startswith("layer1.") for k in keys):
        return "resnet"
    if any(k.startswith("stem.") for k in keys) and any(k.startswith("layer1.") for k in keys):
        return "resnet-deep-stem"
    if any(".blocks." in k and "relative_position_bias_table" in k for k in keys) and any(
            k.startswith("layers.") for k in keys):
        return "swin"
    if any(k.startswith("blocks.") for k in keys) and "patch_embed.proj.weight" in keys:
        return "vit"
    return "unknown"


def check_supported(backbone: str, state_dict: dict, path) -> None:
    """Refuse, with the reason, any checkpoint this converter cannot map exactly onto ``backbone``."""
    if backbone in REFUSED:
        raise ConversionError(f"--backbone {backbone}: not converted: {REFUSED[backbone]}. Convertible: "
                              f"{', '.join(CONVERTIBLE)}")
    if backbone not in CONVERTIBLE:
        raise ConversionError(f"--backbone {backbone!r}: unknown; use one of {', '.join(BACKBONE_CHOICES)}")
    keys = set(state_dict)
    decoder = _decoder_kind(keys)
    if decoder in DECODERS_REFUSED:
        raise ConversionError(f"{path}: {DECODERS_REFUSED[decoder]}")
    if decoder == "unknown":
        raise ConversionError(f"{path}: the decoder is neither UperNet, UNet nor Mask2Former "
                              f"(keys such as {sorted(k for k in keys if k.startswith('decoder.'))[:3]})")
    encoder_keys = {k.removeprefix("encoder.") for k in keys if decoder == "none" or k.startswith("encoder.")}
    encoder = _encoder_kind(encoder_keys)
    if encoder == "resnet-deep-stem" and FAMILY[backbone] == "resnet":
        raise ConversionError(f"{path}: a ResNet with the deep stem ('stem.*': three 3x3 convs), not the official "
                              f"ResNet-50's 7x7 stem; transformers' ResNet has no deep stem")
    if encoder != FAMILY[backbone]:
        found = "not those of an SEP encoder" if encoder == "unknown" else f"those of a {encoder} backbone"
        raise ConversionError(f"{path}: --backbone {backbone} but the encoder keys are {found} "
                              f"(e.g. {sorted(encoder_keys)[:3]}); pass an official SEP checkpoint and its backbone")


__all__ = ["CONVERTIBLE", "FAMILY", "REFUSED", "DECODERS_REFUSED", "BACKBONE_CHOICES", "check_supported"]
