"""DIOR (horizontal) and DIOR-R (oriented) readers on the real XML fixtures."""

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from samrs_hf.sources.readers import open_source
from samrs_hf.sources.records import MISSING_IMAGE, SIZE_MISMATCH

ALL = {"golffield": 1, "expressway-toll-station": 1, "vehicle": 11, "storagetank": 1, "ship": 124,
       "harbor": 2, "airplane": 25}


@pytest.mark.parametrize("fmt", ["dior", "dior-r"])
def test_counts_splits_and_names(real_fixtures, fmt):
    src = open_source(fmt, real_fixtures / "dior", check_images=False)
    images = {im.image_id: im for im in src.images()}
    assert sorted(images) == ["00001", "00002", "00005", "00131", "05195", "11726"]
    assert Counter(o.category for im in images.values() for o in im.objects) == ALL
    assert {i: im.split for i, im in images.items()} == {
        "00001": "trainval", "00002": "trainval", "00005": "trainval", "00131": "trainval",
        "05195": "trainval", "11726": "test"}
    # 'Expressway-toll-station' in the file, lower-cased SIOR name and id 7.
    ets = [o for o in images["00002"].objects if o.category == "expressway-toll-station"]
    assert len(ets) == 1 and ets[0].label == 7
    # Only 00001.jpg is in the fixture: its size comes from the JPEG header.
    assert images["00001"].image_path.name == "00001.jpg" and (images["00001"].width, images["00001"].height) == (800, 800)
    assert len(src.report.by_kind()[MISSING_IMAGE]) == 5


def test_default_read_keeps_only_images_present(real_fixtures):
    src = open_source("dior", real_fixtures / "dior")
    (only,) = list(src.images())
    assert only.image_id == "00001"
    (golf,) = only.objects
    assert (golf.category, golf.label, golf.hbox, golf.polygon) == ("golffield", 9, (133.0, 237.0, 684.0, 672.0), None)
    assert golf.where == "Annotations/Horizontal Bounding Boxes/00001.xml:object[1]"
    assert src.report.counts() == {MISSING_IMAGE: 5}
    assert [im.image_id for im in open_source("dior", real_fixtures / "dior", splits=["test"]).images()] == []


def test_hbb_coordinate_802_kept_unclipped(real_fixtures):
    src = open_source("dior", real_fixtures / "dior", check_images=False, splits=["trainval"])
    img = next(im for im in src.images() if im.image_id == "05195")
    assert len(img.objects) == 125
    obj = img.objects[111]
    assert obj.where.endswith("05195.xml:object[112]")
    assert obj.category == "ship" and obj.hbox == (786.0, 502.0, 802.0, 528.0)
    assert not [p for p in src.report.problems if "05195" in p.where and p.kind != MISSING_IMAGE]


def test_oriented_corners_minus_zero_and_angle(real_fixtures):
    src = open_source("dior-r", real_fixtures / "dior", check_images=False)
    images = {im.image_id: im for im in src.images()}
    veh = images["00005"].objects[2]
    # <x_left_top>-1 ... <x_left_bottom>-0<...>: negative corners kept, "-0" parsed as 0.
    np.testing.assert_array_equal(veh.polygon, [[-1, 681], [32, 678], [34, 693], [0, 696]])
    assert veh.hbox == (-1.0, 678.0, 34.0, 696.0)
    assert veh.extra["angle_deg"] == -4.4 and veh.category == "vehicle"
    # 00002's oriented file lists the toll station last, with the only non-zero angle.
    assert [(o.category, o.extra["angle_deg"]) for o in images["00002"].objects] == [
        ("vehicle", 0.0), ("vehicle", 0.0), ("vehicle", 0.0), ("expressway-toll-station", -9.6)]
    golf = images["00001"].objects[0]
    np.testing.assert_array_equal(golf.polygon, [[133, 237], [684, 237], [684, 672], [133, 672]])
    assert golf.extra["angle_deg"] == 0.0
    # Label-only: 00131's (wrong) <size> 800x802 is all there is.
    assert (images["00131"].width, images["00131"].height) == (800, 802)


def test_wrong_size_00131_noted_against_the_image_header(real_fixtures, tmp_path):
    """With an 800x800 image present, the oriented XML's <size> 800x802 is noted; the header wins."""
    ann = tmp_path / "Annotations"
    ann.mkdir()
    for sub in ("Horizontal Bounding Boxes", "Oriented Bounding Boxes"):
        (ann / sub).mkdir()
        (ann / sub / "00131.xml").symlink_to(real_fixtures / "dior" / "Annotations" / sub / "00131.xml")
    (tmp_path / "JPEGImages-trainval").mkdir()
    Image.new("RGB", (800, 800)).save(tmp_path / "JPEGImages-trainval" / "00131.jpg")
    src = open_source("dior-r", tmp_path, strict=True)
    (img,) = list(src.images())
    assert (img.width, img.height) == (800, 800)
    (note,) = src.report.problems
    assert (note.kind, note.where, note.skipped) == (SIZE_MISMATCH, "Annotations/Oriented Bounding Boxes/00131.xml:size", False)
    assert "800x802" in note.message
    hsrc = open_source("dior", tmp_path)
    list(hsrc.images())
    assert hsrc.report.problems == []  # the horizontal XML says 800x800
