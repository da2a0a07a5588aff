"""`samrs stats`: numbers equal counts made by hand from small build and parquet folders."""

import csv
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from samrs_hf.cli import main
from samrs_hf.sources.records import SourceError
from support_scenes import NAMES, make_scene_build, make_scene_hub
from samrs_hf.analysis.stats import SIZE_LABELS, NotADatasetFolder, compute_stats, open_folder, size_bin, write_stats

def independent_counts(build):
    """Pixel and instance counts straight from gray/ and ins/ files."""
    pixels, instances, areas = {}, {}, []
    for g in sorted((build / "gray").glob("*.png")):
        vals, cnt = np.unique(np.asarray(Image.open(g)), return_counts=True)
        for v, c in zip(vals.tolist(), cnt.tolist()):
            pixels[v] = pixels.get(v, 0) + c
    for j in sorted((build / "ins").glob("*.json")):
        for inst in json.loads(j.read_text())["instances"]:
            area = int(mask_utils.decode({"size": inst["segmentation"]["size"],
                                          "counts": inst["segmentation"]["counts"].encode()}).sum())
            if area:
                instances[inst["label"]] = instances.get(inst["label"], 0) + 1
                areas.append(area)
    return pixels, instances, areas


def independent_mask_pixels(build):
    """Per-class sum of instance mask areas, straight from the ins/ files."""
    out = {}
    for j in sorted((build / "ins").glob("*.json")):
        for inst in json.loads(j.read_text())["instances"]:
            seg = inst["segmentation"]
            area = int(mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}).sum())
            out[inst["label"]] = out.get(inst["label"], 0) + area
    return out


def test_size_bins():
    assert [size_bin(a) for a in (1, 99, 100, 499, 500, 999, 1000, 5000, 10_000, 50_000, 99_999, 100_000, 10**7)] \
        == [0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 6, 7, 7]
    assert len(SIZE_LABELS) == 8


def test_stats_of_build_equal_independent_counts(tmp_path):
    build = make_scene_build(tmp_path / "b")
    stats = compute_stats(build)
    pixels, instances, areas = independent_counts(build)
    mask_pixels = independent_mask_pixels(build)
    for row in stats["per_class"]:
        assert row["pixels"] == mask_pixels.get(row["id"], 0), row
        assert row["instances"] == instances.get(row["id"], 0), row
    # Fig. 5 counts the pixels of the valid instance masks (Sec. 3.2, SAMRS statistic.py), not of the
    # semantic map: airplane = 50 + 600 although the vehicle is painted over 25 of them; ship 200, vehicle 100
    by_name = {r["name"]: r for r in stats["per_class"]}
    assert by_name["airplane"]["pixels"] == 650 and by_name["airplane"]["instances"] == 2
    assert by_name["ship"]["pixels"] == 200 and by_name["ship"]["instances"] == 1
    assert by_name["vehicle"]["pixels"] == 100 and by_name["windmill"]["instances"] == 0
    assert stats["empty_masks"] == 1
    expected_bins = [0] * len(SIZE_LABELS)
    for a in areas:
        expected_bins[size_bin(a)] += 1
    assert stats["mask_sizes"]["counts"] == expected_bins == [1, 2, 1, 0, 0, 0, 0, 0]
    t2 = stats["table2"]
    assert t2["images"] == 2 and t2["categories"] == 20 and t2["instances"] == 4
    assert t2["labelled_pixels"] == 925 and t2["total_pixels"] == 40 * 30 + 50 * 40
    assert t2["unlabelled_pixels"] == pixels[255]
    assert t2["image_size"] == "40 × 30 ~ 50 × 40"
    assert stats["images_per_split"] == {"train": 1, "test": 1}
    assert compute_stats(build, split="test")["table2"]["images"] == 1


def test_write_stats_files_and_cli(tmp_path):
    build = make_scene_build(tmp_path / "b")
    out = tmp_path / "stats"
    assert main(["stats", str(build), "--out", str(out)]) == 0
    for name in ("class_pixels_instances.png", "mask_sizes.png", "per_class.csv", "mask_sizes.csv",
                 "table2.csv", "table2.md", "stats.json"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(open(out / "per_class.csv")))
    assert len(rows) == 20 and rows[0]["name"] == "airplane" and rows[0]["pixels"] == "650"
    assert json.loads((out / "stats.json").read_text())["table2"]["instances"] == 4
    # deterministic figures: same bytes on a second run
    first = (out / "class_pixels_instances.png").read_bytes()
    write_stats(build, out)
    assert (out / "class_pixels_instances.png").read_bytes() == first
    assert Image.open(out / "mask_sizes.png").size == (500, 350)


def test_stats_of_packaged_folder_equal_build(tmp_path):
    hub = make_scene_hub(tmp_path)
    folder = open_folder(hub)
    assert folder.kind == "hub" and folder.splits == ("train",) and folder.class_names == NAMES
    a, b = compute_stats(hub), compute_stats(tmp_path / "build")
    assert a["per_class"] == b["per_class"]
    assert a["mask_sizes"] == b["mask_sizes"] and a["empty_masks"] == b["empty_masks"] == 1
    assert a["table2"] == b["table2"]


def test_not_a_dataset_folder(tmp_path, capsys):
    (tmp_path / "random").mkdir()
    (tmp_path / "random" / "notes.txt").write_text("hi")
    with pytest.raises(NotADatasetFolder, match="neither a samrs build"):
        compute_stats(tmp_path / "random")
    assert main(["stats", str(tmp_path / "random"), "--out", str(tmp_path / "o")]) == 2
    assert "neither a samrs build" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_semantic_size_mismatch_names_item(tmp_path):
    build = make_scene_build(tmp_path / "b")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(build / "gray" / "img_a.png")
    with pytest.raises(Exception, match="img_a: semantic map is 5x5, image is 40x30"):
        compute_stats(build)


@pytest.mark.parametrize("key, value", [("area", "big"), ("label", 99), ("category", "spaceship")])
def test_garbled_build_instance_names_file_and_instance(tmp_path, capsys, key, value):
    build = make_scene_build(tmp_path / "b")
    path = build / "ins" / "img_b.json"
    rec = json.loads(path.read_text())
    rec["instances"][1][key] = value
    if key == "category":
        rec["instances"][1]["label"] = None
    path.write_text(json.dumps(rec))
    with pytest.raises(SourceError, match=r"img_b\.json:instances\[1\]"):
        compute_stats(build)
    assert main(["stats", str(build), "--out", str(tmp_path / "o")]) == 2
    assert "img_b.json:instances[1]" in capsys.readouterr().err


def test_parquet_folder_that_is_not_samrs_says_so(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "other" / "data").mkdir(parents=True)
    pq.write_table(pa.table({"text": ["a", "b"]}), tmp_path / "other" / "data" / "train-00000-of-00001.parquet")
    for argv in (["stats", str(tmp_path / "other"), "--out", str(tmp_path / "o")],
                 ["visualize", str(tmp_path / "other"), "--out", str(tmp_path / "o")]):
        assert main(argv) == 2
        assert "not a SAMRS dataset" in capsys.readouterr().err
