"""Segmentation pre-training (SEP, paper Sec. 4.1) on SAMRS with transformers + Accelerate.

Importing this package registers ``SEPConfig``/``SEPForSemanticSegmentation`` with the Auto
classes, so ``AutoModelForSemanticSegmentation.from_pretrained(sep_folder)`` works.
"""

from .configuration_sep import (BACKBONE_PRESETS, DEFAULT_HEADS, TABLE8, SEPConfig, resolve_backbone,
                                table8_defaults, tiny_backbone_config)
from .modeling_sep import (SEPForSemanticSegmentation, SEPSegmenterOutput, from_sep, register_auto_classes,
                           segmentation_loss)
from .processing import image_processor

register_auto_classes()

__all__ = [
    "SEPConfig", "SEPForSemanticSegmentation", "SEPSegmenterOutput", "from_sep", "resolve_backbone",
    "table8_defaults", "tiny_backbone_config", "segmentation_loss", "image_processor", "TABLE8", "BACKBONE_PRESETS",
    "DEFAULT_HEADS",
]
