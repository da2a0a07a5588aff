"""``--augment-on device``: the photometric part of the training transform and the normalisation as batched
tensor ops on the training device, after the uint8 crops cross from pinned memory.

The DataLoader workers then do only the uint8 geometric part (:func:`.augmentation.geometric`); each
example's photometric choice and factors, drawn by the same :func:`.augmentation.draw_plan`, travel as a
row of :data:`PARAMS` numbers (:func:`pack_plan`). The ops restate the CPU path's formulas in its
arithmetic (float32 where it computes in float32, PIL's truncations, PIL's HSV conversion), so a crop
comes out as :func:`.augmentation.photometric` makes it, up to float rounding at the last bit.
"""

from __future__ import annotations

import numpy as np
import torch

KINDS = (None, "contrast", "brightness", "gamma", "color_jitter")
PARAMS = 9
"""kind, three factors (jitter: brightness, contrast, saturation), the hue shift in PIL's 0..255 units,
and the order of jitter's four changes."""


def pack_plan(plan) -> np.ndarray:
    """An :class:`.augmentation.AugmentPlan`'s photometric part as :data:`PARAMS` float32 numbers."""
    out = np.zeros(PARAMS, dtype=np.float32)
    out[0] = KINDS.index(plan.photometric)
    if plan.photometric == "brightness":
        out[1] = plan.factors[0] * 255.0  # the CPU path adds this float64 product to a float32 image
    elif plan.photometric in ("contrast", "gamma"):
        out[1] = plan.factors[0]
    elif plan.photometric == "color_jitter":
        brightness, contrast, saturation, hue, order = plan.factors
        out[1:5] = brightness, contrast, saturation, int(round(hue * 255))
        out[5:9] = order
    return out


def _luma(x: torch.Tensor) -> torch.Tensor:
    """PIL's RGB -> L (ITU-R 601-2 in 16-bit fixed point) of (n, H, W, 3) integer-valued floats."""
    r, g, b = (x[..., c].to(torch.int64) for c in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).to(x.dtype)


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ``Image.blend(degenerate, x, factor)`` on uint8 values: float32, truncated, clipped."""
    return torch.clamp(torch.trunc(degenerate + factor.view(-1, 1, 1, 1) * (x - degenerate)), 0, 255)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``convert("HSV")``: its float32 / double steps and truncations."""
    r, g, b = x.unbind(-1)
    maxc, minc = x.amax(-1), x.amin(-1)
    cr = maxc - minc
    safe = torch.where(cr > 0, cr, torch.ones_like(cr))
    s = cr / torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    rc, gc, bc = ((maxc - c) / safe for c in (r, g, b))
    d = torch.float64
    h = torch.where(r == maxc, (bc - gc).to(d),
                    torch.where(g == maxc, 2.0 + rc.to(d) - bc.to(d), 4.0 + gc.to(d) - rc.to(d))).float()
    h = torch.fmod(h.to(d) / 6.0 + 1.0, 1.0).float()
    grey = cr == 0
    uh = torch.where(grey, 0, torch.trunc(h.to(d) * 255.0)).clamp(0, 255)
    us = torch.where(grey, 0, torch.trunc(s.to(d) * 255.0)).clamp(0, 255)
    return torch.stack([uh, us, maxc.to(d)], -1)


def _hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """PIL's ``convert("RGB")`` from HSV (float64 holding 0..255 integers)."""
    h, s, v = hsv.unbind(-1)
    i = torch.floor(h * 6.0 / 255.0)
    f = (h * 6.0 / 255.0 - i).float()
    fs = (s / 255.0).float()
    p = torch.floor(v * (1.0 - fs.double()) + 0.5).clamp(0, 255)
    q = torch.floor(v * (1.0 - (fs * f).double()) + 0.5).clamp(0, 255)
    t = torch.floor(v * (1.0 - fs.double() * (1.0 - f.double())) + 0.5).clamp(0, 255)
    sector = torch.remainder(i, 6).long()
    table = torch.stack([torch.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))], 0)
    rgb = torch.gather(table, 0, sector.unsqueeze(0).unsqueeze(-1).expand(1, *sector.shape, 3)).squeeze(0)
    return torch.where((s == 0).unsqueeze(-1), v.unsqueeze(-1).expand_as(rgb), rgb)


def _jitter_step(x: torch.Tensor, op: int, params: torch.Tensor) -> torch.Tensor:
    """One of ColorJitter's changes (0 brightness, 1 contrast, 2 saturation, 3 hue) as PIL makes it."""
    if op == 0:
        return _blend(torch.zeros_like(x), x, params[:, 1])
    if op == 1:
        mean = _luma(x).to(torch.float64).mean(dim=(1, 2))
        degenerate = torch.floor(mean + 0.5).to(x.dtype).view(-1, 1, 1, 1)
        return _blend(degenerate, x, params[:, 2])
    if op == 2:
        return _blend(_luma(x).unsqueeze(-1), x, params[:, 3])
    hsv = _rgb_to_hsv(x)
    shift = params[:, 4].to(torch.float64).view(-1, 1, 1)
    hsv = torch.stack([torch.remainder(hsv[..., 0] + shift, 256), hsv[..., 1], hsv[..., 2]], -1)
    return _hsv_to_rgb(hsv).to(x.dtype)


def _color_jitter(x: torch.Tensor, params: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Each example's four changes in its own order; ``order`` (n, 4) lives on the CPU (no device sync)."""
    for position in range(4):
        for op in range(4):
            rows = torch.nonzero(order[:, position] == op).flatten()
            if len(rows):
                at = rows.to(x.device, non_blocking=True)
                x[at] = _jitter_step(x[at], op, params[at])
    return x


def apply_photometric(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """(n, H, W, 3) uint8 crops and their (n, :data:`PARAMS`) rows -> float32 0..255 integer values, each
    example changed by its own photometric choice as :func:`.augmentation.photometric` does.
    ``params`` may live on the CPU or the device; the selection is read on the CPU either way."""
    x = images.to(torch.float32)
    cpu = params.detach().cpu()
    dev = params.to(x.device, non_blocking=True)
    kinds = cpu[:, 0].round().long()
    for k, name in enumerate(KINDS):
        rows = torch.nonzero(kinds == k).flatten()
        if name is None or not len(rows):
            continue
        at = rows.to(x.device, non_blocking=True)
        sel, factor = x[at], dev[at, 1].view(-1, 1, 1, 1)
        if name == "contrast":
            sel = torch.clamp(torch.round(sel * factor), 0, 255)
        elif name == "brightness":
            sel = torch.clamp(torch.round(sel + factor), 0, 255)
        elif name == "gamma":
            sel = torch.clamp(torch.round(255.0 * torch.pow(sel / 255.0, factor)), 0, 255)
        else:
            sel = _color_jitter(sel, dev[at], cpu[rows, 5:9].round().long())
        x[at] = sel
    return x


def normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    """(n, H, W, 3) 0..255 values -> (n, 3, H, W) ``(x / 255 - mean) / std``, as ``data.to_tensor``."""
    m = torch.as_tensor(np.asarray(mean, np.float32), device=x.device)
    s = torch.as_tensor(np.asarray(std, np.float32), device=x.device)
    return ((x / 255.0 - m) / s).permute(0, 3, 1, 2).contiguous()


def device_batches(loader, device, mean, std):
    """The micro-batches of a ``--augment-on device`` loader, ready for the model: uint8 crops, labels and
    photometric rows copied to ``device`` without blocking (from pinned memory when the loader pins), then
    the photometric changes and the normalisation there; ``pixel_values`` / ``labels`` as the CPU path
    gives them."""
    for batch in loader:
        images = batch.pop("images").to(device, non_blocking=True)
        labels = batch["labels"].to(device, non_blocking=True)
        x = apply_photometric(images, batch.pop("photometric"))
        yield {**batch, "pixel_values": normalise(x, mean, std), "labels": labels.long()}
