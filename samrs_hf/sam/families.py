"""The SAM generations ``--model`` accepts, and how each is recognised.

SAMRS labelled with the 2023 SAM; transformers ships its successors with the same box/point
prompting. A family fixes the transformers classes that load it (never an Auto class, so a folder of
another model is refused, not half-loaded), how images enter it (SAM and HQ-SAM: longest side to
1024 and zero padding; the SAM 2 lineage: stretched to a square) and its pixel statistics. A model is
recognised from its config's ``model_type`` (Hub ids, ``save_pretrained`` folders) or from the tensor
names of a reference package's checkpoint (:func:`family_of_state_dict`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..common.errors import SamrsError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class UnknownFamilyError(SamrsError, ValueError):
    """A config/checkpoint/name that is none of the supported SAM generations."""


@dataclass(frozen=True)
class Family:
    name: str  # the --family / tiny-random-<name> spelling
    title: str  # for tables and cards
    model_types: tuple[str, ...]  # config.json model_type values loaded as this family
    model_class: str  # transformers class
    square_input: bool  # images stretched to image_size x image_size (SAM 2 lineage), not padded
    mask_input: bool  # the prompt encoder takes a 256x256 (SAM 3: 288x288) mask prompt
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN  # on 0..1 pixels
    pixel_std: tuple[float, float, float] = IMAGENET_STD
    reference: str = ""  # the reference implementation's package (parity tests, benchmarks)
    checkpoints: tuple[str, ...] = ()  # Hub ids of released weights

    def model_cls(self):
        import transformers

        return getattr(transformers, self.model_class)

    def to_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "model_class": self.model_class,
                "square_input": self.square_input, "reference": self.reference}


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("sam", "SAM", ("sam",), "SamModel", False, True, reference="segment-anything",
           checkpoints=("facebook/sam-vit-huge", "facebook/sam-vit-large", "facebook/sam-vit-base")),
    Family("sam_hq", "HQ-SAM", ("sam_hq",), "SamHQModel", False, True, reference="segment-anything-hq",
           checkpoints=("syscv-community/sam-hq-vit-huge", "syscv-community/sam-hq-vit-large",
                        "syscv-community/sam-hq-vit-base")),
    Family("sam2", "SAM 2.1", ("sam2",), "Sam2Model", True, True, reference="sam2",
           checkpoints=("facebook/sam2.1-hiera-large", "facebook/sam2.1-hiera-base-plus",
                        "facebook/sam2.1-hiera-small", "facebook/sam2.1-hiera-tiny")),
    Family("sam3", "SAM 3 (tracker)", ("sam3_tracker", "sam3"), "Sam3TrackerModel", True, True,
           pixel_mean=(0.5, 0.5, 0.5), pixel_std=(0.5, 0.5, 0.5), reference="sam3", checkpoints=("facebook/sam3",)),
    Family("edgetam", "EdgeTAM", ("edgetam",), "EdgeTamModel", True, True, reference="edgetam-dimos (sam2 fork)",
           checkpoints=("yonigozlan/EdgeTAM-hf",)),
)}
_ALIASES = {"samhq": "sam_hq", "hq": "sam_hq", "sam2.1": "sam2", "sam21": "sam2", "sam3_tracker": "sam3",
            "edge_tam": "edgetam"}


def get_family(name: str) -> Family:
    """A family by name (``sam-hq``, ``SAM_HQ``, ``sam2.1`` are all accepted)."""
    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in FAMILIES:
        raise UnknownFamilyError(f"unknown SAM family {name!r}; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[key]


def family_of_model_type(model_type: str | None, where: str = "config.json") -> Family:
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    known = ", ".join(t for f in FAMILIES.values() for t in f.model_types)
    raise UnknownFamilyError(f"{where}: model_type {model_type!r} is not a SAM generation samrs can label "
                             f"with (known: {known})")


def family_of(model) -> Family:
    """The family of a loaded transformers model (by its config's model_type)."""
    return family_of_model_type(getattr(model.config, "model_type", None), type(model).__name__)


def family_of_state_dict(state_dict: dict, where: str = "checkpoint") -> Family:
    """The family of a reference package's checkpoint, from its tensor names.

    segment-anything / HQ-SAM: ``image_encoder.blocks.*`` (HQ-SAM adds ``mask_decoder.hf_token``);
    sam2: ``image_encoder.trunk.*`` with ``sam_mask_decoder.*`` (EdgeTAM's trunk is a timm RepViT,
    ``image_encoder.trunk.body.*``, and its memory perceiver ``spatial_perceiver.*``).
    """
    if isinstance(state_dict, dict) and isinstance(state_dict.get("model"), dict):
        state_dict = state_dict["model"]
    keys = [k for k in state_dict if isinstance(k, str)]
    if any(k.startswith("mask_decoder.hf_token") for k in keys):
        return FAMILIES["sam_hq"]
    if any(k.startswith("sam_mask_decoder.") for k in keys):
        if any(k.startswith(("image_encoder.trunk.body.", "spatial_perceiver.")) for k in keys):
            return FAMILIES["edgetam"]
        return FAMILIES["sam2"]
    if any(k.startswith(("detector.", "tracker.")) for k in keys):
        return FAMILIES["sam3"]
    return FAMILIES["sam"]  # the SAM converter names the tensor it misses if this is no SAM either
