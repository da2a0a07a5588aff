"""``bench_labeling.py --family sam_hq|sam2|sam3|edgetam``: our SamLabeler on another SAM generation
against that family's reference predictor loop (20 boxes per call, ``multimask_output=False``, as
SAMRS ran SAM), same random weights, same images and boxes.

Reference models come from each package's own builder (:mod:`family_reference`): HQ-SAM in SAM's
ViT shapes (``--model-size tiny|vit_b|vit_l|vit_h``), SAM 2.1 in its Hiera variants (``--model-size
tiny|hiera_t|hiera_s|hiera_b+|hiera_l``), EdgeTAM by its fork's ``configs/edgetam.yaml`` (``--model-size
edgetam``, the released layout, or ``tiny``: neck/decoder at 32 channels), run in a child process
where the fork's ``sam2`` is first on the path (:mod:`samrs_hf.sam.reference.edgetam`: timm and
``SAMRS_EDGETAM_REFERENCE``); ours loads the checkpoint it saves. SAM 3's image model with its interactive
predictor comes from sam3's builder functions (``--model-size tiny``: a 2-block ViT; ``full``: the
released ViT, no text encoder; :mod:`samrs_hf.sam.reference.sam3`), ours converted from its
``sam3.pt``-layout weights.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from samrs_hf.sam.reference.edgetam import SIZES as EDGETAM_SIZES
from samrs_hf.sam.reference.families import (
    build_reference, import_reference, reference_predict, reference_predictor,
)
from samrs_hf.sam.reference.sam3 import build_reference_sam3, released_state_dict
from samrs_hf.sam.reference.segment_anything import SHAPES, mask_ious, random_boxes, textured_image

SAM2_SIZES = {"tiny": "sam2.1_hiera_t", "hiera_t": "sam2.1_hiera_t", "hiera_s": "sam2.1_hiera_s",
              "hiera_b+": "sam2.1_hiera_b+", "hiera_l": "sam2.1_hiera_l"}


def _reference_model(family: str, size: str):
    """The family's random reference model of ``size`` (None where no reference runs here)."""
    if family == "sam_hq":
        if size == "tiny":
            return build_reference("sam_hq")
        _, build = import_reference("sam_hq", "build_sam")
        dim, depth, heads, global_idx = SHAPES[size]
        torch.manual_seed(0)
        return build._build_sam(encoder_embed_dim=dim, encoder_depth=depth, encoder_num_heads=heads,
                                encoder_global_attn_indexes=global_idx).eval()
    if family == "sam2":
        if size == "tiny":
            return build_reference("sam2")
        from hydra import initialize_config_module
        from hydra.core.global_hydra import GlobalHydra

        _, build = import_reference("sam2", "build_sam")
        if not GlobalHydra.instance().is_initialized():
            initialize_config_module("sam2", version_base="1.2")
        torch.manual_seed(0)
        return build.build_sam2(f"configs/sam2.1/{SAM2_SIZES[size]}.yaml", None, device="cpu")
    if family == "sam3":
        return build_reference("sam3") if size == "tiny" else build_reference_sam3(0, size).eval()
    return None


def _our_model(family: str, reference):
    from samrs_hf.sam.families import get_family
    from samrs_hf.sam.family_checkpoint import family_model_from_checkpoint
    from samrs_hf.sam.loading import load_sam

    if reference is None:
        return load_sam(f"tiny-random-{family}")[0]
    state = released_state_dict(reference) if family == "sam3" else reference.state_dict()
    return family_model_from_checkpoint({"model": state}, get_family(family))


def _edgetam(args, size: str, images, prompts, results: dict):
    """EdgeTAM: the fork's predictor loop timed in its child process (warm-up first), ours on the
    checkpoint it saved; (our model, reference masks or None)."""
    import tempfile

    from samrs_hf.common.safe_load import load_checkpoint
    from samrs_hf.sam.families import get_family
    from samrs_hf.sam.family_checkpoint import family_model_from_checkpoint
    from samrs_hf.sam.reference.edgetam import missing_reference, run_reference

    if missing_reference():
        raise SystemExit(missing_reference())
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/edgetam.pt"
        run = run_reference(path, images, [[p] for p in prompts], size=size, warmup=True)
        model = family_model_from_checkpoint(load_checkpoint(path), get_family("edgetam"))
    if args.skip_reference:
        return model, None
    results["ref_images_per_s"] = args.images / run.seconds
    print(f"reference edgetam predictor fp32, 20 boxes/call: {results['ref_images_per_s']:.3f} images/s")
    return model, [r[0][0] for r in run.results]


def _reference_rate(args, family: str, reference, device, images, prompts, results: dict):
    """The reference predictor loop timed here (after a warm-up); its masks, or None."""
    if reference is None:
        print(f"reference: none for {family} here (see the module doc)")
        return None
    if args.skip_reference:
        return None
    predictor = reference_predictor(family, reference.to(device))
    reference_predict(family, predictor, images[0], prompts[0][:20])  # warm-up
    t = time.perf_counter()
    ref_masks = [reference_predict(family, predictor, im, p)[0] for im, p in zip(images, prompts)]
    results["ref_images_per_s"] = args.images / (time.perf_counter() - t)
    print(f"reference {family} predictor fp32, 20 boxes/call: {results['ref_images_per_s']:.3f} images/s")
    reference.to("cpu")
    return ref_masks


def run_family(args) -> dict:
    """Rates (images/s) of the reference loop and of ours, and the masks' agreement."""
    from samrs_hf.sam.engine import SamLabeler
    from samrs_hf.sam.families import get_family
    from samrs_hf.sam.prompts import PromptBatch

    family = get_family(args.family).name
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    size = args.model_size or {"sam2": "hiera_t", "sam_hq": "vit_b", "edgetam": "edgetam"}.get(family, "tiny")
    known = {"sam_hq": SHAPES, "sam2": SAM2_SIZES, "edgetam": EDGETAM_SIZES, "sam3": ("tiny", "full")}.get(family, ("tiny",))
    if size not in known:
        raise SystemExit(f"--model-size {size} is no {family} size here ({', '.join(sorted(known))})")
    images = [textured_image(args.size, args.size, seed=i) for i in range(args.images)]
    boxes = [random_boxes(args.size, args.size, args.boxes, seed=i) for i in range(args.images)]
    prompts = [PromptBatch(boxes=b, points=None, point_labels=None, masks=None, box_kind="H-Box") for b in boxes]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, device {device} ({where}); family {family}, size {size} (random weights), "
          f"{args.images} images {args.size}x{args.size}, {args.boxes} boxes each; ours {args.dtype}")
    results: dict = {"family": family, "model_size": size, "device": str(device), "images": args.images,
                     "boxes": args.boxes}
    if family == "edgetam":  # the reference runs on the CPU in its own process
        model, ref_masks = _edgetam(args, size, images, prompts, results)
    else:
        reference = _reference_model(family, size)
        model = _our_model(family, reference)
        ref_masks = _reference_rate(args, family, reference, device, images, prompts, results)
    labeler = SamLabeler(model, device=device, dtype=dtype, image_batch_size=args.image_batch_size,
                         max_masks_per_chunk=args.chunk, compile=args.compile)
    labeler.label(images[:1], prompts[:1])  # warm-up
    t = time.perf_counter()
    ours = labeler.label(images, prompts)
    results["images_per_s"] = args.images / (time.perf_counter() - t)
    print(f"ours SamLabeler {args.dtype}: {results['images_per_s']:.3f} images/s")
    if ref_masks is not None:
        ious = np.concatenate([mask_ious(r.masks, m) for r, m in zip(ours, ref_masks)])
        results.update(speedup=results["images_per_s"] / results["ref_images_per_s"],
                       mask_iou_min=float(ious.min()) if len(ious) else float("nan"))
        print(f"SPEEDUP ours/reference: {results['speedup']:.2f}x   (mask IoU vs reference: min "
              f"{results['mask_iou_min']:.4f})")
    return results
