"""SEP model configuration, backbone presets and the paper's per-backbone optimiser defaults.

Table 8 of the paper (App. A.2) is garbled in the text we have; our reading, per backbone family,
as (initial LR, weight decay, minimum LR):

=====================  ======  ==========================  ======
backbone               ILR     WD                          MLR
=====================  ======  ==========================  ======
ResNet                 1e-3    5e-2 (pre-train) | 1e-4 (*) 5e-6
Swin / ViTAEv2         6e-5    1e-2                        0
InternImage            6e-5    5e-2                        0
ViT / ViT-RVSA         6e-5    5e-2                        0
ViT-Adapter            6e-5    1e-2                        0
=====================  ======  ==========================  ======

(*) the ResNet cell reads "5e-2 1e-4" and the caption says "|" separates pre-training from
fine-tuning, so SEP uses 5e-2 and fine-tuning uses 1e-4. Table 7: AdamW, betas (0.9, 0.999)
(printed garbled), batch 96 | 8, 80k iterations, cosine decay. ConvNeXt is not in Table 8; it
gets the Swin row (both are AdamW-trained hierarchical nets with the same mmseg recipe).

The authors' pre-training code agrees with these values and adds two things: ResNet's lr is
1e-3 x batch / 96 (``table8_defaults(..., batch_size=B)``), and each family has its own parameter
groups (:mod:`.param_groups`).
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from ..common.hub_ids import HubError, from_cache_or_hub

DEFAULT_HEADS = {"sota": 18, "sior": 20, "fast": 37}

# family -> (lr, weight decay pre-training, min lr, weight decay fine-tuning)
TABLE8 = {
    "resnet": (1e-3, 5e-2, 5e-6, 1e-4),
    "swin": (6e-5, 1e-2, 0.0, 1e-2),
    "vitaev2": (6e-5, 1e-2, 0.0, 1e-2),
    "convnext": (6e-5, 1e-2, 0.0, 1e-2),
    "internimage": (6e-5, 5e-2, 0.0, 5e-2),
    "vit": (6e-5, 5e-2, 0.0, 5e-2),
    "vitdet": (6e-5, 5e-2, 0.0, 5e-2),
    "vit-adapter": (6e-5, 1e-2, 0.0, 1e-2),
}

# Short names -> (Hub checkpoint or None, config overrides). ViT-B has no ViTDet checkpoint on the
# Hub, so it is built from its config (random weights) unless a checkpoint is given explicitly.
TINY_BACKBONES = ("tiny-resnet", "tiny-convnext")
"""Small random backbones for offline runs and tests."""

BACKBONE_PRESETS = {
    "resnet50": ("microsoft/resnet-50", {}),
    "swin-t": ("microsoft/swin-tiny-patch4-window7-224", {}),
    "convnext-t": ("facebook/convnext-tiny-224", {}),
    "vit-b": (None, {"model_type": "vitdet"}),
}

# ViT-B in mmseg's UperNet takes blocks 4/6/8/12 (indices 3, 5, 7, 11). All are stride 16: stock
# UperNet runs on them unchanged (no multi-level neck), so the export stays plain transformers.
VITDET_OUT_FEATURES = ["stage4", "stage6", "stage8", "stage12"]
HIERARCHICAL_OUT_FEATURES = ["stage1", "stage2", "stage3", "stage4"]


# The authors' pre-training code scales ResNet's lr with the batch: 1e-3 x (batch per process x processes) / 96.
LR_REFERENCE_BATCH = 96


def backbone_family(model_type: str) -> str:
    """The TABLE8 row of a backbone ``model_type`` (unknown types: ``resnet`` when the name says so, else
    ``swin``, the AdamW recipe of the hierarchical transformers)."""
    family = model_type.lower()
    if family not in TABLE8:
        family = "resnet" if "resnet" in family else "swin"
    return family


def table8_defaults(model_type: str, finetune: bool = False, batch_size: int | None = None) -> dict:
    """``{"lr", "weight_decay", "min_lr"}`` of Table 8 for a backbone ``model_type``. With ``batch_size``
    (pre-training's global batch), ResNet's lr is scaled by ``batch_size / 96`` as the authors' code does."""
    family = backbone_family(model_type)
    lr, wd, min_lr, wd_ft = TABLE8[family]
    if family == "resnet" and batch_size is not None:
        lr = lr * (batch_size / LR_REFERENCE_BATCH)
    return {"lr": lr, "weight_decay": wd_ft if finetune else wd, "min_lr": min_lr}


def tiny_backbone_config(kind: str = "resnet"):
    """A few-thousand-parameter backbone config for tests, benchmarks and offline smoke runs."""
    from transformers import ConvNextConfig, ResNetConfig

    if kind == "resnet":
        return ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1],
                            layer_type="basic", out_features=HIERARCHICAL_OUT_FEATURES)
    if kind == "convnext":
        return ConvNextConfig(hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1],
                              out_features=HIERARCHICAL_OUT_FEATURES)
    raise ValueError(f"unknown tiny backbone {kind!r}: use 'resnet' or 'convnext'")


def _with_out_features(config):
    out = VITDET_OUT_FEATURES if config.model_type == "vitdet" else HIERARCHICAL_OUT_FEATURES
    config.out_features = out
    return config


def pretrained_config(checkpoint: str, what: str, option: str) -> PreTrainedConfig:
    """The config of a folder or Hub id, local cache first (see :mod:`samrs_hf.common.hub_ids`); a ValueError
    that says what to pass instead when it is not available."""
    try:
        return from_cache_or_hub(AutoConfig.from_pretrained, checkpoint)
    except HubError as exc:
        raise ValueError(f"{what} is not available: {exc}. Download it once with network access, pass a local "
                         f"save_pretrained folder, or use {option} tiny-resnet for an offline run") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{what}: no model config there ({type(exc).__name__}: {exc})") from None


def resolve_backbone(spec: str, *, option: str = "--backbone",
                     sep: bool = False) -> tuple[PreTrainedConfig, str | None]:
    """Backbone config and the checkpoint to take its weights from (None: random init).

    ``spec``: a preset (``resnet50``, ``swin-t``, ``convnext-t``, ``vit-b``), ``tiny-resnet`` /
    ``tiny-convnext`` (offline tests), a Hub id or a local ``save_pretrained`` folder (a folder
    holding only ``config.json`` gives that architecture with random weights). A Hub id
    that is neither reachable nor cached raises here, before any training starts.
    ``option`` names the caller's flag in errors; ``sep``: an SEP model would also have been accepted.
    """
    if spec in TINY_BACKBONES:
        return tiny_backbone_config(spec.split("-", 1)[1]), None
    checkpoint, overrides = BACKBONE_PRESETS.get(spec, (spec, {}))
    if checkpoint is None:
        from transformers import CONFIG_MAPPING

        return _with_out_features(CONFIG_MAPPING[overrides["model_type"]]()), None
    what = f"{option} {spec!r}" + (f" ({checkpoint})" if checkpoint != spec else "")
    config = pretrained_config(checkpoint, what, option)
    from transformers.models.auto.modeling_auto import MODEL_FOR_BACKBONE_MAPPING_NAMES

    if config.model_type not in MODEL_FOR_BACKBONE_MAPPING_NAMES:  # else transformers' AutoBackbone error
        raise ValueError(
            f"{what} is a {config.model_type!r} checkpoint, not a backbone"
            + (" nor an SEP model" if sep else "")
            + (" (an exported or fine-tuned UperNet: start from the SEP model it came from)"
               if config.model_type == "upernet" else "")
            + ". Pass " + ("an SEP model (train_sep.py output folder or Hub id) or " if sep else "")
            + f"a backbone: {', '.join([*BACKBONE_PRESETS, *TINY_BACKBONES])}, or a backbone's Hub id or "
            f"folder (e.g. microsoft/resnet-50)"
        )
    if Path(checkpoint).is_dir() and not any(Path(checkpoint).glob("*.safetensors")) and not any(
            Path(checkpoint).glob("*.bin")):
        checkpoint = None  # a config-only folder: random init (offline shapes, benchmarks)
    return _with_out_features(config), checkpoint


class SEPConfig(PreTrainedConfig):
    """Shared backbone + shared UperNet decoder + one 1x1 classifier per SAMRS subset.

    ``heads`` maps subset name -> number of classes; ``head_labels`` optionally their class
    names (kept so evaluation tables and exports carry names).
    """

    model_type = "sep"
    sub_configs_defaults = {
        "backbone_config": SubConfigSpec(
            config_class=AutoConfig, model_type="resnet", init_kwargs={"out_features": HIERARCHICAL_OUT_FEATURES}
        )
    }

    backbone_config: dict | PreTrainedConfig | None = None
    backbone_checkpoint: str | None = None
    heads: dict | None = None
    head_labels: dict | None = None
    hidden_size: int = 512
    pool_scales: list[int] | tuple[int, ...] = (1, 2, 3, 6)
    initializer_range: float = 0.02
    loss_ignore_index: int = 255
    image_mean: list[float] | tuple[float, ...] = (0.485, 0.456, 0.406)
    image_std: list[float] | tuple[float, ...] = (0.229, 0.224, 0.225)

    def __post_init__(self, **kwargs):
        if self.backbone_config is None:
            self.backbone_config = tiny_backbone_config("resnet")
        if self.heads is None:
            self.heads = dict(DEFAULT_HEADS)
        self.heads = {str(k): int(v) for k, v in self.heads.items()}
        if not self.heads or any(v < 1 for v in self.heads.values()):
            raise ValueError(f"heads must map subset names to positive class counts, got {self.heads}")
        if self.head_labels is None:
            self.head_labels = {}
        for name, labels in self.head_labels.items():
            if name not in self.heads or len(labels) != self.heads[name]:
                raise ValueError(f"head_labels[{name!r}] does not match heads {self.heads}")
        if len(self.heads) == 1 and next(iter(self.heads)) in self.head_labels:
            # one head: it is the model's label space, so id2label names its classes (not LABEL_i)
            self.id2label = dict(enumerate(self.head_labels[next(iter(self.heads))]))
            self.label2id = {v: i for i, v in self.id2label.items()}
        self.pool_scales = list(self.pool_scales)
        super().__post_init__(**kwargs)

    def labels_of(self, subset: str) -> list[str]:
        n = self.heads[subset]
        return list(self.head_labels.get(subset) or [str(i) for i in range(n)])


__all__ = ["SEPConfig", "TABLE8", "LR_REFERENCE_BATCH", "backbone_family", "BACKBONE_PRESETS", "TINY_BACKBONES", "resolve_backbone",
           "table8_defaults", "tiny_backbone_config", "DEFAULT_HEADS"]
