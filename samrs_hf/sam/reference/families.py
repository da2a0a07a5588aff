"""The reference predictors of the other SAM generations (HQ-SAM, SAM 2.1), for the parity test and
``bench_labeling.py --family``: random small models made by each package's own builder, and the
predictor loop SAMRS ran (``set_image`` once, 20 prompts per call, ``multimask_output=False``).

Neither package is a dependency of samrs_hf (``pip install .[generations]``). Their torchvision
imports (PIL resize for HQ-SAM, ``Resize``/``Normalize``/``ToTensor`` for SAM 2) get the stand-ins of
:mod:`sam_reference` and below while they import; HQ-SAM's ``timm`` import serves only its TinyViT
encoder, unused here, and gets names that fail if called.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import types

import numpy as np

from .segment_anything import _torchvision_stub

REFERENCE_PACKAGES = {"sam_hq": "segment_anything_hq", "sam2": "sam2", "sam3": "sam3"}


def _sam2_transforms(tv: dict) -> None:
    """torchvision.transforms' ToTensor / Resize / Normalize as SAM2Transforms uses them on tensors:
    Resize of a float tensor is bilinear with antialiasing (torchvision >= 0.17's default)."""
    import torch
    import torch.nn.functional as F

    class ToTensor:
        def __call__(self, pic):
            return torch.from_numpy(np.array(pic, dtype=np.uint8)).permute(2, 0, 1).float().div(255)

    class Resize(torch.nn.Module):
        def __init__(self, size):
            super().__init__()
            self.size = [int(s) for s in size]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x[None], size=self.size, mode="bilinear", align_corners=False, antialias=True)[0]

    class Normalize(torch.nn.Module):
        def __init__(self, mean, std):
            super().__init__()
            self.register_buffer("mean", torch.tensor(mean).view(-1, 1, 1))
            self.register_buffer("std", torch.tensor(std).view(-1, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x - self.mean) / self.std

    transforms = tv["torchvision.transforms"]
    transforms.ToTensor, transforms.Resize, transforms.Normalize = ToTensor, Resize, Normalize


def _timm_stub() -> dict:
    def unavailable(*args, **kwargs):
        raise RuntimeError("timm stand-in: HQ-SAM's TinyViT is not used by the parity tests")

    import torch

    class DropPath(torch.nn.Module):  # subclassed by TinyViT at import; never built here
        def __init__(self, *args, **kwargs):
            unavailable()

    layers = types.ModuleType("timm.models.layers")
    layers.DropPath, layers.to_2tuple, layers.trunc_normal_ = DropPath, unavailable, unavailable
    registry = types.ModuleType("timm.models.registry")
    registry.register_model = lambda fn: fn
    return {"timm": types.ModuleType("timm"), "timm.models": types.ModuleType("timm.models"),
            "timm.models.layers": layers, "timm.models.registry": registry}


@contextlib.contextmanager
def _stand_ins():
    """Stand-ins while a reference package imports, removed after: transformers probes torchvision
    and must keep seeing it absent."""
    stubs = {}
    try:
        import torchvision  # noqa: F401
    except ImportError:
        stubs.update(_torchvision_stub())
        _sam2_transforms(stubs)
    try:
        import timm  # noqa: F401
    except ImportError:
        stubs.update(_timm_stub())
    sys.modules.update(stubs)
    try:
        yield
    finally:
        for name in stubs:
            sys.modules.pop(name, None)


def import_reference(family: str, *modules: str):
    """Import the family's reference package (and submodules); ImportError if it is not installed."""
    package = REFERENCE_PACKAGES[family]
    with _stand_ins():
        root = importlib.import_module(package)
        return [root] + [importlib.import_module(f"{package}.{m}") for m in modules]


def build_reference_sam_hq(seed: int = 0):
    """HQ-SAM by segment_anything_hq's own builder: a 2-block ViT (one global block), random init."""
    import torch

    _, build = import_reference("sam_hq", "build_sam")
    torch.manual_seed(seed)
    model = build._build_sam(encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=2,
                             encoder_global_attn_indexes=[1])
    _randomize(model, seed)
    return model.eval()


def _randomize(model, seed: int) -> None:
    """Nonzero position tables, token embeddings and norms (zero/one at init), so every converted
    tensor matters to the output."""
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "rel_pos" in name or "pos_embed" in name or "no_mem" in name or "norm" in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)


SAM2_TINY = [  # sam2.1_hiera_t's stages, heads, windows and global blocks at a few channels
    "++model.image_encoder.trunk.embed_dim=8", "++model.image_encoder.neck.d_model=32",
    "++model.image_encoder.neck.backbone_channel_list=[64,32,16,8]",
    "++model.image_encoder.neck.position_encoding.num_pos_feats=32",
]


def build_reference_sam2(seed: int = 0):
    """SAM 2.1 by sam2's own ``build_sam2`` from its sam2.1_hiera_t config (widths overridden),
    random init, no checkpoint."""
    import torch
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    _, build = import_reference("sam2", "build_sam")
    if not GlobalHydra.instance().is_initialized():
        initialize_config_module("sam2", version_base="1.2")
    torch.manual_seed(seed)
    model = build.build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu",
                             hydra_overrides_extra=SAM2_TINY)
    _randomize(model, seed)
    return model.eval()


def reference_predictor(family: str, model):
    if family == "sam3":
        from .sam3 import Sam3InteractivePredictor

        return Sam3InteractivePredictor(model)
    if family == "sam_hq":
        _, pred = import_reference("sam_hq", "predictor")
        return pred.SamPredictor(model)
    _, pred = import_reference("sam2", "sam2_image_predictor")
    return pred.SAM2ImagePredictor(model)


def reference_predict(family: str, predictor, image: np.ndarray, prompts, per_call: int = 20,
                      set_image: bool = True):
    """The reference predictor on a PromptBatch (image pixels coordinates), ``per_call`` prompts a
    call, ``multimask_output=False``; (bool masks (N, H, W), scores (N,)). ``set_image=False``: the
    predictor already holds ``image`` (several prompt batches per image)."""
    import torch

    if set_image:
        predictor.set_image(image)
    masks, scores = [], []
    for start in range(0, len(prompts), per_call):
        p = prompts[start : start + per_call]
        if family == "sam_hq":
            t, dev = predictor.transform, predictor.device
            pts = None if p.points is None else torch.as_tensor(t.apply_coords(p.points, image.shape[:2]),
                                                                 dtype=torch.float, device=dev)
            lab = None if p.point_labels is None else torch.as_tensor(p.point_labels, device=dev)
            box = None if p.boxes is None else torch.as_tensor(t.apply_boxes(p.boxes, image.shape[:2]),
                                                               dtype=torch.float, device=dev)
            msk = None if p.masks is None else torch.as_tensor(p.masks, dtype=torch.float, device=dev)
            m, s, _ = predictor.predict_torch(pts, lab, boxes=box, mask_input=msk, multimask_output=False,
                                              hq_token_only=False)
            m, s = m[:, 0].cpu().numpy(), s[:, 0].cpu().numpy()
        else:
            m, s, _ = predictor.predict(point_coords=p.points, point_labels=p.point_labels, box=p.boxes,
                                        mask_input=p.masks,
                                        multimask_output=False)
            m, s = np.asarray(m).reshape(len(p), *image.shape[:2]), np.asarray(s).reshape(len(p))
        masks.append(m.astype(bool))
        scores.append(s)
    return np.concatenate(masks), np.concatenate(scores)


def save_reference_checkpoint(family: str, model, path) -> None:
    """The reference model's weights as its package's released checkpoint file: ``{"model": state_dict}``
    (SAM 3: ``sam3.pt``'s ``detector.*`` / ``tracker.*`` names, checked by sam3's own loader)."""
    import torch

    if family == "sam3":
        from .sam3 import save_released_checkpoint

        save_released_checkpoint(model, path)
    else:
        torch.save({"model": model.state_dict()}, path)


def build_reference(family: str, seed: int = 0):
    """The family's small random reference model (its package's own builder)."""
    if family == "sam_hq":
        return build_reference_sam_hq(seed)
    if family == "sam2":
        return build_reference_sam2(seed)
    if family == "sam3":
        from .sam3 import build_reference_sam3

        model = build_reference_sam3(seed)
        _randomize(model, seed)
        return model
    raise ValueError(f"no reference builder for {family!r} (known: {', '.join(REFERENCE_PACKAGES)})")
