"""Class tables, the box rule, geometry, the build layout helpers and the dataset features."""

import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from samrs_hf.sources import classes
from samrs_hf.sources import geometry
from samrs_hf.build import layout
from samrs_hf.sources.imageio import CorruptImageError, image_size, open_rgb
from samrs_hf.sources.records import Report, SourceError, check_box


def test_class_tables_follow_samrs_order():
    sota, sior, fast = (classes.get_class_table(s) for s in ("sota", "sior", "fast"))
    assert (len(sota), len(sior), len(fast)) == (18, 20, 37)
    assert sota.names[0] == "large-vehicle" and sota.names[17] == "helipad"
    assert sior.names[6] == "expressway-service-area" and sior.names[19] == "windmill"
    assert fast.names[24] == "other-airplane" and fast.names[36] == "Warship"


def test_name_normalisation_dior_case_and_fair1m_spaces():
    assert classes.get_class_table("sior").id_of("Expressway-toll-station") == 7
    fast = classes.get_class_table("fast")
    assert fast.id_of("Dry Cargo Ship") == 15
    assert fast.canonical("dry cargo ship") == "Dry-Cargo-Ship"
    assert fast.id_of("other-Airplane") == 24
    assert fast.id_of("Boeing 737") is None  # not a FAIR1M spelling
    assert classes.get_class_table("sota").id_of("unknown-thing") is None
    with pytest.raises(KeyError, match="unknown subset"):
        classes.get_class_table("isaid")


def test_palette_is_shared_and_white_for_unlabelled():
    assert classes.color_of(0) == (0, 127, 255)
    assert classes.color_of(36) == (0, 191, 64)
    assert classes.color_of(255) == (255, 255, 255)
    pal = classes.get_class_table("sota").flat_palette()
    assert len(pal) == 768 and pal[3 * 13: 3 * 13 + 3] == [0, 0, 255] and pal[3 * 255:] == [255, 255, 255]
    custom = classes.class_table_from_names("custom", [f"c{i}" for i in range(40)])
    assert custom.palette[37] == classes.PALETTE[0]


def test_check_box_rule():
    report = Report()
    assert check_box((1, 2, 10, 20), 100, 100, "a.txt:1", report) == (1.0, 2.0, 10.0, 20.0)
    assert check_box((5, 5, 5, 9), 100, 100, "a.txt:2", report) == (5.0, 5.0, 6.0, 9.0)  # widened
    assert check_box((5, 5, float("nan"), 9), 100, 100, "a.txt:3", report) is None
    assert check_box((200, 5, 210, 9), 100, 100, "a.txt:4", report) is None
    assert check_box((-5, -5, 10, 10), 100, 100, "a.txt:5", report) == (-5.0, -5.0, 10.0, 10.0)  # unclipped
    assert check_box((9, 5, 3, 9), 100, 100, "a.txt:6", report) is None
    assert report.counts() == {
        "degenerate-box": 1, "degenerate-box-widened": 1, "non-finite-coordinate": 1, "out-of-image": 1,
    }
    assert [p.where for p in report.skips] == ["a.txt:3", "a.txt:4", "a.txt:6"]
    with pytest.raises(SourceError, match=r"b.xml:object\[2\]: out-of-image"):
        check_box((200, 5, 210, 9), 100, 100, "b.xml:object[2]", Report(strict=True))


def test_rbox_corners_follow_hrsc_convention():
    # w along (cos t, sin t) in y-down coordinates: a 90 degree turn makes the ship vertical.
    p = geometry.rbox_to_polygon(100, 50, 40, 10, math.pi / 2)
    np.testing.assert_allclose(p, [[105, 30], [105, 70], [95, 70], [95, 30]], atol=1e-9)
    assert geometry.polygon_to_hbox(p) == pytest.approx((95, 30, 105, 70))
    cx, cy, w, h, t = geometry.polygon_to_rbox(geometry.rbox_to_polygon(10, 20, 8, 4, 0.3))
    assert (cx, cy, w, h, t) == pytest.approx((10, 20, 8, 4, 0.3))


def test_polygon_area_fraction_and_winding():
    square = [[0, 0], [10, 0], [10, 10], [0, 10]]
    assert geometry.polygon_area(square) == 100
    assert geometry.polygon_area(square[::-1]) == 100
    assert geometry.is_clockwise(square) and not geometry.is_clockwise(square[::-1])
    assert geometry.fraction_inside(square, (0, 0, 7, 10)) == pytest.approx(0.7)
    # zero-area polygon falls back to its (widened) H-Box
    assert geometry.fraction_inside([[2, 2], [8, 2], [8, 2], [2, 2]], (0, 0, 5, 5)) == pytest.approx(0.5)
    m = geometry.fractions_inside([square, [[20, 20], [30, 20], [30, 30], [20, 30]]], [(0, 0, 5, 10), (0, 0, 100, 100)])
    np.testing.assert_allclose(m, [[0.5, 1.0], [0.0, 1.0]])


def test_image_io_names_file_and_converts_to_rgb(tmp_path):
    gray = tmp_path / "g.png"
    Image.fromarray(np.full((5, 7), 9, np.uint8), "L").save(gray)
    assert image_size(gray) == (7, 5)
    rgb = open_rgb(gray, box=(2, 1, 20, 3))
    assert rgb.shape == (2, 5, 3) and rgb.dtype == np.uint8 and (rgb == 9).all()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(CorruptImageError, match="bad.png"):
        image_size(bad)
    with pytest.raises(CorruptImageError, match="missing.png: missing"):
        open_rgb(tmp_path / "missing.png")


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    from samrs_hf.common import files

    target = tmp_path / "gray" / "x.png"
    layout.atomic_write(target, b"abc")
    assert target.read_bytes() == b"abc"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(OSError, match="No space"):
        layout.atomic_write(tmp_path / "gray" / "y.png", b"def")
    assert sorted(p.name for p in (tmp_path / "gray").iterdir()) == ["x.png"]


def test_png_bytes_deterministic_and_palette():
    arr = np.array([[0, 1], [255, 13]], np.uint8)
    a = layout.png_bytes(arr, "L", classes.get_class_table("sota").flat_palette())
    assert a == layout.png_bytes(arr, "L", classes.get_class_table("sota").flat_palette())
    import io

    im = Image.open(io.BytesIO(a))
    assert im.mode == "P" and np.array_equal(np.asarray(im), arr)
    assert im.convert("RGB").getpixel((1, 1)) == (0, 0, 255)
    assert im.convert("RGB").getpixel((0, 1)) == (255, 255, 255)


def test_iter_build_items_and_errors(tmp_path):
    with pytest.raises(SourceError, match="not a samrs build"):
        list(layout.iter_build_items(tmp_path))
    (tmp_path / "ins").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "b.jpg").write_bytes(b"x")
    rec = {"image": "b", "source_image": "b", "offset": [0, 0], "width": 2, "height": 2, "instances": []}
    (tmp_path / "ins" / "b.json").write_text(json.dumps(rec))
    (tmp_path / "ins" / "a.json").write_text("{broken")
    items = list(layout.iter_build_items(tmp_path))
    assert [i.name for i in items] == ["a", "b"]
    assert items[1].image_path.name == "b.jpg" and items[1].load_instances() == rec
    with pytest.raises(SourceError, match=r"a\.json: corrupt instance file"):
        items[0].load_instances()


def test_features_and_decode_masks():
    from pycocotools import mask as mask_utils

    from samrs_hf.hub.features import decode_masks, samrs_features

    f = samrs_features("fast")
    assert f["objects"]["category"].feature.num_classes == 37
    assert set(f) == {"image", "semantic", "label", "objects", "image_id", "file_name", "source_image", "width",
                      "height", "subset"}
    m = np.zeros((4, 6), np.uint8)
    m[1:3, 2:5] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    ex = {"height": 4, "width": 6, "image_id": 1, "file_name": "x",
          "objects": {"id": [0], "segmentation": [{"size": [4, 6], "counts": rle["counts"].decode()}]}}
    out = decode_masks(ex)
    assert out.shape == (1, 4, 6) and out.dtype == bool and np.array_equal(out[0], m.astype(bool))
    ex["objects"]["segmentation"][0]["size"] = [5, 6]
    with pytest.raises(ValueError, match="mask size"):
        decode_masks(ex)


def test_cli_help_lists_every_subcommand(capsys):
    from samrs_hf.cli import COMMANDS, main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name, _ in COMMANDS:
        assert name in out
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
