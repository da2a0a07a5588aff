"""FAIR1M reader on the real XML fixtures (no real .tif exists: label-only reads)."""

from collections import Counter

import numpy as np

from samrs_hf.sources.geometry import is_clockwise
from samrs_hf.sources.readers import open_source
from samrs_hf.sources.records import MISSING_IMAGE


def _read(real_fixtures, **kw):
    src = open_source("fair1m", real_fixtures / "fair1m", check_images=False, **kw)
    return src, {im.image_id: im for im in src.images()}


def test_ids_prefixed_and_counts(real_fixtures):
    src, images = _read(real_fixtures)
    assert list(images) == ["train_0", "train_10", "train_1589", "train_1744", "train_2", "train_3", "valid_0"]
    assert images["train_0"].split == "train" and images["valid_0"].split == "validation"
    assert images["train_1744"].annotation_path.parts[-3:] == ("part2", "labelXml", "1744.xml")
    assert Counter(o.category for im in images.values() for o in im.objects) == {
        "Dry-Cargo-Ship": 6, "Intersection": 3, "Baseball-Field": 3, "Dump-Truck": 3, "A220": 2, "Small-Car": 2,
        "Liquid-Cargo-Ship": 1, "Passenger-Ship": 1, "Motorboat": 1, "Bridge": 1, "Boeing787": 1,
        "Boeing777": 1, "A321": 1, "Boeing737": 1, "Van": 1}
    # Sizes from <size> (label-only): train 0 is 1500x1500, validation 0 is another image, 1000x1000.
    assert (images["train_0"].width, images["valid_0"].width) == (1500, 1000)
    assert (images["train_1744"].width, images["train_1744"].height) == (600, 800)
    assert src.report.counts() == {MISSING_IMAGE: 7} and not src.report.skips
    _, val = _read(real_fixtures, splits=["validation"])
    assert list(val) == ["valid_0"]


def test_fifth_point_dropped_winding_and_start_kept(real_fixtures):
    _, images = _read(real_fixtures)
    ship = images["train_0"].objects[0]
    assert (ship.category, ship.label, ship.where) == ("Liquid-Cargo-Ship", 22, "train/part1/labelXml/0.xml:object[1]")
    np.testing.assert_array_equal(ship.polygon, [[1275, 458], [1494, 88], [1417, 43], [1199, 414]])
    assert ship.extra["points"].shape == (5, 2) and tuple(ship.extra["points"][4]) == (1275.0, 458.0)
    assert ship.hbox == (1199.0, 43.0, 1494.0, 458.0)
    # PROVENANCE: all three polygons of train 0.xml run counter-clockwise on screen; kept as given.
    assert [is_clockwise(o.polygon) for o in images["train_0"].objects] == [False, False, False]
    # y = 1531 > 1500 and y = -19 < 0: kept unclipped.
    assert images["train_0"].objects[2].hbox == (549.0, 1332.0, 761.0, 1531.0)
    assert images["train_10"].objects[4].hbox == (432.0, -19.0, 568.0, 137.0)
    (val_ship,) = images["valid_0"].objects
    assert val_ship.category == "Dry-Cargo-Ship" and val_ship.hbox == (472.0, 20.0, 841.0, 186.0)


def test_default_read_without_images_skips_everything(real_fixtures):
    src = open_source("fair1m", real_fixtures / "fair1m")
    assert list(src.images()) == []
    assert src.report.counts() == {MISSING_IMAGE: 7} and len(src.report.skips) == 7
