"""COCO instances JSON of one split of a packaged dataset or a build folder (read by :mod:`.reader`).

Image ids are the dataset's ``image_id`` (int64, from the patch name, which is ``image_name``); annotation
ids are the dataset's object ids, unique over the whole dataset (the SAMRS reference
writer restarted them at 0 per image, which breaks pycocotools' ``anns`` index). Category ids
are the class ids of the class table (0-based, the values of the ``semantic`` maps).
Annotations carry the mask quality (``box_iou``, ``fill``) as extra keys where the dataset has it.
The JSON is written in one pass through temp files, so memory does not grow with the split.
With ``images_dir`` the image files are written there too (the stored bytes, nothing re-encoded) and
``file_name`` is relative to it, so the JSON and that folder are a self-contained COCO dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..common.files import atomic_write
from .features import QUALITY_FIELDS, objects_as_list
from .reader import open_folder


def _short(v) -> float:
    """The box value as the float32 the dataset stores, in its shortest form (151.3, not 151.3000030517578)."""
    return float(str(np.float32(v)))


def export_coco(src, split: str, out, *, val_fraction: float = 0.05, seed: int = 0, images_dir=None) -> dict:
    """Write ``out`` (COCO instances JSON); returns counts. ``src``: packaged folder or build folder.
    ``images_dir``: also write the images there (``file_name`` = the file's name in it).

    For a build folder the split is assigned exactly as ``samrs package`` does (same
    ``val_fraction``/``seed``), and the object ids are the ones packaging gives.
    """
    from tqdm.auto import tqdm

    src, out = Path(src), Path(out)
    folder = open_folder(src, as_packaged=(val_fraction, seed))
    names, rows = folder.class_names, folder.rows(split, images="bytes" if images_dir else False)
    written = _ImageWriter(Path(images_dir)) if images_dir else None

    counts = {"images": 0, "annotations": 0}
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".coco-") as tmp:
        img_f = open(Path(tmp) / "images", "w", encoding="utf-8")
        ann_f = open(Path(tmp) / "annotations", "w", encoding="utf-8")
        with img_f, ann_f:
            for row in tqdm(rows, desc=f"coco {split}", unit="img"):
                image_id = int(row["image_id"])
                file_name = written.write(row) if written else row["image_file"]
                image = {"id": image_id, "file_name": file_name, "width": int(row["width"]),
                         "height": int(row["height"]), "image_name": row["file_name"],
                         "source_image": row["source_image"]}
                img_f.write(("," if counts["images"] else "") + json.dumps(image))
                counts["images"] += 1
                for o in objects_as_list(row["objects"]):
                    ann = {"id": int(o["id"]), "image_id": image_id, "category_id": int(o["category"]),
                           "segmentation": {"size": list(o["segmentation"]["size"]),
                                            "counts": o["segmentation"]["counts"]},
                           "area": int(o["area"]), "bbox": [_short(v) for v in o["bbox"]], "iscrowd": 0}
                    ann.update({k: _short(o[k]) for k in QUALITY_FIELDS if o.get(k) is not None})
                    ann_f.write(("," if counts["annotations"] else "") + json.dumps(ann))
                    counts["annotations"] += 1
        categories = json.dumps([{"id": i, "name": n, "supercategory": "object"} for i, n in enumerate(names)])
        partial = Path(tmp) / "out.json"
        with open(partial, "w", encoding="utf-8") as f:
            info = {"description": f"SAMRS {split} split", "source": str(src.name)}
            if written:  # where file_name is relative to, from the JSON's folder
                info["images_dir"] = Path(os.path.relpath(written.root, out.parent)).as_posix()
            f.write('{"info":' + json.dumps(info))
            f.write(',"images":[')
            with open(Path(tmp) / "images", encoding="utf-8") as part:
                shutil.copyfileobj(part, f)
            f.write('],"annotations":[')
            with open(Path(tmp) / "annotations", encoding="utf-8") as part:
                shutil.copyfileobj(part, f)
            f.write('],"categories":' + categories + "}\n")
        partial.replace(out)
    counts["skipped"] = len(folder.report.skips)
    return counts


class _ImageWriter:
    """Writes each row's stored image bytes to ``root/<file name>``; two images of one name are an error."""

    def __init__(self, root: Path):
        self.root, self.names = root, set()
        root.mkdir(parents=True, exist_ok=True)

    def write(self, row) -> str:
        raw = row["image"]
        name = Path(str(raw.get("path") or row["image_file"])).name  # never a path out of the folder
        if not name or name in self.names:
            raise ValueError(f"{row['image_id']}: image file name {name!r} is empty or used by another image")
        if not raw.get("bytes"):
            raise ValueError(f"{row['image_id']}: the image's bytes are not stored in the dataset")
        self.names.add(name)
        atomic_write(self.root / name, raw["bytes"])
        return name
