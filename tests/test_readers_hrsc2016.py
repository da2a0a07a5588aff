"""HRSC2016 reader: the real ship of 100000006.xml, and generated segmentation masks."""

import math

import numpy as np
import pytest
from PIL import Image

from samrs_hf.sources.readers import gt_instance_masks, open_source
from samrs_hf.sources.records import SourceError
from samrs_hf.sources.samples import write_hrsc2016_sample


def test_known_ship_angle_convention(real_fixtures):
    src = open_source("hrsc2016", real_fixtures / "hrsc2016", check_images=False)
    (img,) = list(src.images())
    assert (img.image_id, img.width, img.height, img.split) == ("100000006", 1172, 816, None)
    assert img.extra["segmentation_path"] is None
    (ship,) = img.objects
    assert (ship.category, ship.label, ship.where) == ("ship", 0, "FullDataSet/Annotations/100000006.xml:HRSC_Object[1]")
    assert ship.hbox == (119.0, 75.0, 587.0, 789.0)
    assert ship.rbox == (341.2143, 443.3325, 778.4297, 178.2595, -1.122944)
    # Corners by hand: u = (cos a, sin a) = (0.43303, -0.90138) along w, v = (-sin a, cos a) along h,
    # corner0 = c - w/2 u - h/2 v, corner1 = c + w/2 u - h/2 v, ...
    np.testing.assert_allclose(ship.polygon, [[92.333, 755.567], [429.417, 53.906], [590.096, 131.098],
                                              [253.012, 832.759]], atol=1e-3)
    # w is the ship's length: the bow (header_x/y) lies at one short side (within h/2 of the middle
    # of corners 3-0), not at a long side.
    assert ship.extra["bow"] == (143.0, 776.0)
    short_mid = (ship.polygon[0] + ship.polygon[3]) / 2
    assert math.dist(short_mid, ship.extra["bow"]) < 178.2595 / 2
    assert ship.extra["seg_color"] is None and ship.extra["class_id"] == "100000013"
    # sysdata.xml (HRSC's own class list, 31 fine classes) names it.
    assert ship.extra["class_name"] == "Kuznetsov"
    assert len(src._fine_classes()) == 31 and src._fine_classes()["100000001"] == "ship"
    assert gt_instance_masks(img) == [None]


def test_sample_masks_and_splits(tmp_path):
    root = write_hrsc2016_sample(tmp_path / "hrsc")
    src = open_source("hrsc2016", root, strict=True)
    a, b = list(src.images())
    assert (a.split, b.split) == ("trainval", "test")
    assert gt_instance_masks(a) == [None, None]
    masks = gt_instance_masks(b)
    assert [o.extra["seg_color"] for o in b.objects] == [(255, 0, 0), (0, 255, 0)]
    assert all(m.shape == (480, 640) and m.dtype == bool for m in masks)
    # Ship 2 is an axis-aligned 120x30 rectangle at (150, 400): PIL fills its border pixels too.
    ys, xs = np.nonzero(masks[1])
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (90, 210, 385, 415)
    assert not (masks[0] & masks[1]).any() and masks[0].sum() > 0.9 * 300 * 60
    assert [im.image_id for im in open_source("hrsc2016", root, splits=["test"]).images()] == ["100000002"]
    with pytest.raises(SourceError, match="split 'val' not found"):
        open_source("hrsc2016", root, splits=["val"]).images().__next__()


def test_segmentation_size_mismatch_names_file(tmp_path):
    root = write_hrsc2016_sample(tmp_path / "hrsc")
    seg = root / "FullDataSet" / "Segmentations" / "100000002.png"
    Image.new("RGB", (320, 240)).save(seg)
    img = [im for im in open_source("hrsc2016", root).images()][1]
    with pytest.raises(SourceError, match="100000002.png: segmentation image is 320x240, the image is 640x480"):
        gt_instance_masks(img)
    seg.unlink()
    img = [im for im in open_source("hrsc2016", root).images()][1]
    with pytest.raises(SourceError, match="100000002.xml: ships have seg_color but there is no"):
        gt_instance_masks(img)


def test_listed_id_without_files_is_a_counted_skip(tmp_path):
    """An ImageSets id with neither image nor annotation: a skip naming the list file, not a traceback."""
    root = write_hrsc2016_sample(tmp_path / "hrsc")
    (root / "ImageSets" / "test.txt").write_text("100000002\n100000099\n")
    src = open_source("hrsc2016", root, splits=["test"])
    assert [im.image_id for im in src.images()] == ["100000002"]
    (p,) = src.report.problems
    assert (p.kind, p.where, p.skipped) == ("missing-annotation", "ImageSets/test.txt", True)
    assert "100000099" in p.message
    with pytest.raises(SourceError, match=r"ImageSets/test\.txt: missing-annotation: 100000099"):
        list(open_source("hrsc2016", root, splits=["test"], strict=True).images())
