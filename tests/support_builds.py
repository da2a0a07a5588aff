"""Small build folders and release trees the tests write (shared by several test files; not a test file)."""

import pickle
import shutil
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from samrs_hf.build import layout, release_pkl
from samrs_hf.sources.classes import get_class_table

W, H = 40, 24  # non-square: catches h/w swaps


def make_item(build: Path, name: str, source_image: str, split, objects, table, *, size=(W, H), seed=0):
    """Write one image of a build: objects = [(class_name, (x0, y0, x1, y1)), ...] (mask = the box)."""
    w, h = size
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    gray = np.full((h, w), 255, np.uint8)
    instances = []
    for k, (cat, (x0, y0, x1, y1)) in enumerate(objects):
        m = np.zeros((h, w), np.uint8)
        m[y0:y1, x0:x1] = 1
        gray[m.astype(bool)] = table.id_of(cat)
        rle = mask_utils.encode(np.asfortranarray(m))
        instances.append({
            "category": cat, "label": table.id_of(cat), "bbox": [float(x0), float(y0), float(x1), float(y1)],
            "rbox": [x0, y0, x1, y0, x1, y1, x0, y1] if k % 2 else None,
            "segmentation": {"size": [h, w], "counts": rle["counts"].decode()},
            "area": int(m.sum()), "score": 0.5 + 0.1 * k, "truncated": bool(k % 2),
        })
    layout.atomic_write(build / "images" / f"{name}.png", layout.png_bytes(image))
    layout.atomic_write(build / "gray" / f"{name}.png", layout.png_bytes(gray))
    color = np.array([table.palette[v] if v != 255 else (255, 255, 255) for v in gray.ravel()], np.uint8)
    layout.atomic_write(build / "color" / f"{name}.png", layout.png_bytes(color.reshape(h, w, 3)))
    record = {"image": f"{name}.png", "source_image": source_image, "offset": [0, 0], "width": w, "height": h,
              "split": split, "instances": instances}
    layout.atomic_write(build / "ins" / f"{name}.json", layout.json_bytes(record))


def make_build(build: Path, subset: str, items, *, random=True):
    """items = [(name, source_image, split, objects)]"""
    table = get_class_table(subset)
    for i, (name, src, split, objects) in enumerate(items):
        make_item(build, name, src, split, objects, table, seed=i)
    report = {"subset": subset, "classes": list(table.names), "model": {"spec": "tiny-random", "random": random},
              "prompt": "H-Box", "source": "synthetic", "format": "dior" if subset == "sior" else "dota"}
    layout.atomic_write(build / "build.json", layout.json_bytes(report))
    return build


SOTA_ITEMS = [
    (f"P{s:04d}__1024__{x}___0", f"P{s:04d}", "train",
     [("plane", (1, 2, 10, 9)), ("small-vehicle", (12, 3, 20, 20)), ("ship", (25, 5, 38, 22))][: 1 + (s + x) % 3])
    for s in range(6) for x in (0, 824)
]
SIOR_ITEMS = [
    ("00001", "00001", "trainval", [("airplane", (0, 0, 8, 8)), ("Expressway-toll-station", (10, 10, 30, 20))]),
    ("00002", "00002", "trainval", [("vehicle", (3, 3, 6, 9))]),
    ("00003", "00003", "trainval", [("ship", (2, 2, 12, 12)), ("ship", (5, 5, 15, 15))]),  # overlap: last wins
    ("11726", "11726", "test", [("windmill", (20, 2, 30, 22))]),
    ("11727", "11727", "test", []),
]


def load_hub(hub):
    import datasets

    return datasets.load_dataset(str(hub))


def samrs_pickle(instances, table):
    """An instance list exactly as SAMRS's own script pickled it (numpy boxes, numpy scalars)."""
    out = []
    for inst in instances:
        m = {"size": inst["segmentation"]["size"], "counts": inst["segmentation"]["counts"]}
        out.append({"mask": m, "bbox": np.asarray(inst["bbox"], np.float32), "category": inst["category"],
                    "label": np.int64(table.id_of(inst["category"])), "size": np.sum(np.ones(inst["area"], bool))})
    return pickle.dumps(out)


def as_release(build, dst, *, keep_json=False, official=True):
    """The release layout: JPEGImages-like image folder + gray/ color/ ins/*.pkl."""
    import json

    table = get_class_table("sior")
    shutil.copytree(build / "images", dst / "images")
    shutil.copytree(build / "gray", dst / "gray")
    shutil.copytree(build / "color", dst / "color")
    (dst / "ins").mkdir()
    for p in sorted((build / "ins").glob("*.json")):
        rec = json.loads(p.read_text())
        data = samrs_pickle(rec["instances"], table) if official else release_pkl.pkl_bytes(rec["instances"], "H-Box")
        (dst / "ins" / f"{p.stem}.pkl").write_bytes(data)
        if keep_json:
            shutil.copy(p, dst / "ins" / p.name)
    return dst
