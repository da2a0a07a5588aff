"""Tiling against hand-computed BboxToolkit layouts (tools/img_split.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from samrs_hf.sources import imageio
from samrs_hf.sources import tiling
from samrs_hf.sources.records import SourceError, SourceImage, SourceObject
from samrs_hf.sources.tiling import (
    TILING_PRESETS,
    Patch,
    TilingConfig,
    image_rate_filter,
    load_patches,
    patch_name,
    plan_patches,
    unassigned_objects,
    windows,
)

DOTA = TILING_PRESETS["dota"]
FAIR1M = TILING_PRESETS["fair1m"]


def box_obj(x0, y0, x1, y1, category="plane", **kw) -> SourceObject:
    return SourceObject(category, 0, (float(x0), float(y0), float(x1), float(y1)), **kw)


def poly_obj(points, category="ship", **kw) -> SourceObject:
    poly = np.asarray(points, dtype=np.float64)
    hbox = (poly[:, 0].min(), poly[:, 1].min(), poly[:, 0].max(), poly[:, 1].max())
    return SourceObject(category, 0, tuple(float(v) for v in hbox), polygon=poly, **kw)


def image(w, h, objects, path="none.png", image_id="P0000") -> SourceImage:
    return SourceImage(image_id, path, w, h, list(objects))


# ---------------------------------------------------------------- presets and windows


def test_presets_match_samrs():
    assert (DOTA.size, DOTA.gap, DOTA.iof_thr, DOTA.img_rate_thr) == (1024, 200, 0.7, 0.6)
    assert (FAIR1M.size, FAIR1M.gap, FAIR1M.iof_thr, FAIR1M.img_rate_thr) == (600, 150, 0.5, 0.6)
    assert DOTA.pad_value == (124, 116, 104)  # BboxToolkit's BGR (104, 116, 124)
    for fmt in ("dior", "dior-r", "hrsc2016", "coco"):
        assert TILING_PRESETS[fmt].size is None


def test_windows_2000x1500_last_window_aligned_to_edge():
    # x: ceil(976/824 + 1) = 3 starts 0, 824, 1648 -> last moved to 2000-1024 = 976
    # y: ceil(476/824 + 1) = 2 starts 0, 824 -> last moved to 1500-1024 = 476; x-major order
    assert windows(2000, 1500, DOTA).tolist() == [
        [0, 0, 1024, 1024],
        [0, 476, 1024, 1500],
        [824, 0, 1848, 1024],
        [824, 476, 1848, 1500],
        [976, 0, 2000, 1024],
        [976, 476, 2000, 1500],
    ]


def test_windows_1100x1100():
    assert windows(1100, 1100, DOTA).tolist() == [
        [0, 0, 1024, 1024],
        [0, 76, 1024, 1100],
        [76, 0, 1100, 1024],
        [76, 76, 1100, 1100],
    ]


def test_windows_exact_fit_and_one_pixel_more():
    # 1848 = 1024 + 824: two windows fit exactly, nothing is moved
    assert windows(1848, 1024, DOTA).tolist() == [[0, 0, 1024, 1024], [824, 0, 1848, 1024]]
    # 1849: ceil(825/824 + 1) = 3 -> starts 0, 824, 1648 -> last moved back to 825
    assert windows(1849, 1024, DOTA)[:, 0].tolist() == [0, 824, 825]


def test_windows_fair1m_600_gap_150():
    # step 450: x ceil(400/450 + 1) = 2 -> 0, 450 -> moved to 400; y fits one window
    assert windows(1000, 600, FAIR1M).tolist() == [[0, 0, 600, 600], [400, 0, 1000, 600]]


def test_image_smaller_than_window_gives_one_padded_window():
    # in-image share 500*300 / 1024^2 = 0.14 < 0.6, but the best window is always kept
    assert windows(500, 300, DOTA).tolist() == [[0, 0, 1024, 1024]]


def test_thin_image_keeps_all_windows_of_equal_share():
    # every window has share 500/1024 = 0.49: none passes, all are within eps of the best
    assert windows(2000, 500, DOTA).tolist() == [[0, 0, 1024, 1024], [824, 0, 1848, 1024], [976, 0, 2000, 1024]]


def test_image_rate_rule_drops_sliver_window():
    wins = np.array([[0, 0, 100, 100], [50, 0, 150, 100], [40, 0, 140, 100]])
    # on a 110 px wide image: shares 1.0, 0.6 (not > 0.6: dropped), 0.7
    assert image_rate_filter(wins, 110, 100, 0.6).tolist() == [True, False, True]
    # none above the threshold: only the best (0.5) survives
    wins = np.array([[0, 0, 100, 100], [0, 0, 200, 100]])
    assert image_rate_filter(wins, 50, 100, 0.6).tolist() == [True, False]


def test_uncut_window_is_the_image():
    assert windows(800, 600, TILING_PRESETS["dior"]).tolist() == [[0, 0, 800, 600]]
    assert windows(800, 600, None).tolist() == [[0, 0, 800, 600]]


def test_bad_configs_and_sizes():
    with pytest.raises(ValueError):
        TilingConfig(100, 100)
    with pytest.raises(ValueError):
        TilingConfig(100, 10, iof_thr=1.5)
    with pytest.raises(ValueError):
        windows(0, 10, DOTA)


def test_patch_name_format():
    assert patch_name("P0000", 1024, 824, 0) == "P0000__1024__824___0"


# ---------------------------------------------------------------- object assignment


def test_seventy_percent_rule_with_dota_preset():
    # 2000x1024 image: windows x = 0, 824, 976 (one row). Objects crossing the left image edge
    # only overlap the first window.
    in71 = box_obj(-29, 100, 71, 200)  # 71 % inside window 0
    in69 = box_obj(-31, 300, 69, 400)  # 69 % inside
    img = image(2000, 1024, [in71, in69])
    patches = plan_patches(img, DOTA)
    assert [p.name for p in patches] == ["P0000__1024__0___0"]
    assert patches[0].object_indices == (0,)
    assert patches[0].objects[0].truncated is True
    assert unassigned_objects(img, patches) == [in69]


def test_fifty_percent_rule_with_fair1m_preset():
    # 1000x600 image: windows x = 0 and 400 (600 wide).
    in60 = box_obj(-40, 10, 60, 50)  # 60 %: kept by FAIR1M's 0.5 rule, dropped by DOTA's 0.7
    in49 = box_obj(-51, 100, 49, 150)  # 49 %
    half = box_obj(500, 200, 700, 260)  # window 0 holds x < 600 -> exactly 50 %; window 400 holds all
    img = image(1000, 600, [in60, in49, half], image_id="train_12")
    patches = plan_patches(img, FAIR1M)
    assert [(p.name, p.object_indices) for p in patches] == [
        ("train_12__600__0___0", (0, 2)),
        ("train_12__600__400___0", (2,)),
    ]
    assert [o.truncated for o in patches[0].objects] == [True, True]
    assert patches[1].objects[0].truncated is False
    assert unassigned_objects(img, patches) == [in49]
    # the same layout under the 70 % rule loses the 60 % object too
    strict = plan_patches(img, TilingConfig(600, 150, 0.7))
    assert unassigned_objects(img, strict) == [in60, in49]


def test_threshold_boundary_with_gapless_windows():
    cfg = TilingConfig(100, 0, 0.7)  # 200x100 image -> windows [0,100) and [100,200)
    a = box_obj(29, 0, 129, 10)  # 71 % in window 0, 29 % in window 1
    b = box_obj(31, 20, 131, 30)  # 69 % / 31 %: in no window
    img = image(200, 100, [a, b])
    patches = plan_patches(img, cfg)
    assert [(p.name, p.object_indices) for p in patches] == [("P0000__100__0___0", (0,))]
    assert unassigned_objects(img, patches) == [b]


def test_iof_uses_polygon_area_not_hbox():
    # diamond centred 5 px right of the image edge, half-diagonal 20: its H-Box is only
    # 25/40 = 62.5 % inside, but 575/800 = 71.9 % of its area is.
    diamond = poly_obj([(5, 80), (25, 100), (5, 120), (-15, 100)])
    patches = plan_patches(image(2000, 1024, [diamond]), DOTA)
    assert [p.name for p in patches] == ["P0000__1024__0___0"]


def test_rbox_only_object_uses_its_corners():
    # an R-Box (no polygon) of 40x10 standing vertically at x = 3: corners from the R-Box
    obj = SourceObject("ship", 0, (-17.0, 95.0, 23.0, 105.0), rbox=(3.0, 100.0, 40.0, 10.0, np.pi / 2))
    # as a vertical 10 px wide box it is 80 % inside (x from -2 to 8); its H-Box would be 57.5 %
    patches = plan_patches(image(2000, 1024, [obj]), DOTA)
    assert len(patches) == 1 and patches[0].objects[0].rbox[:2] == (3.0, 100.0)


def test_objects_shifted_not_clipped_and_order_kept():
    a = box_obj(800, 10, 900, 60)  # window 0: all; window 824: 76 % (shifted x0 = -24)
    b = poly_obj([(1900, 500), (1950, 500), (1950, 540), (1900, 540)], difficult=True)
    c = box_obj(850, 700, 870, 720, truncated=True)  # already truncated in the source
    img = image(2000, 1024, [a, b, c])
    patches = {p.name: p for p in plan_patches(img, DOTA)}
    assert list(patches) == ["P0000__1024__0___0", "P0000__1024__824___0", "P0000__1024__976___0"]
    p824 = patches["P0000__1024__824___0"]
    assert p824.offset == (824, 0) and p824.window == (824, 0, 1848, 1024)
    assert (p824.width, p824.height) == (1024, 1024)
    assert [o.hbox for o in p824.objects] == [(-24.0, 10.0, 76.0, 60.0), (26.0, 700.0, 46.0, 720.0)]
    assert [o.truncated for o in p824.objects] == [True, True]
    p976 = patches["P0000__1024__976___0"]
    assert p976.object_indices == (1,)
    np.testing.assert_allclose(p976.objects[0].polygon, [(924, 500), (974, 500), (974, 540), (924, 540)])
    assert p976.objects[0].difficult is True and p976.objects[0].truncated is False
    # the source records are untouched
    assert a.hbox == (800.0, 10.0, 900.0, 60.0) and a.truncated is False
    assert b.polygon[0].tolist() == [1900.0, 500.0]


def test_object_wholly_inside_is_not_truncated_by_rounding():
    # shapely gives this polygon an inside share of 0.9999999999999984 of window (0, 0)
    obj = poly_obj([(458.3, 765.3), (544.7, 805.2), (530.2, 836.6), (443.8, 796.7)])
    patches = plan_patches(image(2000, 1024, [obj]), DOTA)
    assert [(p.name, p.objects[0].truncated) for p in patches] == [("P0000__1024__0___0", False)]


def test_rbox_centre_is_shifted():
    obj = SourceObject("ship", 0, (1000.0, 90.0, 1040.0, 110.0), rbox=(1020.0, 100.0, 40.0, 20.0, 0.0))
    patches = plan_patches(image(2000, 1024, [obj]), DOTA)
    assert [(p.offset, p.objects[0].rbox) for p in patches] == [
        ((824, 0), (196.0, 100.0, 40.0, 20.0, 0.0)),
        ((976, 0), (44.0, 100.0, 40.0, 20.0, 0.0)),
    ]


def test_empty_windows_dropped_and_images_without_objects():
    img = image(2000, 1500, [box_obj(10, 10, 50, 50)])
    assert [p.name for p in plan_patches(img, DOTA)] == ["P0000__1024__0___0"]
    assert plan_patches(image(2000, 1500, []), DOTA) == []
    assert plan_patches(image(800, 800, []), None) == []


def test_uncut_patch_is_the_image():
    objs = [box_obj(-5, 10, 50, 60), box_obj(700, 700, 810, 790)]
    img = image(800, 800, objs, image_id="00001")
    (p,) = plan_patches(img, TILING_PRESETS["dior"])
    assert (p.name, p.window, p.offset, p.width, p.height) == ("00001", (0, 0, 800, 800), (0, 0), 800, 800)
    assert p.objects == objs and not p.padded
    assert unassigned_objects(img, [p]) == []


# ---------------------------------------------------------------- pixels


def _coord_image(w, h) -> np.ndarray:
    """RGB image whose pixels encode their coordinates."""
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([xs % 256, ys % 256, (xs // 256 + 16 * (ys // 256)) % 256], axis=-1).astype(np.uint8)


def test_small_image_padded_with_bboxtoolkit_value(tmp_path):
    arr = _coord_image(50, 30)
    Image.fromarray(arr).save(tmp_path / "s.png")
    img = image(50, 30, [box_obj(5, 5, 20, 20)], path=tmp_path / "s.png")
    cfg = TilingConfig(64, 16, 0.7)
    ((patch, pix),) = list(load_patches(img, plan_patches(img, cfg)))
    assert patch.name == "P0000__64__0___0" and patch.padded
    assert pix.shape == (64, 64, 3) and pix.dtype == np.uint8
    np.testing.assert_array_equal(pix[:30, :50], arr)
    assert (pix[30:] == (124, 116, 104)).all() and (pix[:, 50:] == (124, 116, 104)).all()


def test_grayscale_becomes_rgb(tmp_path):
    gray = (np.arange(40 * 70).reshape(40, 70) % 251).astype(np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    img = image(70, 40, [box_obj(1, 1, 9, 9)], path=tmp_path / "g.png")
    ((_, pix),) = list(load_patches(img, plan_patches(img, None)))
    assert pix.shape == (40, 70, 3)
    for ch in range(3):
        np.testing.assert_array_equal(pix[..., ch], gray)


def test_big_image_decoded_once_and_lazily(tmp_path, monkeypatch):
    w, h = 2000, 1100  # DOTA windows: x 0, 824, 976; y 0, 76
    arr = _coord_image(w, h)
    Image.fromarray(arr).save(tmp_path / "big.png", compress_level=1)
    objs = [box_obj(10, 10, 60, 60), box_obj(1900, 1000, 1990, 1090), box_obj(1700, 500, 1760, 550)]
    img = image(w, h, objs, path=tmp_path / "big.png", image_id="P9999")
    patches = plan_patches(img, DOTA)
    calls = []
    real = imageio.open_rgb

    def counting(path, box=None):
        calls.append((path, box))
        return real(path, box)

    monkeypatch.setattr(imageio, "open_rgb", counting)
    it = load_patches(img, patches)
    assert calls == []  # nothing decoded before the first patch is asked for
    got = list(it)
    assert len(calls) == 1
    assert len(got) == len(patches) == 5  # (0,0); the third object in 4 windows, one shared with the second
    for p, pix in got:
        x0, y0, x1, y1 = p.window
        assert pix.shape == (1024, 1024, 3)
        np.testing.assert_array_equal(pix, arr[y0:y1, x0:x1])
    # asked for one window only, only that region is decoded
    ((p, pix),) = list(load_patches(img, patches[-1:]))
    assert calls[-1] == (tmp_path / "big.png", (976, 76, 2000, 1100)) and p.window == (976, 76, 2000, 1100)
    np.testing.assert_array_equal(pix, arr[76:1100, 976:2000])


def test_recorded_size_disagreeing_with_the_file_is_an_error(tmp_path):
    Image.fromarray(_coord_image(50, 30)).save(tmp_path / "s.png")
    img = image(60, 30, [box_obj(1, 1, 9, 9)], path=tmp_path / "s.png")
    with pytest.raises(SourceError, match="s.png"):
        list(load_patches(img, plan_patches(img, None)))


def test_load_patches_rejects_foreign_patches(tmp_path):
    a = image(100, 100, [box_obj(1, 1, 5, 5)], image_id="A")
    b = image(100, 100, [box_obj(1, 1, 5, 5)], image_id="B")
    with pytest.raises(ValueError, match="belongs to image A"):
        list(load_patches(b, plan_patches(a, None)))


def test_patch_dataclass_fields():
    p = plan_patches(image(100, 100, [box_obj(1, 1, 5, 5)]), None)[0]
    assert isinstance(p, Patch) and p.source.image_id == "P0000"
    assert tiling.UNCUT.uncut and not DOTA.uncut


def test_real_dota_image_smaller_than_a_window(real_fixtures):
    # DOTA_devkit's P1888 (712x557, 64 objects) becomes one padded 1024 patch holding every object
    from samrs_hf.sources.readers import open_source

    src = open_source("dota", real_fixtures / "dota" / "DOTA_devkit_example")
    img = next(i for i in src.images() if i.image_id == "P1888")
    assert (img.width, img.height, len(img.objects)) == (712, 557, 64)
    patches = plan_patches(img, DOTA)
    assert [p.name for p in patches] == ["P1888__1024__0___0"]
    assert patches[0].object_indices == tuple(range(64)) and unassigned_objects(img, patches) == []
    ((_, pix),) = list(load_patches(img, patches))
    assert pix.shape == (1024, 1024, 3)
    assert (pix[557:] == (124, 116, 104)).all() and (pix[:, 712:] == (124, 116, 104)).all()
    np.testing.assert_array_equal(pix[:557, :712], np.asarray(Image.open(img.image_path).convert("RGB")))
