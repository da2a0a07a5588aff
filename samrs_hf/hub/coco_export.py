"""COCO instances JSON of one split of a packaged dataset or a build folder.

Annotation ids are the dataset's object ids, unique over the whole dataset (the SAMRS reference
writer restarted them at 0 per image, which breaks pycocotools' ``anns`` index). Category ids
are the class ids of the class table (0-based, the values of the ``semantic`` maps).
The JSON is written in one pass through temp files, so memory does not grow with the split.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from ..build import layout
from ..sources.records import Report, SourceError


def _short(v) -> float:
    """The box value as the float32 the dataset stores, in its shortest form (151.3, not 151.3000030517578)."""
    return float(str(np.float32(v)))


def _hub_rows(hub_dir: Path, split: str) -> tuple[tuple[str, ...], Iterator[dict]]:
    import pyarrow.dataset as pads
    from datasets import Features

    files = sorted((hub_dir / "data").glob(f"{split}-*.parquet"))
    if not files:
        have = sorted({p.name.split("-")[0] for p in (hub_dir / "data").glob("*.parquet")})
        raise SourceError(f"{hub_dir}: no split {split!r} (has: {', '.join(have) or 'none'})")
    dataset = pads.dataset([str(f) for f in files], format="parquet")
    features = Features.from_arrow_schema(dataset.schema)
    if "objects" not in features:
        raise SourceError(f"{hub_dir}: a parquet folder, but not a SAMRS dataset (no 'objects' feature)")
    names = tuple(features["objects"].feature["category"].names)
    columns = {"file_name": pads.field("image", "path"), "objects": pads.field("objects"),
               "image_id": pads.field("image_id"), "source_image": pads.field("source_image"),
               "width": pads.field("width"), "height": pads.field("height")}

    def rows():
        for f in files:  # file order = shard order = packaged row order
            for batch in pads.dataset(str(f), format="parquet").to_batches(columns=columns, batch_size=256):
                yield from batch.to_pylist()

    return names, rows()


def _build_rows(build_dir: Path, split: str, val_fraction: float, seed: int, report: Report):
    from .packaging import check_builds, rows_from_builds

    table, _ = check_builds([build_dir])

    def rows():
        seen = set()
        for row in rows_from_builds([build_dir], report, val_fraction=val_fraction, seed=seed, progress=False):
            seen.add(row.split)
            if row.split != split:
                continue
            ex = row.example
            yield {"file_name": f"{layout.IMAGES}/{ex['image']['path']}", "objects": ex["objects"],
                   "image_id": ex["image_id"], "source_image": ex["source_image"],
                   "width": ex["width"], "height": ex["height"]}
        if split not in seen:  # as for a packaged folder; raised before the output file is written
            raise SourceError(f"{build_dir}: no split {split!r} (has: {', '.join(sorted(seen)) or 'none'})")

    return table.names, rows()


def export_coco(src, split: str, out, *, val_fraction: float = 0.05, seed: int = 0) -> dict:
    """Write ``out`` (COCO instances JSON); returns counts. ``src``: packaged folder or build folder.

    For a build folder the split is assigned exactly as ``samrs package`` does (same
    ``val_fraction``/``seed``), and the object ids are the ones packaging gives.
    """
    from tqdm.auto import tqdm

    src, out = Path(src), Path(out)
    report = Report()
    if layout.is_build_dir(src):
        names, rows = _build_rows(src, split, val_fraction, seed, report)
    elif (src / "data").is_dir():
        names, rows = _hub_rows(src, split)
    else:
        raise SourceError(f"{src}: neither a packaged dataset (data/*.parquet) nor a samrs build (build.json)")

    counts = {"images": 0, "annotations": 0}
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".coco-") as tmp:
        img_f = open(Path(tmp) / "images", "w", encoding="utf-8")
        ann_f = open(Path(tmp) / "annotations", "w", encoding="utf-8")
        with img_f, ann_f:
            for image_index, row in enumerate(tqdm(rows, desc=f"coco {split}", unit="img"), start=1):
                image = {"id": image_index, "file_name": row["file_name"], "width": int(row["width"]),
                         "height": int(row["height"]), "image_name": row["image_id"],
                         "source_image": row["source_image"]}
                img_f.write(("," if counts["images"] else "") + json.dumps(image))
                counts["images"] += 1
                for o in row["objects"]:
                    ann = {"id": int(o["id"]), "image_id": image_index, "category_id": int(o["category"]),
                           "segmentation": {"size": list(o["segmentation"]["size"]),
                                            "counts": o["segmentation"]["counts"]},
                           "area": int(o["area"]), "bbox": [_short(v) for v in o["bbox"]], "iscrowd": 0}
                    ann_f.write(("," if counts["annotations"] else "") + json.dumps(ann))
                    counts["annotations"] += 1
        categories = json.dumps([{"id": i, "name": n, "supercategory": "object"} for i, n in enumerate(names)])
        partial = Path(tmp) / "out.json"
        with open(partial, "w", encoding="utf-8") as f:
            f.write('{"info":' + json.dumps({"description": f"SAMRS {split} split", "source": str(src.name)}))
            f.write(',"images":[')
            with open(Path(tmp) / "images", encoding="utf-8") as part:
                shutil.copyfileobj(part, f)
            f.write('],"annotations":[')
            with open(Path(tmp) / "annotations", encoding="utf-8") as part:
                shutil.copyfileobj(part, f)
            f.write('],"categories":' + categories + "}\n")
        partial.replace(out)
    counts["skipped"] = len(report.skips)
    return counts
