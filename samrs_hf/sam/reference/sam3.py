"""SAM 3's reference predictor for box/point prompts, on a small random model, for the parity test and
``bench_labeling.py --family sam3``.

sam3's ``build_sam3_image_model(enable_inst_interactivity=True)`` hard-codes the full size (a
1024-wide, 32-block ViT and a 24-layer text encoder), too slow for a CPU test. :func:`build_reference_sam3`
assembles the same image model from the same builder functions of ``sam3.model_builder`` with one
change, the ViT trunk: sam3's own ``ViT`` class with the builder's arguments except width 128, 2 heads
and 2 blocks (block 0 windowed, block 1 global, so both RoPE layouts are exercised). Everything else
is the builder's, at full size and random: the position encoding and the dual ViTDet neck
(``_create_vit_neck``, with the tracker's ``sam2_convs``), the vision-language backbone without a text
encoder (``_create_vl_backbone``; only ``forward_image`` runs), the DETR transformer, geometry
encoder and scoring (their tensors go into the checkpoint for the converter to leave out), no
segmentation head (the builder's ``enable_segmentation=False``), and the tracker (``build_tracker``)
wrapped in ``SAM3InteractiveImagePredictor``. The input stays 1008 (the predictor hard-codes its
288/144/72 feature grids). ``families.build_reference("sam3")`` then perturbs its position tables, norms
and ``no_mem_embed`` as it does the other families' references.

Predictions take the image model's own path for box/point prompts: ``Sam3Processor.set_image`` (uint8
resize to 1008, antialiased) then ``model.predict_inst(...)``, which fills low-res holes of up to 256
pixels (scikit-image labels them on the CPU; without it sam3 warns and skips the filling, so the parity
test needs it). sam3's builders make a few position tables on ``"cuda"`` at construction; on a machine
without CUDA those tensors are made on the CPU (``_cuda_tables_on_cpu``), the same values.
"""

from __future__ import annotations

import contextlib
import importlib
import io

import numpy as np

# module -> pip name: what sam3 (installed --no-deps) imports on this path, and scikit-image, with
# which its predictor fills small holes on the CPU (without it sam3 warns and skips the filling)
SAM3_NEEDS = {"sam3": "sam3", "timm": "timm", "torchvision": "torchvision", "einops": "einops", "ftfy": "ftfy",
              "regex": "regex", "iopath": "iopath", "skimage": "scikit-image"}
SAM3_VIT = dict(img_size=1008, pretrain_img_size=336, patch_size=14, embed_dim=128, depth=2, num_heads=2,
                mlp_ratio=4.625, norm_layer="LayerNorm", drop_path_rate=0.0, qkv_bias=True, use_abs_pos=True,
                tile_abs_pos=True, global_att_blocks=(1,), rel_pos_blocks=(), use_rope=True, use_interp_rope=True,
                window_size=24, pretrain_use_cls_token=True, retain_cls_token=False, ln_pre=True, ln_post=False,
                return_interm_layers=False, bias_patch_embed=False)  # _create_vit_backbone's, at a small size


def _cuda_tables_on_cpu():
    import torch
    from torch.overrides import TorchFunctionMode

    class _CudaTablesOnCpu(TorchFunctionMode):
        """Tensors sam3's constructors create with ``device="cuda"`` are made on the CPU instead."""

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = dict(kwargs or {})
            if not torch.cuda.is_available() and str(kwargs.get("device", "")).startswith("cuda"):
                kwargs["device"] = "cpu"
            return func(*args, **kwargs)

    return _CudaTablesOnCpu()


def build_reference_sam3(seed: int = 0, size: str = "tiny"):
    """The SAM 3 image model with instance interactivity (see the module docstring), at sam3's random
    init: ``size`` "tiny" (the small ViT) or "full" (the builder's own ``_create_vit_backbone``, the
    released shapes; still no text encoder, which box/point prompts never run)."""
    import torch

    mb, vitdet, task = import_sam3("model_builder", "model.vitdet", "model.sam1_task_predictor")
    torch.manual_seed(seed)
    with _cuda_tables_on_cpu():
        trunk = vitdet.ViT(**SAM3_VIT) if size == "tiny" else mb._create_vit_backbone()
        neck = mb._create_vit_neck(mb._create_position_encoding(precompute_resolution=1008), trunk,
                                   enable_inst_interactivity=True)
        tracker = mb.build_tracker(apply_temporal_disambiguation=False)
        model = mb._create_sam3_model(mb._create_vl_backbone(neck, None), mb._create_sam3_transformer(),
                                      mb._create_geometry_encoder(), None, mb._create_dot_product_scoring(),
                                      task.SAM3InteractiveImagePredictor(tracker), True)
    return model.eval()


def released_state_dict(model) -> dict:
    """The image model's tensors under ``sam3.pt``'s names: ``detector.*`` and ``tracker.*`` (the
    inverse of ``model_builder._load_checkpoint``)."""
    inst = "inst_interactive_predictor.model."
    return {("tracker." + k[len(inst):] if k.startswith(inst) else "detector." + k): v
            for k, v in model.state_dict().items()}


def save_released_checkpoint(model, path) -> None:
    """Write ``{"model": ...}`` in ``sam3.pt``'s layout, and read it back with sam3's own loader,
    which must find every tensor (it reports missing ones on stdout)."""
    import torch

    (mb,) = import_sam3("model_builder")
    torch.save({"model": released_state_dict(model)}, path)
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        mb._load_checkpoint(model, str(path))
    if "missing" in report.getvalue():
        raise RuntimeError(f"sam3's loader does not read {path} back: {report.getvalue().strip()}")


def import_sam3(*modules: str) -> list:
    """sam3's submodules; ImportError if sam3 (or timm/torchvision, which it needs for real) is missing."""
    return [importlib.import_module(f"sam3.{m}") for m in modules]


class Sam3InteractivePredictor:
    """``Sam3Processor.set_image`` + ``Sam3Image.predict_inst`` behind the ``set_image`` / ``predict``
    calls of SAM 2's predictor, so the reference loop treats both alike."""

    def __init__(self, model):
        (processor,) = import_sam3("model.sam3_image_processor")
        self.model = model
        self.processor = processor.Sam3Processor(model, device="cpu" if next(model.parameters()).device.type == "cpu"
                                                 else "cuda")
        self.state = None

    def set_image(self, image: np.ndarray) -> None:
        from PIL import Image

        self.state = self.processor.set_image(Image.fromarray(image))  # a numpy array's size is misread

    def predict(self, **kwargs):
        return self.model.predict_inst(self.state, **kwargs)
