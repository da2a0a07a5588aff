"""SEP: one backbone and one UperNet decoder shared by all SAMRS subsets, one 1x1 head per subset.

The decoder is transformers' own ``UperNetHead`` with its classifier removed, so an SEP head plus
the shared weights is exactly a stock ``UperNetForSemanticSegmentation`` (see ``export``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel, UperNetConfig, UperNetForSemanticSegmentation
from transformers.backbone_utils import load_backbone
from transformers.modeling_outputs import SemanticSegmenterOutput
from transformers.models.upernet.modeling_upernet import UperNetHead

from ..common.hub_ids import HubError, from_cache_or_hub
from .configuration_sep import SEPConfig, resolve_backbone
from .processing import image_processor


class SEPDecoder(UperNetHead):
    """transformers' UperNet head (PPM + FPN) returning the fused features instead of logits."""

    def __init__(self, config: SEPConfig, in_channels):
        super().__init__(config, in_channels)
        self.classifier = nn.Identity()


@dataclass
class SEPSegmenterOutput(SemanticSegmenterOutput):
    """``logits`` for a single subset; ``head_logits``/``head_losses`` per subset of a mixed batch."""

    head_logits: tuple | None = None
    head_losses: torch.Tensor | None = None


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Mean cross-entropy over labelled pixels; 0 (not NaN) for a crop with no labelled pixel.

    SAMRS crops are often all-background (255), and a mean over zero pixels would be NaN.
    """
    total = nn.functional.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction="sum")
    count = (labels != ignore_index).sum().clamp_min(1)
    return total / count


class SEPPreTrainedModel(PreTrainedModel):
    config_class = SEPConfig
    config: SEPConfig
    base_model_prefix = "sep"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = []


class SEPForSemanticSegmentation(SEPPreTrainedModel):
    def __init__(self, config: SEPConfig):
        super().__init__(config)
        self.backbone = load_backbone(config)
        self.decode_head = SEPDecoder(config, in_channels=self.backbone.channels)
        self.heads = nn.ModuleDict(
            {name: nn.Conv2d(config.hidden_size, n, kernel_size=1) for name, n in config.heads.items()}
        )
        self.post_init()

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_backbone(cls, backbone: str, heads: dict | None = None, head_labels: dict | None = None,
                      **config_kwargs) -> SEPForSemanticSegmentation:
        """A fresh SEP model whose backbone starts from ``backbone``'s weights (the IMP/RSP init)."""
        backbone_config, checkpoint = resolve_backbone(backbone)
        config = SEPConfig(backbone_config=backbone_config, backbone_checkpoint=checkpoint, heads=heads,
                           head_labels=head_labels, **config_kwargs)
        model = cls(config)
        if checkpoint is not None:
            load_backbone_weights(model.backbone, checkpoint)
        return model

    # -- forward ------------------------------------------------------------------------------
    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Shared decoder features (before any head), at the finest backbone stride."""
        maps = self.backbone(pixel_values).feature_maps
        return self.decode_head(maps)

    def _head(self, subset: str) -> nn.Conv2d:
        if subset not in self.heads:
            raise ValueError(f"no head for subset {subset!r}; this model has heads {sorted(self.heads)}")
        return self.heads[subset]

    def _check_labels(self, labels: torch.Tensor, subset: str) -> None:
        n, ignore = self.config.heads[subset], self.config.loss_ignore_index
        bad = ((labels < 0) | (labels >= n)) & (labels != ignore)
        if bool(bad.any()):
            values = sorted(set(labels[bad].unique().tolist()))[:10]
            raise ValueError(f"subset {subset!r}: labels {values} outside [0, {n}) other than {ignore}")

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        subset: str | list[str] | tuple[str, ...] | None = None,
        subset_sizes: list[int] | tuple[int, ...] | None = None,
        per_subset: bool = False,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SEPSegmenterOutput:
        """Logits of one head (``subset="sota"``) or of a mixed batch.

        A mixed batch passes ``subset=[names]`` and ``subset_sizes``: the first ``subset_sizes[0]``
        images belong to ``subset[0]`` and so on; each head runs on its slice, and ``loss`` is the sum
        of the per-head losses (also returned as ``head_losses``). The backbone and decoder run once on
        all of them (the paper's collective batch, Sec. 4.1.2) or, with ``per_subset``, once per slice as
        the authors' code does (BatchNorm statistics per subset; the same result without BatchNorm).
        """
        if subset is None:
            if len(self.heads) != 1:
                raise ValueError(f"pass subset=...; this model has heads {sorted(self.heads)}")
            subset = next(iter(self.heads))
        names = [subset] if isinstance(subset, str) else list(subset)
        sizes = [pixel_values.shape[0]] if isinstance(subset, str) else list(subset_sizes or [])
        if len(sizes) != len(names) or sum(sizes) != pixel_values.shape[0]:
            raise ValueError(f"subset_sizes {sizes} do not split a batch of {pixel_values.shape[0]} into {names}")
        heads = [self._head(n) for n in names]
        if labels is not None:
            for name, lab in zip(names, labels.split(sizes)):
                self._check_labels(lab, name)

        if per_subset:
            feats = [self.features(x) for x in pixel_values.split(sizes)]
        else:
            feats = self.features(pixel_values).split(sizes)
        size = pixel_values.shape[2:]
        head_logits, losses = [], []
        for name, head, f, i in zip(names, heads, feats, range(len(names))):
            logits = nn.functional.interpolate(head(f), size=size, mode="bilinear", align_corners=False)
            head_logits.append(logits)
            if labels is not None:
                lab = labels.split(sizes)[i]
                losses.append(segmentation_loss(logits, lab, self.config.loss_ignore_index))
        head_losses = torch.stack(losses) if losses else None
        return SEPSegmenterOutput(
            loss=head_losses.sum() if head_losses is not None else None,
            logits=head_logits[0] if len(names) == 1 else None,
            head_logits=tuple(head_logits),
            head_losses=head_losses,
        )

    def save_pretrained(self, save_directory, *args, is_main_process: bool = True, **kwargs):
        """Also writes the image processor (``preprocessor_config.json``) of the model's mean/std."""
        super().save_pretrained(save_directory, *args, is_main_process=is_main_process, **kwargs)
        if is_main_process:
            image_processor(self.config.image_mean, self.config.image_std).save_pretrained(save_directory)

    # -- export / fine-tuning -----------------------------------------------------------------
    def upernet_config(self, subset: str | None, num_labels: int | None = None,
                       id2label: dict | None = None) -> UperNetConfig:
        if subset is not None:
            self._head(subset)
            labels = self.config.labels_of(subset)
            id2label = dict(enumerate(labels))
        elif id2label is None:
            id2label = {i: str(i) for i in range(num_labels)}
        return UperNetConfig(
            backbone_config=self.config.backbone_config.to_dict(),
            hidden_size=self.config.hidden_size,
            pool_scales=list(self.config.pool_scales),
            use_auxiliary_head=False,
            loss_ignore_index=self.config.loss_ignore_index,
            id2label={int(k): v for k, v in id2label.items()},
            label2id={v: int(k) for k, v in id2label.items()},
        )

    def to_upernet(self, subset: str) -> UperNetForSemanticSegmentation:
        """A stock transformers UperNet equal to this model's ``subset`` head."""
        model = UperNetForSemanticSegmentation(self.upernet_config(subset))
        _copy_shared(self, model)
        model.decode_head.classifier.load_state_dict(self._head(subset).state_dict())
        return model

    def export(self, subset: str, path) -> Path:
        """Write ``subset``'s model as a plain ``UperNetForSemanticSegmentation`` checkpoint, with the
        image processor that ``AutoImageProcessor``/``pipeline`` load and a model card (README.md) that
        carries the SEP folder's datasets and ``subset``'s scores when it was loaded from one."""
        from .card import export_card

        path = Path(path)
        self.to_upernet(subset).save_pretrained(path)
        image_processor(self.config.image_mean, self.config.image_std).save_pretrained(path)
        (path / "README.md").write_text(export_card(self.config, subset, self.name_or_path or None))
        return path


def _copy_shared(sep: SEPForSemanticSegmentation, upernet: UperNetForSemanticSegmentation) -> None:
    upernet.backbone.load_state_dict(sep.backbone.state_dict())
    shared = {k: v for k, v in sep.decode_head.state_dict().items() if not k.startswith("classifier.")}
    missing, unexpected = upernet.decode_head.load_state_dict(shared, strict=False)
    if unexpected or [k for k in missing if not k.startswith("classifier.")]:
        raise RuntimeError(f"decoder mismatch: missing {missing}, unexpected {unexpected}")


def load_backbone_weights(backbone: nn.Module, checkpoint: str) -> None:
    """Copy a pretrained backbone (Hub id or folder) into ``backbone``; every tensor must match.

    Loaded through the backbone's own class (e.g. ``ResNetBackbone``): transformers'
    ``AutoBackbone.from_pretrained`` asks the Hub whether the name is a repo first, which fails for
    local folders and for cached ids offline.
    """
    def load(source, **hub):
        return type(backbone).from_pretrained(source, out_features=list(backbone.out_features), **hub)

    try:
        pretrained = from_cache_or_hub(load, checkpoint)
    except HubError as exc:
        raise ValueError(f"cannot load backbone weights: {exc}") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot load backbone weights from {checkpoint!r}: {exc}") from None
    backbone.load_state_dict(pretrained.state_dict())


def from_sep(path_or_model, num_labels: int, id2label: dict | None = None, *,
             as_sep: bool = False, subset_name: str = "target"):
    """A fine-tuning model initialised from SEP: backbone + decoder from SEP, a fresh head.

    Returns a stock ``UperNetForSemanticSegmentation`` (default), or an SEP model with the single
    head ``subset_name`` when ``as_sep``.
    """
    sep = (path_or_model if isinstance(path_or_model, SEPForSemanticSegmentation)
           else from_cache_or_hub(SEPForSemanticSegmentation.from_pretrained, str(path_or_model)))
    if id2label is None:
        id2label = {i: str(i) for i in range(num_labels)}
    id2label = {int(k): v for k, v in id2label.items()}  # JSON configs have string keys
    if len(id2label) != num_labels:
        raise ValueError(f"id2label has {len(id2label)} names for num_labels={num_labels}")
    if sorted(id2label) != list(range(num_labels)):
        raise ValueError(f"id2label keys must be 0..{num_labels - 1}, got {sorted(id2label)}")
    if as_sep:
        cfg = SEPConfig(**{**sep.config.to_dict(), "heads": {subset_name: num_labels},
                           "head_labels": {subset_name: [id2label[i] for i in range(num_labels)]}})
        model = SEPForSemanticSegmentation(cfg)
        model.backbone.load_state_dict(sep.backbone.state_dict())
        model.decode_head.load_state_dict(sep.decode_head.state_dict())
        return model
    model = UperNetForSemanticSegmentation(sep.upernet_config(None, num_labels, id2label))
    _copy_shared(sep, model)
    return model


def load_sep(spec: str, heads=()) -> SEPForSemanticSegmentation:
    """An SEP model folder or Hub id (cache first) that has every head in ``heads``. Any other checkpoint
    (an exported or fine-tuned UperNet) is refused: it would load into SEP with fresh default heads."""
    from transformers import AutoConfig

    model_type = from_cache_or_hub(AutoConfig.from_pretrained, spec).model_type
    if model_type != SEPConfig.model_type:
        raise ValueError(f"model {spec} is a {model_type!r} checkpoint, not an SEP model "
                         f"(the save_pretrained output of train_sep.py)")
    model = from_cache_or_hub(SEPForSemanticSegmentation.from_pretrained, spec)
    missing = [s for s in heads if s not in model.config.heads]
    if missing:
        raise ValueError(f"model {spec} has no head for {missing}; its heads are {sorted(model.config.heads)}")
    return model


def register_auto_classes() -> None:
    """Make ``AutoConfig``/``AutoModel``/``AutoModelForSemanticSegmentation`` know ``sep``."""
    from transformers import AutoConfig, AutoModel, AutoModelForSemanticSegmentation

    try:
        AutoConfig.register(SEPConfig.model_type, SEPConfig)
    except ValueError:  # already registered (module re-import)
        return
    AutoModel.register(SEPConfig, SEPForSemanticSegmentation)
    AutoModelForSemanticSegmentation.register(SEPConfig, SEPForSemanticSegmentation)
