"""The dataset features of packaged SAMRS subsets (one definition, used everywhere) and decoders.

``objects`` follows the Hub's detection convention (cppe-5, transformers' object-detection guide):
a dict of per-field lists, ``objects["bbox"][k]`` being object ``k``'s COCO ``[x, y, w, h]`` box;
``segmentation`` is COCO RLE so instance masks stay small in parquet. ``image_id`` is an int64 (DETR-style
processors need an integer), derived from the patch name, which stays in ``file_name``.
"""

from __future__ import annotations

import hashlib

import numpy as np
from datasets import ClassLabel, Features, Image, List, Value

from ..build.quality import mask_quality
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
            "label": Image(),
            "objects": {
                "id": List(Value("int64")),
                "category": List(ClassLabel(names=list(table.names))),
                "bbox": List(List(Value("float32"), length=4)),
                "rbox": List(List(Value("float32"), length=8)),
                "segmentation": List({"size": List(Value("int32"), length=2), "counts": Value("string")}),
                "area": List(Value("int64")),
                "score": List(Value("float32")),
                "truncated": List(Value("bool")),
                "box_iou": List(Value("float32")),
                "fill": List(Value("float32")),
            },
            "image_id": Value("int64"),
            "file_name": Value("string"),
            "source_image": Value("string"),
            "width": Value("int32"),
            "height": Value("int32"),
            "subset": Value("string"),
        }
    )


OBJECT_FIELDS = ("id", "category", "bbox", "rbox", "segmentation", "area", "score", "truncated", "box_iou", "fill")
"""The per-object fields: the keys of ``objects``, each a list with one entry per object (``box_iou`` and
``fill``, the mask quality of :mod:`samrs_hf.build.quality`, are absent from packages made before them)."""

QUALITY_FIELDS = ("box_iou", "fill")


def image_id_of(name: str) -> int:
    """The int64 ``image_id`` of a patch name: the first 63 bits of its SHA-256, so the same name gets
    the same id in every package and release conversion (packaging refuses a collision)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") >> 1


def objects_as_columns(objects: list[dict]) -> dict[str, list]:
    """Per-object dicts (as :func:`samrs_hf.hub.checks.make_object` makes them) -> the ``objects`` feature;
    ``box_iou``/``fill`` are computed from ``segmentation`` and ``bbox`` where a dict lacks them."""
    columns = {k: [o.get(k) if k in QUALITY_FIELDS else o[k] for o in objects] for k in OBJECT_FIELDS}
    missing = [i for i, o in enumerate(objects) if o.get("box_iou") is None or o.get("fill") is None]
    if missing:
        box_iou, fill = mask_quality([objects[i]["segmentation"] for i in missing],
                                     [xywh_to_xyxy(objects[i]["bbox"]) for i in missing])
        for i, q, f in zip(missing, box_iou.tolist(), fill.tolist()):
            columns["box_iou"][i], columns["fill"][i] = q, f
    return columns


def xywh_to_xyxy(box) -> list[float]:
    x, y, w, h = (float(v) for v in box)
    return [x, y, x + w, y + h]


def objects_as_list(objects: dict[str, list]) -> list[dict]:
    """The ``objects`` feature -> one dict per object (``{id, category, bbox, ...}``), for loops over objects."""
    fields = [k for k in OBJECT_FIELDS if k in objects]
    return [dict(zip(fields, values)) for values in zip(*(objects[k] for k in fields))]


def dataset_example(*, image, semantic, objects: list[dict], name: str, source_image: str, width: int,
                    height: int, subset: str) -> dict:
    """One row in the features: ``label`` is the semantic map again, under the column name transformers'
    ``run_semantic_segmentation.py`` reads (stored twice: the gray maps are a few % of a row)."""
    return {"image": image, "semantic": semantic, "label": semantic, "objects": objects_as_columns(objects),
            "image_id": image_id_of(name), "file_name": name, "source_image": source_image, "width": width,
            "height": height, "subset": subset}


def category_feature(features) -> ClassLabel:
    """The ClassLabel of ``objects.category`` (the class table a dataset carries)."""
    if not isinstance(features["objects"], dict):
        raise ValueError("'objects' is a list of per-object structs: a SAMRS dataset packaged before the features "
                         "changed to a dict of lists (samrs_hf #18); package or convert it again")
    return features["objects"]["category"].feature


def _rle(seg: dict) -> dict:
    counts = seg["counts"]
    return {"size": [int(s) for s in seg["size"]], "counts": counts.encode() if isinstance(counts, str) else counts}


def decode_masks(example) -> np.ndarray:
    """``[N, H, W]`` bool instance masks of one example (pycocotools RLE decode)."""
    from pycocotools import mask as mask_utils

    objects = example["objects"]
    h, w = int(example["height"]), int(example["width"])
    if not objects["segmentation"]:
        return np.zeros((0, h, w), dtype=bool)
    rles = [_rle(seg) for seg in objects["segmentation"]]
    for obj_id, r in zip(objects["id"], rles):
        if r["size"] != [h, w]:
            raise ValueError(
                f"{example.get('file_name', example.get('image_id', '?'))}: object {obj_id} mask size {r['size']} "
                f"!= image {[h, w]}"
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
        example = {k: batch[k][i] for k in ("objects", "height", "width", "image_id", "file_name") if k in batch}
        objects = example["objects"]
        boxes = np.asarray(objects["bbox"], dtype=np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        out["pixel_values"].append(torch.from_numpy(image.transpose(2, 0, 1).copy()))
        out["labels"].append(torch.from_numpy(semantic))
        out["masks"].append(torch.from_numpy(decode_masks(example)))
        out["boxes"].append(torch.from_numpy(boxes))
        out["class_labels"].append(torch.tensor(objects["category"], dtype=torch.int64))
    return out
