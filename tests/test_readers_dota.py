"""DOTA reader on the real labelTxt fixtures and on generated layouts."""

from collections import Counter

import numpy as np
import pytest

from samrs_hf.sources.readers import open_source
from samrs_hf.sources.records import EMPTY_ANNOTATION, MISSING_IMAGE, OUT_OF_IMAGE


def _by_id(src):
    return {im.image_id: im for im in src.images()}


def test_devkit_example_counts_header_crlf(real_fixtures):
    src = open_source("dota", real_fixtures / "dota" / "DOTA_devkit_example", check_images=False)
    images = _by_id(src)
    assert sorted(images) == ["P0770", "P1088", "P1888", "P2598"]
    counts = {i: Counter(o.category for o in im.objects) for i, im in images.items()}
    assert counts["P0770"] == {"ground-track-field": 1, "baseball-diamond": 2, "tennis-court": 10, "swimming-pool": 9}
    assert counts["P1088"] == {"small-vehicle": 9, "large-vehicle": 3, "plane": 22}
    assert counts["P1888"] == {"small-vehicle": 14, "large-vehicle": 50}
    assert counts["P2598"] == {"soccer-ball-field": 2, "small-vehicle": 16, "large-vehicle": 3,
                               "ground-track-field": 1, "tennis-court": 4}
    p1888 = images["P1888"]
    # P1888.txt: "imagesource:GoogleEarth\r\ngsd:0.266170468393\r\n674 375 683 375 684 394 675 395 small-vehicle 0"
    assert p1888.extra == {"imagesource": "GoogleEarth", "gsd": 0.266170468393}
    assert (p1888.width, p1888.height) == (712, 557)  # from the PNG header
    first = p1888.objects[0]
    assert first.where == "labelTxt/P1888.txt:3"
    assert first.category == "small-vehicle" and first.label == 9
    np.testing.assert_array_equal(first.polygon, [[674, 375], [683, 375], [684, 394], [675, 395]])
    assert first.hbox == (674.0, 375.0, 684.0, 395.0)
    last = p1888.objects[-1]  # "197 200 207 200 208 242 198 243 large-vehicle 0" on line 66
    assert last.where == "labelTxt/P1888.txt:66" and last.hbox == (197.0, 200.0, 208.0, 243.0)
    # Images of P0770/P1088/P2598 are absent: label-only read notes them, size unknown.
    assert images["P0770"].width is None
    assert [p.where for p in src.report.by_kind()[MISSING_IMAGE]] == [
        "labelTxt/P0770.txt", "labelTxt/P1088.txt", "labelTxt/P2598.txt"]
    assert not src.report.skips


def test_default_read_skips_labels_without_image(real_fixtures):
    src = open_source("dota", real_fixtures / "dota" / "DOTA_devkit_example")
    assert [im.image_id for im in src.images()] == ["P1888"]
    assert src.report.counts() == {MISSING_IMAGE: 3}
    assert all(p.skipped for p in src.report.problems)


def test_split_patches_empty_file_and_out_of_image(real_fixtures):
    src = open_source("dota", real_fixtures / "dota", splits=["mmrotate_split_patches"], check_images=False)
    images = _by_id(src)
    assert sorted(images) == ["P0004__1__0___0", "P0004__1__0___1024", "P2805__1024__0___0"]
    empty = images["P0004__1__0___1024"]
    assert empty.objects == [] and empty.split == "mmrotate_split_patches"
    assert [p.where for p in src.report.by_kind()[EMPTY_ANNOTATION]] == [
        "mmrotate_split_patches/labelTxt/P0004__1__0___1024.txt"]
    # The bundled PNGs are tiny (285x294, 170x170) and do not match the labels: boxes entirely
    # outside are skipped with their line, the one box overlapping the image is kept unclipped.
    p0004 = images["P0004__1__0___0"]
    assert (p0004.width, p0004.height) == (285, 294)
    assert [o.hbox for o in p0004.objects] == [(123.0, 171.0, 221.0, 199.0)]
    assert p0004.objects[0].where.endswith("P0004__1__0___0.txt:4")
    assert images["P2805__1024__0___0"].objects == []
    out = [p.where.rsplit("/", 1)[1] for p in src.report.by_kind()[OUT_OF_IMAGE]]
    assert out == ["P0004__1__0___0.txt:1", "P0004__1__0___0.txt:2", "P0004__1__0___0.txt:3",
                   "P2805__1024__0___0.txt:1", "P2805__1024__0___0.txt:2", "P2805__1024__0___0.txt:3",
                   "P2805__1024__0___0.txt:4"]


def test_yolov5_float_coords_and_difficult(real_fixtures):
    src = open_source("dota", real_fixtures / "dota" / "yolov5_obb_demo", check_images=False)
    (p0032,) = list(src.images())
    assert Counter(o.category for o in p0032.objects) == {"small-vehicle": 34, "large-vehicle": 11, "plane": 11}
    assert sum(o.difficult for o in p0032.objects) == 37
    assert not any(o.truncated for o in p0032.objects)
    first = p0032.objects[0]  # 1686.0 1517.0 1695.0 1511.0 1711.0 1535.0 1700.0 1541.0 large-vehicle 1
    assert first.difficult and first.hbox == (1686.0, 1511.0, 1711.0, 1541.0)
    assert p0032.extra == {}


def test_whole_fixture_folder_uses_subfolders_as_splits(real_fixtures):
    src = open_source("dota", real_fixtures / "dota", check_images=False)
    images = list(src.images())
    assert len(src) == 8 and len(images) == 8
    assert [im.image_id for im in images] == sorted(im.image_id for im in images)
    assert sum(len(im.objects) for im in images) == 22 + 34 + 64 + 26 + 56 + 1


def _write(root, split, image_id, text, size=(300, 200), mode="RGB"):
    from PIL import Image

    base = root / split if split else root
    (base / "images").mkdir(parents=True, exist_ok=True)
    (base / "labelTxt").mkdir(parents=True, exist_ok=True)
    if size:
        Image.new(mode, size).save(base / "images" / f"{image_id}.png")
    (base / "labelTxt" / f"{image_id}.txt").write_bytes(text.encode())


def test_whitespace_tabs_floats_difficult2_and_image_modes(tmp_path):
    _write(tmp_path, "train", "A", "gsd:null\n10\t20  50 20 50.5 60 10 60\tplane\t2\n\n", mode="L")
    _write(tmp_path, "val", "B", "1 1 9 1 9 9 1 9 Storage-Tank\n", mode="P")
    _write(tmp_path, "test", "C", "", size=(50, 50))
    src = open_source("dota", tmp_path)
    a, b, c = list(src.images())  # test/ has a labelTxt/ too, so it is a split; its empty file is noted
    assert (a.image_id, a.split, b.split, c.split) == ("A", "train", "val", "test")
    assert c.objects == [] and src.report.counts() == {EMPTY_ANNOTATION: 1}
    assert a.extra == {"gsd": "null"}  # non-numeric gsd kept as text
    (obj,) = a.objects
    assert obj.hbox == (10.0, 20.0, 50.5, 60.0) and obj.truncated and not obj.difficult
    assert b.objects[0].category == "storage-tank" and not b.objects[0].difficult
    src2 = open_source("dota", tmp_path, splits=["val"])
    assert [im.image_id for im in src2.images()] == ["B"]


def test_reiteration_is_identical_and_reports_once(tmp_path):
    _write(tmp_path, "", "Z", "1 1 9 1 9 9 1 9 plane 0\nbroken line\n")
    _write(tmp_path, "", "A", "1 1 9 1 9 9 1 9 ship 0\n")
    src = open_source("dota", tmp_path)
    first = [(im.image_id, [o.hbox for o in im.objects]) for im in src.images()]
    second = [(im.image_id, [o.hbox for o in im.objects]) for im in src.images()]
    assert first == second and [i for i, _ in first] == ["A", "Z"]
    assert len(src.report.problems) == 1 and src.report.problems[0].where == "labelTxt/Z.txt:2"


def test_unknown_split_is_an_error(tmp_path):
    from samrs_hf.sources.records import SourceError

    _write(tmp_path, "train", "A", "1 1 9 1 9 9 1 9 plane 0\n")
    with pytest.raises(SourceError, match="split 'val' not found"):
        list(open_source("dota", tmp_path, splits=["val"]).images())
