"""``samrs inspect`` on every real fixture folder and on generated samples, via the real CLI entry."""

import json

import pytest

from samrs_hf.cli import main
from samrs_hf.sources.samples import write_sample


def _inspect(capsys, *args):
    rc = main(["inspect", *map(str, args), "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    return json.loads(out)


def test_dota_fixture(real_fixtures, capsys):
    r = _inspect(capsys, "--format", "dota", real_fixtures / "dota")
    assert r["images"] == {"found": 8, "read": 3, "with_objects": 2,
                           "per_split": {"DOTA_devkit_example": 1, "mmrotate_split_patches": 2}}
    assert r["objects"] == {"total": 65, "difficult": 0, "truncated": 0,
                            "per_class": {"large-vehicle": 50, "plane": 1, "small-vehicle": 14}}
    assert r["sizes"]["width"] == {"min": 170, "max": 712, "mean": 389.0}
    # P1888 (712x557) and P0004__1__0___0 (285x294) fit one 1024 window each; P2805 lost all objects.
    assert r["tiling"] == {"size": 1024, "gap": 200, "iof_thr": 0.7, "patches": 2, "objects_in_patches": 65,
                           "objects_in_no_patch": 0, "images_without_size": 0}
    assert r["problems"]["counts"] == {"missing-image": 5, "out-of-image": 7}
    wheres = [p["where"] for p in r["problems"]["by_kind"]["out-of-image"]]
    assert wheres[0] == "mmrotate_split_patches/labelTxt/P0004__1__0___0.txt:1"

    lo = _inspect(capsys, "--format", "dota", real_fixtures / "dota", "--labels-only")
    assert lo["images"]["read"] == 8 and lo["sizes"]["unknown"] == 5
    assert lo["objects"]["total"] == 203 and lo["objects"]["difficult"] == 37
    assert lo["objects"]["per_class"] == {"large-vehicle": 67, "swimming-pool": 9, "plane": 34, "soccer-ball-field": 2,
                                          "ground-track-field": 2, "small-vehicle": 73, "baseball-diamond": 2,
                                          "tennis-court": 14}
    assert lo["problems"]["counts"] == {"empty-annotation": 1, "missing-image": 5, "out-of-image": 7}
    assert lo["problems"]["skipped"] == 7 and lo["problems"]["noted"] == 6


@pytest.mark.parametrize("fmt", ["dior", "dior-r"])
def test_dior_fixture(real_fixtures, capsys, fmt):
    r = _inspect(capsys, "--format", fmt, real_fixtures / "dior")
    assert r["images"]["read"] == 1 and r["objects"]["per_class"] == {"golffield": 1}
    assert r["tiling"]["size"] is None and r["tiling"]["patches"] == 1
    lo = _inspect(capsys, "--format", fmt, real_fixtures / "dior", "--labels-only", "--splits", "trainval")
    assert lo["images"]["per_split"] == {"trainval": 5}
    # 11726 (test, 25 airplanes + 6 vehicles) is left out by --splits trainval.
    assert lo["objects"]["per_class"] == {"expressway-toll-station": 1, "golffield": 1, "harbor": 2, "ship": 124,
                                          "storagetank": 1, "vehicle": 5}
    assert list(lo["objects"]["per_class"]) == ["expressway-toll-station", "golffield", "harbor", "ship",
                                                "storagetank", "vehicle"]  # SIOR id order
    assert lo["objects"]["total"] == 1 + 4 + 3 + 1 + 125 and lo["tiling"]["patches"] == 5


def test_fair1m_fixture(real_fixtures, capsys):
    r = _inspect(capsys, "--format", "fair1m", real_fixtures / "fair1m")
    assert r["images"]["read"] == 0 and r["problems"]["counts"] == {"missing-image": 7}
    lo = _inspect(capsys, "--format", "fair1m", real_fixtures / "fair1m", "--labels-only")
    assert lo["images"]["per_split"] == {"train": 6, "validation": 1}
    assert lo["objects"]["total"] == 28 and lo["objects"]["per_class"]["Dry-Cargo-Ship"] == 6
    assert lo["sizes"]["most_common"][0] == [1000, 1000, 3]
    assert lo["tiling"]["size"] == 600 and lo["tiling"]["objects_in_no_patch"] == 0


def test_hrsc_fixture(real_fixtures, capsys):
    lo = _inspect(capsys, "--format", "hrsc2016", real_fixtures / "hrsc2016", "--labels-only")
    assert lo["images"]["read"] == 1 and lo["objects"]["per_class"] == {"ship": 1}
    assert lo["sizes"]["width"] == {"min": 1172, "max": 1172, "mean": 1172.0}
    assert lo["tiling"]["patches"] == 1


def test_dota_sample_patches_by_hand(tmp_path, capsys):
    """P0001 1400x1000 -> windows x=0 and x=376: 4 + 5 objects; P0002 700x600 -> one padded window
    (2 objects); P0003 1100x900 -> windows x=0 and x=76, both holding all 3 objects."""
    root = write_sample("dota", tmp_path)
    r = _inspect(capsys, "--format", "dota", root)
    assert r["tiling"]["patches"] == 5 and r["tiling"]["objects_in_patches"] == 9 + 2 + 6
    assert r["problems"]["counts"] == {}
    uncut = _inspect(capsys, "--format", "dota", root, "--tile-size", "0")
    assert uncut["tiling"]["size"] is None and uncut["tiling"]["patches"] == 3


def test_coco_tile_overrides_by_hand(tmp_path, capsys):
    """300 px windows, gap 0, 70 %: a.jpg (640x480) -> 4 patches / 6 objects, b.jpg (512x512) -> 2 / 2."""
    root = write_sample("coco", tmp_path)
    r = _inspect(capsys, "--format", "coco", root, "--tile-size", "300", "--gap", "0")
    assert r["tiling"] == {"size": 300, "gap": 0, "iof_thr": 0.7, "patches": 6, "objects_in_patches": 8,
                           "objects_in_no_patch": 0, "images_without_size": 0}
    plain = _inspect(capsys, "--format", "coco", root)
    assert plain["tiling"]["patches"] == 2 and plain["class_table"] == {"subset": "coco", "num_classes": 3}


def test_text_output_lists_problems(real_fixtures, capsys):
    assert main(["inspect", "--format", "dota", str(real_fixtures / "dota"), "--max-problems", "2"]) == 0
    out = capsys.readouterr().out
    assert "images: 3 read of 8 found" in out
    assert "  large-vehicle      50" in out
    assert "problems: 12 (12 skipped, 0 noted)" in out
    assert "    mmrotate_split_patches/labelTxt/P0004__1__0___0.txt:1: box (398.0, 694.0, 465.0, 718.0) lies " \
           "outside the 285x294 image" in out
    assert "... 5 more" in out


def test_strict_exits_2_naming_the_file(real_fixtures, capsys):
    assert main(["inspect", "--format", "fair1m", str(real_fixtures / "fair1m"), "--strict"]) == 2
    err = capsys.readouterr().err
    assert "samrs inspect: error:" in err and "labelXml/0.xml: missing-image" in err


def test_bad_options_exit_2(tmp_path, capsys):
    root = write_sample("dior", tmp_path)
    assert main(["inspect", "--format", "dior", str(root), "--gap", "10"]) == 2
    assert "give --tile-size with --gap" in capsys.readouterr().err
    assert main(["inspect", "--format", "dior", str(root), "--splits", "val"]) == 2
    assert "split 'val' not found" in capsys.readouterr().err


def test_cli_format_list_matches_readers():
    from samrs_hf.cli import cmd_inspect
    from samrs_hf.sources.readers import FORMATS

    assert cmd_inspect.FORMATS == FORMATS  # kept separate so `samrs --help` imports no reader
