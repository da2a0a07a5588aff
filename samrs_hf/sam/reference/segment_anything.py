"""The reference SAMRS labelling path (segment-anything's ``SamPredictor``), shared by the parity
test, the benchmark and the GPU check.

segment-anything imports torchvision for two PIL transforms and two box ops. Where torchvision is
not installed, :func:`import_segment_anything` registers faithful equivalents in ``sys.modules`` so
the reference runs unchanged; torchvision is never a dependency of samrs_hf.
"""

from __future__ import annotations

import sys
import types

import numpy as np

# segment-anything builder arguments: (embed_dim, depth, heads, global attention layers)
SHAPES = {
    "tiny": (64, 2, 2, [1]),
    "vit_b": (768, 12, 12, [2, 5, 8, 11]),
    "vit_l": (1024, 24, 16, [5, 11, 17, 23]),
    "vit_h": (1280, 32, 16, [7, 15, 23, 31]),
}


def import_segment_anything():
    """Import segment-anything, with a torchvision stand-in only while it imports.

    The stand-in is removed from ``sys.modules`` afterwards (segment-anything keeps its own references)
    because transformers probes ``torchvision`` too and must keep seeing it as absent.
    """
    try:
        import torchvision  # noqa: F401
    except ImportError:
        stubs = _torchvision_stub()
        sys.modules.update(stubs)
        try:
            import segment_anything
        finally:
            for name in stubs:
                sys.modules.pop(name, None)
        return segment_anything
    import segment_anything

    return segment_anything


def _torchvision_stub() -> dict:
    import torch
    from PIL import Image

    def to_pil_image(pic):
        # segment-anything passes an HxWx3 uint8 array; torchvision maps that to an RGB image.
        return Image.fromarray(np.asarray(pic, dtype=np.uint8))

    def resize(img, size, *args, **kwargs):
        # torchvision.transforms.functional.resize on a PIL image with the default
        # InterpolationMode.BILINEAR calls PIL's resize with Image.BILINEAR; size is (h, w).
        h, w = size
        return img.resize((int(w), int(h)), Image.BILINEAR)

    def box_area(boxes):
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])

    def nms(boxes, scores, iou_threshold):
        order = torch.argsort(scores, descending=True)
        keep = []
        while order.numel():
            i = order[0]
            keep.append(int(i))
            if order.numel() == 1:
                break
            rest = order[1:]
            lt = torch.maximum(boxes[i, :2], boxes[rest, :2])
            rb = torch.minimum(boxes[i, 2:], boxes[rest, 2:])
            inter = (rb - lt).clamp(min=0).prod(dim=1)
            iou = inter / (box_area(boxes[i : i + 1]) + box_area(boxes[rest]) - inter)
            order = rest[iou <= iou_threshold]
        return torch.as_tensor(keep, dtype=torch.int64)

    def batched_nms(boxes, scores, idxs, iou_threshold):
        # torchvision's coordinate trick: offset boxes per category so they never overlap.
        if boxes.numel() == 0:
            return torch.empty((0,), dtype=torch.int64)
        offsets = idxs.to(boxes) * (boxes.max() + 1)
        return nms(boxes + offsets[:, None], scores, iou_threshold)

    tv = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    ops = types.ModuleType("torchvision.ops")
    ops_boxes = types.ModuleType("torchvision.ops.boxes")
    functional.resize, functional.to_pil_image = resize, to_pil_image
    ops_boxes.batched_nms, ops_boxes.box_area, ops_boxes.nms = batched_nms, box_area, nms
    ops.boxes = ops_boxes
    transforms.functional = functional
    tv.transforms, tv.ops = transforms, ops
    return {
        "torchvision": tv,
        "torchvision.transforms": transforms,
        "torchvision.transforms.functional": functional,
        "torchvision.ops": ops,
        "torchvision.ops.boxes": ops_boxes,
    }


def build_reference_sam(shape: str = "tiny", seed: int = 0, *, decoder_gain: float = 1.0,
                        smooth_masks: bool = False):
    """Random-weight SAM made by segment-anything's own builder (PyTorch default init).

    ``decoder_gain`` scales the hypernetwork output layers so random masks are neither all-empty
    nor all-full, which would make a mask comparison meaningless.

    ``smooth_masks`` gives the decoder's two 2x2 transposed convolutions one kernel for all four
    taps. Default random taps alternate pixel by pixel, so random masks are speckle with ~150k runs
    each (their RLE is bigger than the bitmap); with shared taps the masks are smooth regions of a
    few hundred runs, like real SAM masks, while every layer still computes exactly as much.
    """
    import torch

    import_segment_anything()
    from segment_anything.build_sam import _build_sam

    dim, depth, heads, global_idx = SHAPES[shape]
    torch.manual_seed(seed)
    sam = _build_sam(
        encoder_embed_dim=dim, encoder_depth=depth, encoder_num_heads=heads,
        encoder_global_attn_indexes=global_idx,
    )
    with torch.no_grad():
        # Random rel-pos/abs-pos tables (zero at init) so the conversion of those tensors is exercised.
        gen = torch.Generator().manual_seed(seed + 1)
        for name, p in sam.named_parameters():
            if "rel_pos" in name or name.endswith("pos_embed"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(decoder_gain)
        if smooth_masks:
            for conv in (sam.mask_decoder.output_upscaling[0], sam.mask_decoder.output_upscaling[3]):
                conv.weight.copy_(conv.weight.mean(dim=(2, 3), keepdim=True).expand_as(conv.weight))
    return sam.eval()


def reference_label(predictor, image: np.ndarray, boxes: np.ndarray, per_call: int = 20):
    """SAMRS's loop: set_image once, then boxes 20 at a time, multimask_output=False, masks to CPU."""
    import torch

    predictor.set_image(image)
    masks, scores = [], []
    for start in range(0, len(boxes), per_call):
        chunk = torch.as_tensor(boxes[start : start + per_call], dtype=torch.float, device=predictor.device)
        chunk = predictor.transform.apply_boxes_torch(chunk, image.shape[:2])
        m, s, _ = predictor.predict_torch(None, None, boxes=chunk, multimask_output=False)
        masks.append(m[:, 0].cpu().numpy())
        scores.append(s[:, 0].cpu().numpy())
    if not masks:
        return np.zeros((0, *image.shape[:2]), bool), np.zeros((0,), np.float32)
    return np.concatenate(masks), np.concatenate(scores)


def textured_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random blobs plus a few bright rectangles: structure at several scales, not noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for _ in range(12):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(0.05, 0.3) * max(h, w)
        color = rng.uniform(0, 255, 3)
        weight = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        img += weight[..., None] * color
    for _ in range(8):
        y0, x0 = int(rng.uniform(0, h * 0.8)), int(rng.uniform(0, w * 0.8))
        img[y0 : y0 + int(rng.uniform(10, h / 4)), x0 : x0 + int(rng.uniform(10, w / 4))] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def random_boxes(h: int, w: int, n: int, seed: int = 0) -> np.ndarray:
    """n xyxy float32 boxes inside the image, sizes from a few pixels to a quarter of the side."""
    rng = np.random.default_rng(seed)
    bw = rng.uniform(6, max(8, w / 4), n)
    bh = rng.uniform(6, max(8, h / 4), n)
    x0 = rng.uniform(0, w - bw)
    y0 = rng.uniform(0, h - bh)
    return np.stack([x0, y0, x0 + bw, y0 + bh], axis=1).astype(np.float32)


def random_objects(h: int, w: int, n: int, seed: int = 0):
    """Oriented rectangles as SourceObjects (polygon + an H-Box padded a little, as annotators draw)."""
    from ...sources.records import SourceObject

    rng = np.random.default_rng(seed)
    objs = []
    for _ in range(n):
        cx, cy = rng.uniform(0.15 * w, 0.85 * w), rng.uniform(0.15 * h, 0.85 * h)
        bw, bh, a = rng.uniform(20, w / 5), rng.uniform(20, h / 5), rng.uniform(0, np.pi)
        d = np.array([[-bw, -bh], [bw, -bh], [bw, bh], [-bw, bh]]) / 2
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        poly = d @ rot.T + [cx, cy]
        x0, y0 = np.clip(poly.min(0) - 3, 0, None)
        x1, y1 = np.minimum(poly.max(0) + 3, [w - 1, h - 1])
        objs.append(SourceObject("ship", 0, (float(x0), float(y0), float(x1), float(y1)), polygon=poly))
    return objs


def reference_prompts(predictor, hw, prompts):
    """SamPredictor.predict_torch on a PromptBatch mapped with predictor.transform (set_image first)."""
    import torch

    t, dev = predictor.transform, predictor.device

    def as_t(a):
        return None if a is None else torch.as_tensor(a, dtype=torch.float, device=dev)

    points = None if prompts.points is None else as_t(t.apply_coords(prompts.points, hw))
    labels = None if prompts.point_labels is None else torch.as_tensor(prompts.point_labels, device=dev)
    boxes = None if prompts.boxes is None else as_t(t.apply_boxes(prompts.boxes, hw))
    masks, scores, _ = predictor.predict_torch(points, labels, boxes=boxes, mask_input=as_t(prompts.masks),
                                               multimask_output=False)
    return masks[:, 0].cpu().numpy(), scores[:, 0].cpu().numpy()


def column_runs(masks: np.ndarray) -> np.ndarray:
    """Runs per mask in COCO RLE order (column-major), i.e. the length of each mask's counts."""
    flat = masks.transpose(0, 2, 1).reshape(len(masks), -1)
    return (flat[:, 1:] != flat[:, :-1]).sum(axis=1) + 1 + flat[:, 0]


def mask_ious(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-mask IoU of (N,H,W) bool stacks, leaving out masks empty in both."""
    union = np.logical_or(ours, ref).sum(axis=(1, 2))
    inter = np.logical_and(ours, ref).sum(axis=(1, 2))
    return inter[union > 0] / union[union > 0]
