"""The dataset features of packaged SAMRS subsets (one definition, used everywhere) and decoders.

``objects`` follows the Hub's detection conventions (a list of per-object structs with COCO
``[x, y, w, h]`` boxes); ``segmentation`` is COCO RLE so instance masks stay small in parquet.
"""

from __future__ import annotations

import numpy as np
from datasets import ClassLabel, Features, Image, List, Value

from ..sources.classes import ClassTable, get_class_table

FIRST_OBJECT_ID = 1
"""Object ids count from here over the dataset's rows in order (packaging, the release conversion and
the reader of build folders alike), so an id names one object in the whole dataset."""


def samrs_features(table: ClassTable | str) -> Features:
    """Features of one subset (its class names go into ``objects.category``)."""
    if isinstance(table, str):
        table = get_class_table(table)
    return Features(
        {
            "image": Image(),
            "semantic": Image(),
            "objects": List(
                {
                    "id": Value("int64"),
                    "category": ClassLabel(names=list(table.names)),
                    "bbox": List(Value("float32"), length=4),
                    "rbox": List(Value("float32"), length=8),
                    "segmentation": {"size": List(Value("int32"), length=2), "counts": Value("string")},
                    "area": Value("int64"),
                    "score": Value("float32"),
                    "truncated": Value("bool"),
                }
            ),
            "image_id": Value("string"),
            "source_image": Value("string"),
            "width": Value("int32"),
            "height": Value("int32"),
            "subset": Value("string"),
        }
    )


def _rle(seg: dict) -> dict:
    counts = seg["counts"]
    return {"size": [int(s) for s in seg["size"]], "counts": counts.encode() if isinstance(counts, str) else counts}


def decode_masks(example) -> np.ndarray:
    """``[N, H, W]`` bool instance masks of one example (pycocotools RLE decode)."""
    from pycocotools import mask as mask_utils

    objects = example["objects"]
    h, w = int(example["height"]), int(example["width"])
    if not objects:
        return np.zeros((0, h, w), dtype=bool)
    rles = [_rle(o["segmentation"]) for o in objects]
    for o, r in zip(objects, rles):
        if r["size"] != [h, w]:
            raise ValueError(
                f"{example.get('image_id', '?')}: object {o.get('id')} mask size {r['size']} != image {[h, w]}"
            )
    masks = mask_utils.decode(rles)  # H, W, N (Fortran order)
    return np.ascontiguousarray(masks.transpose(2, 0, 1)).astype(bool)


def training_transform(batch: dict) -> dict:
    """A ``set_transform``/``with_transform`` for torch training.

    Returns per example: ``pixel_values`` float32 [3, H, W] in [0, 1], ``labels`` int64 [H, W]
    (class ids, 255 ignore), ``masks`` bool [N, H, W], ``boxes`` float32 [N, 4] xyxy and
    ``class_labels`` int64 [N].
    """
    import torch

    out = {"pixel_values": [], "labels": [], "masks": [], "boxes": [], "class_labels": []}
    n = len(batch["image"])
    for i in range(n):
        image = np.asarray(batch["image"][i].convert("RGB"), dtype=np.float32) / 255.0
        semantic = np.asarray(batch["semantic"][i], dtype=np.int64)
        example = {k: batch[k][i] for k in ("objects", "height", "width", "image_id")}
        objects = example["objects"]
        boxes = np.asarray([o["bbox"] for o in objects], dtype=np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        out["pixel_values"].append(torch.from_numpy(image.transpose(2, 0, 1).copy()))
        out["labels"].append(torch.from_numpy(semantic))
        out["masks"].append(torch.from_numpy(decode_masks(example)))
        out["boxes"].append(torch.from_numpy(boxes))
        out["class_labels"].append(torch.tensor([o["category"] for o in objects], dtype=torch.int64))
    return out
