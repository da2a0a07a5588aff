"""Mask quality without ground truth (#18 item 10): ``box_iou`` and ``fill`` per object, written by the
build, computed for older builds, carried as features, summarised per class in the card and ``samrs stats``,
and thresholds that drop objects at packaging (maps repainted) and at loading (maps kept)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from samrs_hf import cli
from samrs_hf.build import layout
from samrs_hf.build.quality import mask_quality, quality_of
from samrs_hf.build.records import InstanceRecord
from samrs_hf.hub.checks import make_object
from samrs_hf.hub.packaging import package
from samrs_hf.sources.classes import get_class_table
from samrs_hf.sources.samples import write_dior_sample

TABLE = get_class_table("sota")
H, W = 24, 32


def rle_of(mask: np.ndarray) -> dict:
    return {"size": [H, W], "counts": mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()}


def rect(x0, y0, x1, y1) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


# (category, prompt box xyxy, mask, score, expected box_iou, expected fill), in painting order.
EXACT = ("ship", [2, 3, 6, 8], rect(2, 3, 6, 8), 0.9, 1.0, 1.0)
LEAKING = ("plane", [10, 2, 14, 6], rect(4, 2, 14, 6), 0.9, 0.4, 2.5)  # box 4x4, mask 10x4 over it and the ship
LOW_SCORE = ("harbor", [20, 10, 28, 14], rect(20, 10, 28, 14), 0.3, 1.0, 1.0)
HALF = ("small-vehicle", [16, 16, 24, 20], rect(16, 16, 20, 20), 0.2, 0.5, 0.5)  # fills the left half of its box
OBJECTS = (EXACT, LEAKING, LOW_SCORE, HALF)


def test_hand_computed_box_iou_and_fill():
    box_iou, fill = mask_quality([rle_of(m) for _, _, m, *_ in OBJECTS], [b for _, b, *_ in OBJECTS])
    assert box_iou.tolist() == pytest.approx([o[4] for o in OBJECTS])
    assert fill.tolist() == pytest.approx([o[5] for o in OBJECTS])
    # An empty mask and a box without area score 0 / 0 (no division by zero, no NaN).
    assert quality_of(rle_of(np.zeros((H, W), bool)), [2, 3, 6, 8]) == (0.0, 0.0)
    assert quality_of(rle_of(rect(2, 3, 6, 8)), [2, 3, 2, 8]) == (0.0, 0.0)
    # bytes counts (pycocotools' own form) read the same as str counts.
    enc = mask_utils.encode(np.asfortranarray(rect(2, 3, 6, 8).astype(np.uint8)))
    assert quality_of({"size": [H, W], "counts": enc["counts"]}, [2, 3, 6, 7]) == pytest.approx((0.8, 1.25))


def test_instance_record_reads_old_and_new_files():
    old = {"category": "ship", "label": 5, "bbox": [2, 3, 6, 8], "rbox": None, "segmentation": rle_of(EXACT[2]),
           "area": 20, "score": 0.9, "truncated": False, "difficult": False}
    inst = InstanceRecord.from_json(old)
    assert inst.box_iou is None and inst.fill is None
    assert list(inst.to_json())[-2:] == ["box_iou", "fill"]
    new = InstanceRecord.from_json(dict(old, box_iou=0.1234567891, fill=1))
    assert (new.box_iou, new.fill) == (0.1234567891, 1.0)
    assert new.to_json()["box_iou"] == 0.123457  # 6 decimals in the file
    with pytest.raises(ValueError):
        InstanceRecord.from_json(dict(old, box_iou="high"))
    # The release conversion's objects get them computed from the release's mask and box.
    obj = make_object(7, 4, LEAKING[1], None, rle_of(LEAKING[2]), 40, None, None)
    assert (obj["box_iou"], obj["fill"]) == pytest.approx((0.4, 2.5))


def test_build_writes_box_iou_and_fill(tmp_path):
    dior = write_dior_sample(tmp_path / "dior")
    out = tmp_path / "build"
    assert cli.main(["build", "sior", "--source", str(dior), "--out", str(out), "--model", "tiny-random",
                     "--device", "cpu", "--no-progress", "--limit", "1"]) == 0
    instances = [i for p in sorted((out / "ins").glob("*.json")) for i in json.loads(p.read_text())["instances"]]
    assert instances
    box_iou, fill = mask_quality([i["segmentation"] for i in instances], [i["bbox"] for i in instances])
    assert [i["box_iou"] for i in instances] == pytest.approx(box_iou.tolist(), abs=1e-6)
    assert [i["fill"] for i in instances] == pytest.approx(fill.tolist(), abs=1e-6)
    assert all(0.0 <= i["box_iou"] <= 1.0 for i in instances)


def write_old_build(build: Path, names=("P0001__1024__0___0", "P0002__1024__0___0")) -> Path:
    """A build as samrs wrote it before mask quality: instances without box_iou/fill; gray painted in order."""
    for name in names:
        gray = np.full((H, W), 255, np.uint8)
        instances = []
        for cat, box, mask, score, *_ in OBJECTS:
            gray[mask] = TABLE.id_of(cat)
            instances.append({"category": cat, "label": TABLE.id_of(cat), "bbox": box, "rbox": None,
                              "segmentation": rle_of(mask), "area": int(mask.sum()), "score": score,
                              "truncated": False, "difficult": False})
        layout.atomic_write(build / "images" / f"{name}.png", layout.png_bytes(np.zeros((H, W, 3), np.uint8)))
        layout.atomic_write(build / "gray" / f"{name}.png", layout.png_bytes(gray))
        layout.atomic_write(build / "color" / f"{name}.png", layout.png_bytes(np.zeros((H, W, 3), np.uint8)))
        layout.atomic_write(build / "ins" / f"{name}.json", layout.json_bytes(
            {"image": name, "source_image": name.split("__")[0], "offset": [0, 0], "width": W, "height": H,
             "split": "train", "instances": instances}))
    layout.atomic_write(build / "build.json", layout.json_bytes(
        {"subset": "sota", "classes": list(TABLE.names), "model": {"spec": "tiny-random", "random": True},
         "prompt": "H-Box", "source": "synthetic", "format": "dota"}))
    return build


def rows(hub: Path) -> list[dict]:
    import datasets

    return list(datasets.load_dataset(str(hub), split="train", cache_dir=str(hub.parent / "cache")))


@pytest.fixture(scope="module")
def old_build(tmp_path_factory):
    return write_old_build(tmp_path_factory.mktemp("quality") / "build")


@pytest.fixture(scope="module")
def hub(old_build):
    to = old_build.parent / "hub"
    package([old_build], to, val_fraction=0.0, progress=False, stats=None)
    return to


def test_old_build_packages_with_quality_computed(hub):
    import datasets

    features = datasets.load_dataset(str(hub), split="train", cache_dir=str(hub.parent / "cache")).features
    assert features["objects"]["box_iou"].feature.dtype == "float32"
    assert features["objects"]["fill"].feature.dtype == "float32"
    for row in rows(hub):
        assert row["objects"]["box_iou"] == pytest.approx([o[4] for o in OBJECTS])
        assert row["objects"]["fill"] == pytest.approx([o[5] for o in OBJECTS])
    card = (hub / "README.md").read_text()
    assert "## Mask quality" in card and "No object was dropped" in card
    assert "| 4 | plane | 2 | 0.40 / 0.40 / 0.40 / 0.40 / 0.40 | 2.50 / 2.50 / 2.50 / 2.50 / 2.50 | - |" in card
    assert "| `objects.box_iou` |" in card


def test_thresholds_drop_exactly_the_objects_below_and_repaint(old_build, tmp_path, capsys):
    to = tmp_path / "hub"
    assert cli.main(["package", str(old_build), "--to", str(to), "--val-fraction", "0", "--no-stats",
                     "--min-score", "0.5", "--min-box-iou", "0.75"]) == 0
    assert "dropped 6 objects below score >= 0.5, box_iou >= 0.75 (plane: 2, small-vehicle: 2, harbor: 2)" \
        in capsys.readouterr().out
    expected_gray = np.full((H, W), 255, np.uint8)
    expected_gray[EXACT[2]] = TABLE.id_of("ship")  # the leaking plane covered part of the ship: the ship is back
    for row in rows(to):
        assert [TABLE.names[c] for c in row["objects"]["category"]] == ["ship"]
        assert row["objects"]["box_iou"] == [1.0] and len(row["objects"]["segmentation"]) == 1
        assert np.array_equal(np.asarray(row["semantic"]), expected_gray)
        assert np.array_equal(np.asarray(row["label"]), expected_gray)
    card = (to / "README.md").read_text()
    assert "unless score >= 0.5, box_iou >= 0.75: 6 in all" in card
    assert "| 4 | plane | 0 | - | - | 2 (0 / 2) |" in card
    assert "| 9 | small-vehicle | 0 | - | - | 2 (2 / 2) |" in card
    assert "| 14 | harbor | 0 | - | - | 2 (2 / 0) |" in card
    assert "| 5 | ship | 2 | 1.00 / 1.00 / 1.00 / 1.00 / 1.00 |" in card
    # The Python keyword arguments do the same; the result counts per class.
    result = package([old_build], tmp_path / "hub2", val_fraction=0.0, progress=False, stats=None, min_box_iou=0.45)
    assert result.quality_drops.to_dict(TABLE.names) == {
        "total": 2, "per_class": {"plane": {"dropped": 2, "low_score": 0, "low_box_iou": 2}}}
    assert result.to_dict()["quality_dropped"]["total"] == 2
    with pytest.raises(ValueError, match="--min-score must be a finite number"):
        package([old_build], tmp_path / "hub3", progress=False, stats=None, min_score=float("nan"))


def test_loader_drops_objects_and_keeps_the_semantic_map(hub):
    from samrs_hf import load

    full = load(hub, split="train")
    ds = load(hub, split="train", min_score=0.5, min_box_iou=0.75)
    assert ds.class_table.subset == "sota" and ds.num_rows == full.num_rows
    assert ds.features == full.features
    for a, b in zip(full, ds):
        assert [TABLE.names[c] for c in b["objects"]["category"]] == ["ship"]
        assert b["objects"]["id"] == a["objects"]["id"][:1]  # ids unchanged
        assert np.array_equal(np.asarray(a["semantic"]), np.asarray(b["semantic"]))  # as stored
    streamed = load(hub, split="train", streaming=True, min_box_iou=0.45)
    assert [len(r["objects"]["id"]) for r in streamed] == [3, 3]
    for kwargs in ({}, {"streaming": True}):  # every split of a DatasetDict / IterableDatasetDict
        dd = load(hub, min_box_iou=0.45, **kwargs)
        assert dd["train"].class_table.subset == "sota" and dd["train"].features == full.features
        assert [len(r["objects"]["id"]) for r in dd["train"]] == [3, 3]


def test_stats_figure_and_csv_per_class(hub, tmp_path):
    from samrs_hf.analysis.stats import write_stats

    stats = write_stats(hub, tmp_path / "stats")
    png = tmp_path / "stats" / "mask_quality.png"
    assert Image.open(png).size[0] > 100
    with open(tmp_path / "stats" / "mask_quality.csv", newline="") as f:
        table = {r["name"]: r for r in csv.DictReader(f)}
    assert table["plane"]["objects"] == "2"
    assert float(table["plane"]["box_iou_p50"]) == pytest.approx(0.4)
    assert float(table["small-vehicle"]["fill_p95"]) == pytest.approx(0.5)
    assert table["helipad"]["box_iou_p50"] == ""  # a class without objects
    assert stats["files"]["mask_quality_csv"] == "mask_quality.csv"


def test_stats_of_a_package_made_before_mask_quality(hub, tmp_path):
    """Older packages lack the two features: the statistics compute them from masks and boxes."""
    import datasets

    from samrs_hf.analysis.stats import compute_stats

    ds = datasets.load_dataset(str(hub), split="train", cache_dir=str(tmp_path / "cache"))
    features = ds.features.copy()
    for key in ("box_iou", "fill"):
        del features["objects"][key]
    old = ds.map(lambda o: {"objects": {k: v for k, v in o.items() if k not in ("box_iou", "fill")}},
                 input_columns=["objects"], features=features)
    (tmp_path / "old" / "data").mkdir(parents=True)
    old.to_parquet(str(tmp_path / "old" / "data" / "train-00000-of-00001.parquet"))
    summary = {r["name"]: r for r in compute_stats(tmp_path / "old")["mask_quality"]}
    assert summary["plane"]["box_iou"]["p50"] == pytest.approx(0.4)
    assert summary["plane"]["fill"]["p05"] == pytest.approx(2.5)


def test_coco_export_carries_quality_keys(hub, tmp_path):
    from samrs_hf.hub.coco_export import export_coco

    export_coco(hub, "train", tmp_path / "coco.json")
    anns = json.loads((tmp_path / "coco.json").read_text())["annotations"]
    assert [a["box_iou"] for a in anns[:4]] == pytest.approx([o[4] for o in OBJECTS])
    assert [a["fill"] for a in anns[:4]] == pytest.approx([o[5] for o in OBJECTS])


def test_convert_release_computes_quality_and_applies_thresholds(old_build, tmp_path):
    """The official release has no box_iou/fill (nor scores): they come from its masks and boxes."""
    import pickle
    import shutil

    from samrs_hf.hub.release import convert_release

    rel = tmp_path / "release"
    for folder in ("images", "gray", "color"):
        shutil.copytree(old_build / folder, rel / folder)
    (rel / "ins").mkdir()
    for p in sorted((old_build / "ins").glob("*.json")):
        entries = [{"mask": i["segmentation"], "bbox": np.asarray(i["bbox"], np.float32), "category": i["category"],
                    "label": np.int64(i["label"]), "size": i["area"]} for i in json.loads(p.read_text())["instances"]]
        (rel / "ins" / f"{p.stem}.pkl").write_bytes(pickle.dumps(entries))
    result = convert_release(rel, "sota", tmp_path / "hub", val_fraction=0.0, progress=False, stats=None,
                             min_score=0.99, min_box_iou=0.45)
    assert result.quality_drops.to_dict(TABLE.names)["per_class"] == {
        "plane": {"dropped": 2, "low_score": 0, "low_box_iou": 2}}  # no score: min_score keeps them
    for row in rows(tmp_path / "hub"):
        assert [TABLE.names[c] for c in row["objects"]["category"]] == ["ship", "harbor", "small-vehicle"]
        assert row["objects"]["box_iou"] == pytest.approx([1.0, 1.0, 0.5])
        assert row["objects"]["fill"] == pytest.approx([1.0, 1.0, 0.5])
