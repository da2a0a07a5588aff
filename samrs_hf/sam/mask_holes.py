"""Small-hole filling of low-resolution mask logits, as SAM 3's interactive predictor does it.

``SAM3InteractiveImagePredictor`` (sam3) post-processes every low-res mask before resizing it to the
image: background components (logit <= threshold, 8-connected, as ``skimage.measure.label`` and
``cc_torch`` label them) of at most ``max_hole_area`` (256) low-res pixels become foreground (logit
set to threshold + 10). samrs_hf needs no scikit-image: the components are found here with max-pooling
label propagation in torch, on the device the masks are on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _neighbour_max(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def small_component_mask(region: torch.Tensor, max_area: int) -> torch.Tensor:
    """(N, 1, H, W) bool: the pixels of ``region``'s 8-connected components of at most ``max_area``
    pixels.

    Every region pixel starts as its own root; each round, a root takes the largest label next to any
    of its pixels, and then every pixel jumps to its root's root until the chains are flat (pointer
    jumping), so labels spread along long components in a few rounds, not one pixel per round. When no
    pixel sees a larger label beside it, each component carries one label (its largest index).
    """
    n, _, h, w = region.shape
    if region.numel() == 0 or max_area <= 0:
        return torch.zeros_like(region, dtype=torch.bool)
    size = h * w + 1  # label 0: outside the region
    keep = region.view(n, -1)
    index = torch.arange(1, size, device=region.device).expand(n, -1)
    parent = torch.cat([torch.zeros(n, 1, dtype=torch.long, device=region.device), index * keep], dim=1)
    labels = parent[:, 1:].clone()
    for _ in range(h * w):
        # float32 holds every label exactly up to 2**24 pixels (SAM 3's low-res masks have 288**2)
        seen = _neighbour_max(labels.view(n, 1, h, w).float()).view(n, -1).long() * keep
        if torch.equal(seen, labels):
            break
        parent.scatter_reduce_(1, labels, seen, reduce="amax")
        while True:
            jumped = parent.gather(1, parent)
            if torch.equal(jumped, parent):
                break
            parent = jumped
        labels = parent.gather(1, labels)
    counts = torch.zeros(n, size, device=region.device, dtype=torch.long)
    counts.scatter_add_(1, labels, torch.ones_like(labels))
    return region & (counts.gather(1, labels) <= max_area).view(n, 1, h, w)


def fill_small_holes(logits: torch.Tensor, max_hole_area: float, threshold: float = 0.0) -> torch.Tensor:
    """``SAM2Transforms.postprocess_masks``' hole filling (sam3): (N, C, H, W) logits with every
    background component of at most ``max_hole_area`` pixels raised to ``threshold + 10``."""
    if max_hole_area <= 0:
        return logits
    flat = logits.flatten(0, 1).unsqueeze(1)
    holes = small_component_mask(flat <= threshold, int(max_hole_area)).view_as(logits)
    return torch.where(holes, torch.full_like(logits, threshold + 10.0), logits)
