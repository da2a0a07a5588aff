"""SAMRS-validation evaluation of SEP models (paper App. A.5, Table 9).

Protocol: every validation image contributes its central 512x512 crop; images smaller than the
crop are padded (image 0, labels 255) so padding never counts. mIoU per subset comes from one
confusion matrix accumulated over all its pixels (``samrs_hf.analysis.metrics``); classes absent from both
ground truth and prediction are left out of the mean.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ..analysis.metrics import confusion_matrix, scores_from_confusion
from .data import CenterCropDataset

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _logits(model, pixel_values, subset):
    from .modeling_sep import SEPForSemanticSegmentation

    if isinstance(model, SEPForSemanticSegmentation):
        return model(pixel_values, subset=subset).logits
    return model(pixel_values=pixel_values).logits


@torch.no_grad()
def confusion_for(model, loader, num_classes: int, subset: str | None = None, device=None,
                  desc: str | None = None) -> np.ndarray:
    """Confusion matrix of ``model`` over ``(pixel_values, labels)`` batches."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    try:
        for pixel_values, labels in tqdm(loader, desc=desc, leave=False, disable=desc is None):
            pred = _logits(model, pixel_values.to(device), subset).argmax(1).cpu().numpy()
            cm += confusion_matrix(pred, labels.numpy(), num_classes)
    finally:
        model.train(was_training)
    return cm


def evaluate(model, datasets: dict, class_names: dict[str, list[str]], *, crop_size: int = 512,
             batch_size: int = 8, num_workers: int = 0, max_samples: int | None = None, device=None,
             progress: bool = True) -> dict:
    """``{subset: {OA, mIoU, mF1, IoU{class}, F1{class}, images}}`` for each validation subset."""
    config = getattr(model, "config", None)
    mean = getattr(config, "image_mean", IMAGENET_MEAN)
    std = getattr(config, "image_std", IMAGENET_STD)
    results = {}
    for subset, ds in datasets.items():
        if max_samples is not None:
            ds = ds.select(range(min(max_samples, len(ds))))
        loader = torch.utils.data.DataLoader(CenterCropDataset(ds, crop_size, mean, std), batch_size=batch_size,
                                             num_workers=num_workers)
        names = class_names[subset]
        cm = confusion_for(model, loader, len(names), subset, device, desc=f"eval {subset}" if progress else None)
        results[subset] = {**scores_from_confusion(cm, names), "images": len(ds)}
    return results


def json_safe(obj):
    """NaN (a class absent from ground truth and prediction) -> None, so the JSON is strict."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


def format_table(results: dict) -> str:
    """Per-subset mIoU (Table 9 layout, in %) followed by per-class IoU for each subset."""
    lines = ["subset      images    mIoU    mF1     OA"]
    for subset, r in results.items():
        lines.append(f"{subset:<10} {r['images']:>7}  {100 * r['mIoU']:6.2f}  {100 * r['mF1']:6.2f}  {100 * r['OA']:6.2f}")
    if len(results) > 1:
        avg = float(np.nanmean([r["mIoU"] for r in results.values()]))
        lines.append(f"{'average':<10} {'':>7}  {100 * avg:6.2f}")
    for subset, r in results.items():
        lines.append("")
        lines.append(f"{subset}: IoU per class (%)")
        for name, v in r["IoU"].items():
            lines.append(f"  {name:<28} {'   n/a' if np.isnan(v) else f'{100 * v:6.2f}'}")
    return "\n".join(lines)
