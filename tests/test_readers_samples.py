"""The generated sample sources: stable, valid, and drawn where their boxes are."""

import hashlib
from collections import Counter

import numpy as np
import pytest

from samrs_hf.sources.imageio import open_rgb
from samrs_hf.sources.readers import open_source
from samrs_hf.sources.samples import main, write_sample

EXPECTED = {
    "dota": ({"plane": 3, "ship": 2, "storage-tank": 2, "small-vehicle": 2, "harbor": 1, "tennis-court": 1,
              "swimming-pool": 1}, ["P0001", "P0002", "P0003"]),
    "dior": ({"airplane": 2, "vehicle": 2, "expressway-toll-station": 1, "ship": 1, "storagetank": 1, "windmill": 1},
             ["00001", "00002", "11726"]),
    "dior-r": ({"airplane": 2, "vehicle": 2, "expressway-toll-station": 1, "ship": 1, "storagetank": 1,
                "windmill": 1}, ["00001", "00002", "11726"]),
    "fair1m": ({"Dry-Cargo-Ship": 2, "Small-Car": 3, "Boeing737": 2, "Tennis-Court": 1, "Bridge": 1},
               ["train_0", "train_1", "valid_0"]),
    "hrsc2016": ({"ship": 4}, ["100000001", "100000002"]),
    "coco": ({"car": 2, "building": 2, "tree": 1}, ["a", "b"]),
}


@pytest.mark.parametrize("fmt", sorted(EXPECTED))
def test_sample_reads_cleanly(tmp_path, fmt):
    root = write_sample(fmt, tmp_path / fmt)
    src = open_source(fmt, root, strict=True)
    images = list(src.images())
    counts, ids = EXPECTED[fmt]
    assert [im.image_id for im in images] == ids
    assert Counter(o.category for im in images for o in im.objects) == counts
    assert src.report.problems == []


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def test_samples_are_deterministic_and_drawn_at_boxes(tmp_path):
    assert _digest(write_sample("dota", tmp_path / "a")) == _digest(write_sample("dota", tmp_path / "b"))
    src = open_source("dota", tmp_path / "a")
    p1 = next(iter(src.images()))
    assert p1.extra["gsd"] == 0.146343590398
    assert (tmp_path / "a" / "train" / "labelTxt" / "P0001.txt").read_bytes().count(b"\r\n") == 9
    pixels = open_rgb(p1.image_path)
    ship = p1.objects[1]  # axis-aligned 120x60 at (760, 180), painted (40, 200, 60)
    assert ship.hbox == (700.0, 150.0, 820.0, 210.0)
    np.testing.assert_array_equal(pixels[180, 760], (40, 200, 60))
    assert not (pixels[140, 760] == (40, 200, 60)).all()
    # The grayscale and palette images keep their modes (readers take sizes, not pixels).
    from PIL import Image

    assert Image.open(tmp_path / "a" / "train" / "images" / "P0002.png").mode == "L"
    assert Image.open(tmp_path / "a" / "val" / "images" / "P0003.png").mode == "P"


def test_fair1m_sample_start_points_and_winding_vary(tmp_path):
    from samrs_hf.sources.geometry import is_clockwise

    src = open_source("fair1m", write_sample("fair1m", tmp_path))
    objs = next(iter(src.images())).objects
    assert [is_clockwise(o.polygon) for o in objs] == [True, False, True, False]
    assert all(np.array_equal(o.extra["points"][0], o.extra["points"][4]) for o in objs)


def test_samples_command(tmp_path, capsys):
    assert main(["coco", str(tmp_path / "c")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "c")
    with pytest.raises(ValueError, match="no sample for format 'voc'"):
        write_sample("voc", tmp_path)
