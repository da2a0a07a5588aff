"""The authors' released SEP checkpoints (ViTAE-Transformer/SAMRS, mmseg-style ``.pth``) as transformers models.

Only exact conversions: every tensor mapped or its omission explained, every weight of the new model filled, and
its outputs checked against a plain-torch restatement of the official forward before anything is written.
"""

from .card import converted_card
from .convert import ConversionResult, convert_sep_checkpoint
from .official import ConversionError, read_official
from .reference import official_logits, official_model_shapes, official_shapes, random_official_state_dict
from .reference_swin import official_swin_encoder, official_swin_encoder_shapes
from .support import BACKBONE_CHOICES, CONVERTIBLE, REFUSED

__all__ = ["convert_sep_checkpoint", "ConversionResult", "ConversionError", "read_official", "converted_card",
           "official_logits", "official_shapes", "official_model_shapes", "random_official_state_dict",
           "official_swin_encoder", "official_swin_encoder_shapes", "BACKBONE_CHOICES", "CONVERTIBLE",
           "REFUSED"]
