"""COCO instances JSON reader (bring your own data)."""

import json

import pytest
from PIL import Image

from samrs_hf.sources.readers import open_source
from samrs_hf.sources.records import GARBLED_ANNOTATION, MISSING_IMAGE, NO_OBJECTS, SIZE_MISMATCH, UNKNOWN_CLASS, SourceError
from samrs_hf.sources.samples import write_coco_sample


def test_sample_categories_in_id_order_and_xywh(tmp_path):
    root = write_coco_sample(tmp_path / "c")
    for where in (root, root / "annotations" / "instances_train.json"):
        src = open_source("coco", where, strict=True)
        assert src.class_table.names == ("car", "building", "tree")
        a, b = list(src.images())
        assert (a.image_id, a.split, a.width, a.height) == ("a", "train", 640, 480)
        assert a.image_path == root / "train" / "a.jpg"
        car, building, tree = a.objects
        assert (car.category, car.label, car.hbox) == ("car", 0, (100.0, 100.0, 160.0, 130.0))
        assert (tree.label, tree.extra["category_id"]) == (2, 7)
        assert building.extra["segmentation"] == [[300.0, 200.0, 450.0, 200.0, 450.0, 320.0, 300.0, 320.0]]
        assert car.where.endswith("instances_train.json:annotations[0]") and car.polygon is None
    src = open_source("coco", root, subset="mine")
    assert src.class_table.subset == "mine"


def _coco(tmp_path, images, annotations, categories=({"id": 2, "name": "boat"},)):
    (tmp_path / "img").mkdir(exist_ok=True)
    for name, size in (("x.png", (100, 50)), ("y.png", (30, 30))):
        Image.new("RGB", size).save(tmp_path / "img" / name)
    path = tmp_path / "set.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": list(categories)}))
    return path


def test_coco_problems(tmp_path):
    path = _coco(tmp_path, [
        {"id": 1, "file_name": "x.png", "width": 100, "height": 60},
        {"id": 2, "file_name": "y.png"},
        {"id": 3, "file_name": "z.png"},
    ], [
        {"id": 1, "image_id": 1, "category_id": 2, "bbox": [10, 10, 20, 5], "iscrowd": 1},
        {"id": 2, "image_id": 1, "category_id": 9, "bbox": [10, 10, 20, 5]},
        {"id": 3, "image_id": 1, "category_id": 2, "bbox": [10, 10]},
        {"id": 4, "image_id": 1, "category_id": 2, "bbox": [10, "a", 1, 1]},
        {"id": 5, "image_id": 77, "category_id": 2, "bbox": [1, 1, 1, 1]},
        {"id": 6, "image_id": 3, "category_id": 2, "bbox": [1, 1, 1, 1]},
    ])
    src = open_source("coco", path, images_dir=tmp_path / "img")
    x, y = list(src.images())
    (crowd,) = x.objects
    assert crowd.difficult and crowd.extra["iscrowd"] and crowd.hbox == (10.0, 10.0, 30.0, 15.0)
    assert (x.width, x.height) == (100, 50) and y.objects == []
    assert [(p.kind, p.where, p.skipped) for p in src.report.problems] == [
        (MISSING_IMAGE, "set.json:annotations[4]", True),
        (SIZE_MISMATCH, "set.json:images[0]", False),
        (UNKNOWN_CLASS, "set.json:annotations[1]", True),
        (GARBLED_ANNOTATION, "set.json:annotations[2]", True),
        (GARBLED_ANNOTATION, "set.json:annotations[3]", True),
        (NO_OBJECTS, "set.json:images[1]", False),
        (MISSING_IMAGE, "set.json", True),
    ]
    assert "z.png does not exist" in src.report.problems[-1].message


def test_coco_bad_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(SourceError, match=r"bad\.json:2: not valid JSON"):
        open_source("coco", bad)
    bad.write_text('{"annotations": []}')
    with pytest.raises(SourceError, match="not a COCO instances file"):
        open_source("coco", bad)
    path = _coco(tmp_path, [], [], categories=({"id": 1, "name": "Boat"}, {"id": 2, "name": "boat"}))
    with pytest.raises(SourceError, match="set.json"):
        open_source("coco", path)


def test_several_jsons_are_splits_with_prefixed_ids(tmp_path):
    write_coco_sample(tmp_path)
    ann = tmp_path / "annotations"
    data = json.loads((ann / "instances_train.json").read_text())
    (ann / "instances_val.json").write_text(json.dumps(data))
    (tmp_path / "val").mkdir()
    for f in ("a.jpg", "b.jpg"):
        (tmp_path / "val" / f).write_bytes((tmp_path / "train" / f).read_bytes())
    src = open_source("coco", tmp_path)
    assert [(i.image_id, i.split) for i in src.images()] == [
        ("train_a", "train"), ("train_b", "train"), ("val_a", "val"), ("val_b", "val")]
    assert [i.image_id for i in open_source("coco", tmp_path, splits=["val"]).images()] == ["val_a", "val_b"]


def test_duplicate_image_id_is_a_skip_not_a_silent_replacement(tmp_path):
    path = _coco(tmp_path, [{"id": 1, "file_name": "x.png"}, {"id": 1, "file_name": "y.png"}],
                 [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [1, 1, 5, 5]}])
    src = open_source("coco", path, images_dir=tmp_path / "img")
    (x,) = list(src.images())  # the first entry keeps the id and its annotations
    assert (x.image_id, x.width, len(x.objects)) == ("x", 100, 1)
    (p,) = src.report.problems
    assert (p.kind, p.where, p.skipped) == (GARBLED_ANNOTATION, "set.json:images[1]", True)
    assert "images[0]" in p.message
