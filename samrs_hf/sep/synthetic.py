"""A small, learnable SAMRS-shaped dataset: coloured shapes whose colour decides the class.

Written in exactly the packaged features (``samrs_features``) as ``folder/data/<split>-*.parquet``
so ``datasets.load_dataset(folder)`` reads it like a real packaged subset. Tests, the benchmark
and demos use it; each subset maps colours to classes differently so every head must learn its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

COLOURS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (250, 190, 212), (128, 128, 0))


def _example(rng: np.random.Generator, subset: str, index: int, size: int, num_classes: int, shift: int):
    from PIL import Image
    from pycocotools import mask as mask_utils

    from ..hub.features import dataset_example

    image = rng.integers(30, 90, size=(size, size, 3), dtype=np.uint8)
    semantic = np.full((size, size), 255, dtype=np.uint8)
    objects = []
    for k in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(0, num_classes))
        w, h = (int(v) for v in rng.integers(size // 5, size // 2, size=2))
        x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
        image[y:y + h, x:x + w] = COLOURS[(cls + shift) % len(COLOURS)]
        semantic[y:y + h, x:x + w] = cls
        mask = np.zeros((size, size), dtype=np.uint8)
        mask[y:y + h, x:x + w] = 1
        rle = mask_utils.encode(np.asfortranarray(mask))
        objects.append({
            "id": k, "category": cls, "bbox": [float(x), float(y), float(w), float(h)],
            "rbox": [float(x), float(y), float(x + w), float(y), float(x + w), float(y + h), float(x), float(y + h)],
            "segmentation": {"size": [size, size], "counts": rle["counts"].decode()},
            "area": int(w * h), "score": 1.0, "truncated": False, "box_iou": 1.0, "fill": 1.0,
        })
    name = f"{subset}_{index:05d}"
    return dataset_example(image=Image.fromarray(image), semantic=Image.fromarray(semantic, mode="L"), objects=objects,
                           name=name, source_image=f"{name}.png", width=size, height=size, subset=subset)


def write_synthetic_subset(folder, subset: str, *, num_train: int = 48, num_val: int = 16, size: int = 64,
                           num_classes: int = 4, seed: int = 0) -> Path:
    """Write a learnable subset with the features of ``subset`` (its class table) into ``folder``."""
    from datasets import Dataset

    from ..hub.features import category_feature, samrs_features

    features = samrs_features(subset)
    table_size = category_feature(features).num_classes
    if not 1 <= num_classes <= min(table_size, len(COLOURS)):
        raise ValueError(f"num_classes must be in [1, {min(table_size, len(COLOURS))}] for {subset!r}")
    folder = Path(folder)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    shift = sum(map(ord, subset)) % len(COLOURS)
    rng = np.random.default_rng(seed)
    for split, n in (("train", num_train), ("validation", num_val)):
        rows = [_example(rng, subset, i, size, num_classes, shift) for i in range(n)]
        columns = {key: [r[key] for r in rows] for key in features}
        Dataset.from_dict(columns, features=features).to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    return folder
