"""Build and parquet folders of hand-painted scenes, with counts known by construction (shared by the
statistics and overlay tests; not a test file)."""

import json

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from samrs_hf.sources.classes import get_class_table

NAMES = get_class_table("sior").names

# (image name, split, width, height, [(class id, y0, y1, x0, x1)]); a rect with y0 == y1 is an empty mask
SCENES = [
    ("img_a", "train", 40, 30, [(0, 0, 5, 0, 10), (13, 10, 20, 10, 30), (13, 0, 0, 0, 0)]),
    ("img_b", "test", 50, 40, [(0, 0, 20, 0, 30), (18, 15, 25, 25, 35)]),
]


def _rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode()}


def make_scene_build(root, scenes=SCENES, subset="sior"):
    """A build folder in the layout of samrs_hf.build.layout, made by hand (gray painted in order, last wins)."""
    for d in ("images", "gray", "color", "ins"):
        (root / d).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, split, w, h, rects in scenes:
        gray = np.full((h, w), 255, np.uint8)
        instances = []
        for label, y0, y1, x0, x1 in rects:
            m = np.zeros((h, w), bool)
            m[y0:y1, x0:x1] = True
            gray[m] = label
            instances.append({
                "category": NAMES[label], "label": label, "bbox": [x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)],
                "rbox": None, "segmentation": _rle(m), "area": int(m.sum()), "score": 0.9, "truncated": False,
            })
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"{name}.png")
        Image.fromarray(gray).save(root / "gray" / f"{name}.png")
        Image.fromarray(gray).convert("RGB").save(root / "color" / f"{name}.png")
        (root / "ins" / f"{name}.json").write_text(json.dumps({
            "image": name, "source_image": name, "offset": [0, 0], "width": w, "height": h, "split": split,
            "instances": instances}))
    (root / "build.json").write_text(json.dumps({"subset": subset, "classes": list(NAMES), "model": {"random": True}}))
    return root


def make_scene_hub(root, scenes=SCENES):
    """The same scenes as a parquet folder with the package's features (no dependency on `samrs package`)."""
    from datasets import Dataset

    from samrs_hf.hub.features import image_id_of, objects_as_columns, samrs_features

    build = make_scene_build(root / "build", scenes)
    rows = {k: [] for k in ("image", "semantic", "label", "objects", "image_id", "file_name", "source_image", "width",
                            "height", "subset")}
    oid = 0
    for name, _split, w, h, _ in scenes:
        rec = json.loads((build / "ins" / f"{name}.json").read_text())
        objs = []
        for inst in rec["instances"]:
            x0, y0, x1, y1 = inst["bbox"]
            objs.append({"id": oid, "category": inst["label"], "bbox": [x0, y0, x1 - x0, y1 - y0], "rbox": None,
                         "segmentation": inst["segmentation"], "area": inst["area"], "score": 0.9, "truncated": False})
            oid += 1
        rows["image"].append(str(build / "images" / f"{name}.png"))
        rows["semantic"].append(str(build / "gray" / f"{name}.png"))
        rows["label"].append(str(build / "gray" / f"{name}.png"))
        rows["objects"].append(objects_as_columns(objs))
        rows["image_id"].append(image_id_of(name))
        rows["file_name"].append(name)
        rows["source_image"].append(name)
        rows["width"].append(w)
        rows["height"].append(h)
        rows["subset"].append("sior")
    hub = root / "hub"
    (hub / "data").mkdir(parents=True)
    Dataset.from_dict(rows, features=samrs_features("sior")).to_parquet(str(hub / "data" / "train-00000-of-00001.parquet"))
    return hub
