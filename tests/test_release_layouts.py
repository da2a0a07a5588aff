"""The official SAMRS release as distributed: its folder layouts, its split lists, its COCO-JSON variant.

Every tree is generated here from instance records in the real release's exact form (numpy ``bbox``
arrays, ``size``, ``label``, ``category``, RLE ``mask`` with str counts; the RBB variant's ``rbox``
4x2 + ``rhbox``), pickled as numpy 1.x did (``numpy.core.multiarray._reconstruct``).
"""

import hashlib
import json
import pickle

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from samrs_hf.cli import main as cli_main
from samrs_hf.common.safe_load import load_pickle
from samrs_hf.hub.features import samrs_features
from samrs_hf.hub.release import convert_release, make_plan
from samrs_hf.hub.release_layout import ReleaseLayoutError, find_release
from samrs_hf.loading_scripts import load_builder_class
from samrs_hf.sources.classes import get_class_table

W, H = 48, 40


def numpy1_pickle(value) -> bytes:
    """What the release's numpy 1.x wrote: protocol 2 naming ``numpy.core.multiarray``."""
    data = pickle.dumps(value, protocol=2).replace(b"numpy._core", b"numpy.core")
    assert b"numpy.core.multiarray\n_reconstruct" in data
    return data


def make_records(rng, subset: str, n: int, rbb: bool = False) -> list[dict]:
    table = get_class_table(subset)
    records = []
    for _ in range(n):
        x0, y0 = int(rng.integers(0, W - 12)), int(rng.integers(0, H - 12))
        bw, bh = int(rng.integers(3, 11)), int(rng.integers(3, 11))
        m = np.zeros((H, W), np.uint8)
        m[y0:y0 + bh, x0:x0 + bw] = 1
        rle = mask_utils.encode(np.asfortranarray(m))
        rle["counts"] = rle["counts"].decode("ascii")
        label = int(rng.integers(len(table)))
        rec = {"mask": rle, "category": table.names[label], "size": np.int64(m.sum()), "label": label}
        if rbb:
            corners = np.array([[x0, y0], [x0 + bw, y0], [x0 + bw, y0 + bh], [x0, y0 + bh]], np.float64) + 0.5
            rec["rbox"] = corners
            rec["rhbox"] = np.array([*corners.min(0), *corners.max(0)])
        else:
            rec["bbox"] = np.array([x0, y0, x0 + bw, y0 + bh], np.float64)
        records.append(rec)
    return records


def paint(records) -> np.ndarray:
    gray = np.full((H, W), 255, np.uint8)
    for r in records:
        gray[mask_utils.decode(dict(r["mask"], counts=r["mask"]["counts"].encode())).astype(bool)] = r["label"]
    return gray


def write_image(folder, name, rng, ext=".png") -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}{ext}"
    Image.fromarray(rng.integers(0, 256, (H, W, 3), np.uint8)).save(path)
    return np.asarray(Image.open(path).convert("RGB"))


def write_labels(labels, name, records, with_ins=True):
    for sub in ("gray", "color", "ins"):
        (labels / sub).mkdir(parents=True, exist_ok=True)
    gray = paint(records)
    Image.fromarray(gray, "L").save(labels / "gray" / f"{name}.png")
    Image.fromarray(np.stack([gray] * 3, -1)).save(labels / "color" / f"{name}.png")
    if with_ins:
        (labels / "ins" / f"{name}.pkl").write_bytes(numpy1_pickle(records))
    return gray


def make_tree(images, labels_dirs, names, subset, rng, ext=".png", rbb=False):
    """Images in ``images`` (a folder, or name -> folder) and the same records in every label folder."""
    expected = {}
    for k, name in enumerate(names):
        folder = images[name] if isinstance(images, dict) else images
        pixels = write_image(folder, name, rng, ext)
        records = make_records(rng, subset, 1 + k % 3, rbb=rbb)
        for labels in labels_dirs:
            gray = write_labels(labels, name, records)
        expected[name] = (pixels, gray, records)
    return expected


def key(pixels) -> str:
    return hashlib.sha1(np.ascontiguousarray(pixels).tobytes()).hexdigest()


def objects_of(example) -> list[dict]:
    """The objects as one dict each, whether the feature is a list of dicts or a dict of lists."""
    objs = example["objects"]
    return [dict(zip(objs, v)) for v in zip(*objs.values())] if isinstance(objs, dict) else list(objs)


def check_rows(ds, expected, subset) -> dict[str, set[str]]:
    """Every row equals its release records (image, gray, each object); returns split -> names."""
    by_pixels = {key(p): name for name, (p, _, _) in expected.items()}
    seen, ids = {}, []
    for split, d in ds.items():
        assert d.features == samrs_features(subset)
        for ex in d:
            name = by_pixels[key(np.asarray(ex["image"].convert("RGB")))]
            seen.setdefault(split, set()).add(name)
            _, gray, records = expected[name]
            np.testing.assert_array_equal(np.asarray(ex["semantic"]), gray)
            objs = objects_of(ex)
            assert len(objs) == len(records)
            for o, r in zip(objs, records):
                box = r["bbox"] if "bbox" in r else r["rhbox"]
                assert o["category"] == r["label"]
                np.testing.assert_allclose(o["bbox"], [box[0], box[1], box[2] - box[0], box[3] - box[1]], atol=1e-4)
                assert o["segmentation"]["counts"] == r["mask"]["counts"]
                assert list(o["segmentation"]["size"]) == [H, W]
                assert o["area"] == int(r["size"])
                if "rbox" in r:
                    np.testing.assert_allclose(o["rbox"], np.asarray(r["rbox"]).reshape(-1), atol=1e-4)
                else:
                    assert o["rbox"] is None
                ids.append(o["id"])
    assert len(ids) == len(set(ids)) == sum(len(r) for _, _, r in expected.values() if r is not None)
    return seen


def load(hub):
    import datasets

    return datasets.load_dataset(str(hub))


def convert(root, subset, hub, **kw):
    return convert_release(root, subset, hub, progress=False, stats=None, **kw)


# ---------------------------------------------------------------------------------------- SOTA


@pytest.fixture()
def sota(tmp_path):
    """``dotav2_1024/trainval/{images, hbox_segs_init}`` + ``train.txt`` / ``valid.txt``."""
    rng = np.random.default_rng(0)
    trainval = tmp_path / "dotav2_1024" / "trainval"
    names = ["P0001__1024__0___0", "P0001__1024__824___0", "P0002__1024__0___0", "P0003__1024__0___0"]
    expected = make_tree(trainval / "images", [trainval / "hbox_segs_init"], names, "sota", rng)
    # With and without extension; a name with no file; P0003 listed nowhere.
    (trainval / "train.txt").write_text("P0001__1024__0___0.png\nP0001__1024__824___0\nP9999__1024__0___0\n")
    (trainval / "valid.txt").write_text("P0002__1024__0___0\n\n")
    return tmp_path / "dotav2_1024", expected


def test_real_release_record_form_is_read_safely(tmp_path):
    rec = make_records(np.random.default_rng(1), "sota", 1)
    p = tmp_path / "x.pkl"
    p.write_bytes(numpy1_pickle(rec))
    (got,) = load_pickle(p)
    np.testing.assert_array_equal(got["bbox"], rec[0]["bbox"])
    assert got["size"] == rec[0]["size"] and got["mask"]["counts"] == rec[0]["mask"]["counts"]


def test_sota_sibling_layout_with_split_lists(tmp_path, sota):
    root, expected = sota
    layout = find_release(root)
    assert layout.variant == "pkl" and layout.labels.name == "hbox_segs_init"
    assert [p.name for p in layout.images] == ["images"] and set(layout.split_lists) == {"train", "validation"}
    result = convert(root, "sota", tmp_path / "hub")
    assert result.splits == {"train": 2, "validation": 1}
    assert result.report.counts() == {"listed-but-missing": 1, "not-in-split-list": 1}
    (unlisted,) = result.report.skips
    assert unlisted.where.endswith("P0003__1024__0___0.pkl")
    seen = check_rows(load(tmp_path / "hub"), {n: v for n, v in expected.items() if not n.startswith("P0003")}, "sota")
    assert seen == {"train": {"P0001__1024__0___0", "P0001__1024__824___0"}, "validation": {"P0002__1024__0___0"}}
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "official ones" in card and "trainval/train.txt" in card and "trainval/valid.txt" in card
    assert "1 listed name(s) have no file" in card and "1 file(s) listed in neither" in card
    assert "stable hash" not in card
    # --strict makes the unlisted file an error.
    assert cli_main(["convert-release", str(root), "--subset", "sota", "--to", str(tmp_path / "h2"), "--strict",
                     "--no-stats"]) == 2


def test_two_label_folders_are_ambiguous_until_named(tmp_path, sota, capsys):
    root, _ = sota
    rng = np.random.default_rng(5)
    trainval = root / "trainval"
    rbb = {}
    for name in [p.stem for p in sorted((trainval / "images").glob("*.png"))]:
        records = make_records(rng, "sota", 2, rbb=True)
        rbb[name] = (np.asarray(Image.open(trainval / "images" / f"{name}.png")),
                     write_labels(trainval / "rhbox_segs_init", name, records), records)
    with pytest.raises(ReleaseLayoutError, match=r"2 label folders.*hbox_segs_init.*rhbox_segs_init.*--labels-dir"):
        find_release(root)
    assert cli_main(["convert-release", str(root), "--subset", "sota", "--to", str(tmp_path / "hub"),
                     "--no-stats"]) == 2
    err = capsys.readouterr().err
    assert "rhbox_segs_init" in err and "--labels-dir" in err
    assert cli_main(["convert-release", str(root), "--subset", "sota", "--to", str(tmp_path / "hub"), "--no-stats",
                     "--labels-dir", str(trainval / "rhbox_segs_init")]) == 0
    seen = check_rows(load(tmp_path / "hub"), {n: v for n, v in rbb.items() if not n.startswith("P0003")}, "sota")
    assert sum(map(len, seen.values())) == 3


def test_folder_names_are_matched_case_insensitively_two_levels_down(tmp_path):
    rng = np.random.default_rng(2)
    base = tmp_path / "unzipped" / "FAIR1M_1024" / "TrainVal"
    expected = make_tree(base / "Images", [base / "RHBOX_SEGS_INIT"], ["train_1__600__0___0", "valid_2__600__0___0"],
                         "fast", rng)
    with pytest.raises(ReleaseLayoutError, match="not a SAMRS release folder"):
        find_release(tmp_path / "unzipped")  # three levels down: too deep
    layout = find_release(base.parent)
    assert layout.labels == base / "RHBOX_SEGS_INIT" and layout.images == (base / "Images",)
    result = convert(base.parent, "fast", tmp_path / "hub", val_fraction=0.0)
    assert result.splits == {"train": 2}
    check_rows(load(tmp_path / "hub"), expected, "fast")


# ---------------------------------------------------------------------------------------- SIOR


def test_sior_two_jpeg_folders_keep_dior_test(tmp_path):
    rng = np.random.default_rng(3)
    dior = tmp_path / "dior"
    folders = {"00001": dior / "JPEGImages-trainval", "00002": dior / "JPEGImages-trainval",
               "11726": dior / "JPEGImages-test", "11727": dior / "JPEGImages-test"}
    expected = make_tree(folders, [dior / "hbox_segs_trainvaltest_init"], list(folders), "sior", rng, ext=".jpg")
    layout = find_release(dior)
    assert [p.name for p in layout.images] == ["JPEGImages-trainval", "JPEGImages-test"]
    result = convert(dior, "sior", tmp_path / "hub", val_fraction=0.0)
    assert result.splits == {"train": 2, "test": 2} and result.report.counts() == {}
    seen = check_rows(load(tmp_path / "hub"), expected, "sior")
    assert seen == {"train": {"00001", "00002"}, "test": {"11726", "11727"}}
    assert "stable hash" in (tmp_path / "hub" / "README.md").read_text()
    # With split lists, the test images still go to test (not counted as unlisted).
    (dior / "train.txt").write_text("00001\n")
    (dior / "valid.txt").write_text("00002.jpg\n")
    result = convert(dior, "sior", tmp_path / "hub2")
    assert result.splits == {"train": 1, "validation": 1, "test": 2} and result.report.counts() == {}


# ---------------------------------------------------------------------------------------- FAST, flat, overrides


def test_fast_through_the_loading_script(tmp_path):
    rng = np.random.default_rng(4)
    trainval = tmp_path / "fair1m_1024" / "trainval"
    names = ["train_10__600__0___0", "train_11__600__0___0", "valid_3__600__0___0"]
    expected = make_tree(trainval / "images", [trainval / "rhbox_segs_init"], names, "fast", rng, rbb=True)
    (trainval / "train.txt").write_text("train_10__600__0___0\ntrain_11__600__0___0\n")
    (trainval / "valid.txt").write_text("valid_3__600__0___0\n")
    builder = load_builder_class("fast")(data_dir=str(tmp_path / "fair1m_1024"), cache_dir=str(tmp_path / "cache"))
    builder.download_and_prepare()
    ds = builder.as_dataset()
    assert {s: d.num_rows for s, d in ds.items()} == {"train": 2, "validation": 1}
    seen = check_rows(ds, expected, "fast")
    assert seen["validation"] == {"valid_3__600__0___0"} and "official ones" in builder.plan.split_rule


def test_flat_layout_as_today(tmp_path):
    rng = np.random.default_rng(6)
    flat = tmp_path / "SOTA"
    expected = make_tree(flat / "images", [flat], ["P0005__1024__0___0", "P0006__1024__0___0"], "sota", rng)
    layout = find_release(flat)
    assert layout.labels == flat and layout.images == (flat / "images",) and layout.split_lists == {}
    result = convert(flat, "sota", tmp_path / "hub", val_fraction=0.0)
    assert result.splits == {"train": 2}
    check_rows(load(tmp_path / "hub"), expected, "sota")


def test_images_and_labels_dir_override_the_search(tmp_path):
    rng = np.random.default_rng(7)
    names = {"00010": tmp_path / "a" / "pics", "11800": tmp_path / "b" / "test-pics"}
    expected = make_tree(names, [tmp_path / "c" / "labels"], list(names), "sior", rng)
    with pytest.raises(ReleaseLayoutError, match="not a SAMRS release folder"):
        find_release(tmp_path / "a")
    with pytest.raises(ReleaseLayoutError, match="--labels-dir: .* has no gray/"):
        find_release(tmp_path, labels_dir=tmp_path / "a")
    assert cli_main(["convert-release", str(tmp_path / "a"), "--subset", "sior", "--to", str(tmp_path / "hub"),
                     "--images-dir", str(tmp_path / "a" / "pics"), "--images-dir", str(tmp_path / "b" / "test-pics"),
                     "--labels-dir", str(tmp_path / "c" / "labels"), "--val-fraction", "0", "--no-stats"]) == 0
    seen = check_rows(load(tmp_path / "hub"), expected, "sior")
    assert seen == {"train": {"00010"}, "test": {"11800"}}
    # The loading script takes the same options through its config.
    builder = load_builder_class("sior")(data_dir=str(tmp_path / "a"), cache_dir=str(tmp_path / "cache"),
                                         images_dir=[str(names["00010"]), str(names["11800"])],
                                         labels_dir=str(tmp_path / "c" / "labels"), val_fraction=0.0)
    builder.download_and_prepare()
    assert {s: d.num_rows for s, d in builder.as_dataset().items()} == {"train": 1, "test": 1}


# ---------------------------------------------------------------------------------------- COCO-JSON variant


def _polygon(r) -> list[float]:
    x0, y0, x1, y1 = r["bbox"]
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def write_coco(trainval, subset, split, names, expected, polygons=()):
    """The authors' multi-task conversion: images + categories + annotations (bbox = the mask's box)."""
    table = get_class_table(subset)
    images, anns = [], []
    for i, name in enumerate(names):
        images.append({"id": i, "file_name": f"{name}.png", "height": H, "width": W, "segm_file": f"{name}.pkl"})
        for r in expected[name][2]:
            seg = [_polygon(r)] if name in polygons else r["mask"]
            anns.append({"id": len(anns), "image_id": i, "iscrowd": 0, "category_id": r["label"],
                         "bbox": mask_utils.toBbox(dict(r["mask"], counts=r["mask"]["counts"].encode())).tolist(),
                         "area": int(r["size"]), "segmentation": seg})
    data = {"images": images, "annotations": anns,
            "categories": [{"id": k, "name": n} for k, n in enumerate(table.names)]}
    (trainval / f"{subset}_rbb_{split}_ins_segmentation.json").write_text(json.dumps(data))


def write_rbbtxt(folder, name, records, order):
    folder.mkdir(exist_ok=True)
    lines = ["imagesource:GoogleEarth", "gsd:0.5"]
    for i in order:
        r = records[i]
        corners = np.asarray(r["bbox"], float)[[0, 1, 2, 1, 2, 3, 0, 3]]
        lines.append(" ".join(f"{v:.1f}" for v in corners) + f" {r['category']} 0")
    (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("with_gray", [False, True], ids=["painted", "gray-folder"])
def test_coco_json_variant(tmp_path, with_gray):
    rng = np.random.default_rng(8)
    trainval = tmp_path / "sota_mtp" / "trainval"
    names = ["P0101__1024__0___0", "P0102__1024__0___0", "P0103__1024__0___0"]
    expected = make_tree(trainval / "images", [tmp_path / "unused"], names, "sota", rng)
    expected["P0102__1024__0___0"] = (expected["P0102__1024__0___0"][0], None,
                                      make_records(rng, "sota", 3))  # three objects: order matters below
    expected = {n: (p, paint(r), r) for n, (p, _, r) in expected.items()}
    write_coco(trainval, "sota", "train", names[:2], expected, polygons={names[1]})
    write_coco(trainval, "sota", "valid", names[2:], expected)
    write_rbbtxt(trainval / "rbbtxts", names[0], expected[names[0]][2], order=range(len(expected[names[0]][2])))
    write_rbbtxt(trainval / "rbbtxts", names[1], expected[names[1]][2], order=[2, 0, 1])  # matched by overlap
    if with_gray:
        for name in names:
            write_labels(trainval / "rhbox_segs_init", name, expected[name][2], with_ins=False)
    plan = make_plan(tmp_path / "sota_mtp", "sota")
    assert plan.layout.variant == "coco" and plan.layout.rbbtxts == trainval / "rbbtxts"
    assert (plan.layout.labels is not None) == with_gray
    result = convert(tmp_path / "sota_mtp", "sota", tmp_path / "hub")
    assert result.splits == {"train": 2, "validation": 1} and result.report.counts() == {}
    ds = load(tmp_path / "hub")
    by_pixels = {key(p): n for n, (p, _, _) in expected.items()}
    for split, d in ds.items():
        assert d.features == samrs_features("sota")
        for ex in d:
            name = by_pixels[key(np.asarray(ex["image"]))]
            pixels, gray, records = expected[name]
            np.testing.assert_array_equal(np.asarray(ex["semantic"]), gray)
            objs = objects_of(ex)
            assert [o["category"] for o in objs] == [r["label"] for r in records]
            for o, r in zip(objs, records):
                got = mask_utils.decode(dict(o["segmentation"], counts=o["segmentation"]["counts"].encode()))
                want = mask_utils.decode(dict(r["mask"], counts=r["mask"]["counts"].encode()))
                np.testing.assert_array_equal(got, want)  # polygons rasterise to the same rectangles
                assert o["area"] == int(r["size"])
                x0, y0, x1, y1 = r["bbox"]
                np.testing.assert_allclose(o["bbox"], [x0, y0, x1 - x0, y1 - y0], atol=1e-4)
                if name == names[2]:
                    assert o["rbox"] is None  # no rbbtxts file for it
                else:
                    np.testing.assert_allclose(o["rbox"], np.asarray(r["bbox"], float)[[0, 1, 2, 1, 2, 3, 0, 3]])
    assert "sota_rbb_train_ins_segmentation.json" in (tmp_path / "hub" / "README.md").read_text()


def test_coco_variant_counts_unlisted_images_and_missing_files(tmp_path):
    rng = np.random.default_rng(9)
    trainval = tmp_path / "trainval"
    names = ["A__1", "B__1", "C__1"]
    expected = make_tree(trainval / "images", [tmp_path / "unused"], names, "sota", rng)
    write_coco(trainval, "sota", "train", ["A__1", "Z__1"], {**expected, "Z__1": expected["A__1"]})
    write_coco(trainval, "sota", "valid", ["B__1"], expected)
    (trainval / "rbbtxts").mkdir()
    (trainval / "rbbtxts" / "B__1.txt").write_text("1 2 3 4 5 6 7 x8 plane 0\n")
    result = convert(tmp_path, "sota", tmp_path / "hub")
    assert result.splits == {"train": 1, "validation": 1}
    counts = result.report.counts()
    assert counts["not-in-split-list"] == 1 and counts["listed-but-missing"] == 1 and counts["missing-image"] == 1
    (garbled,) = [p for p in result.report.problems if p.kind == "garbled-annotation"]
    assert garbled.where.endswith("B__1.txt") and not garbled.skipped and "B__1.txt:1" in garbled.message
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "1 listed name(s) have no file" in card and "1 file(s) listed in neither" in card


@pytest.mark.parametrize("segmentation", [[], [[1.0, 2.0]], [[0, 0, 5, 0, 5]]], ids=["empty", "one-point", "odd"])
def test_degenerate_coco_polygons_are_counted_skips(tmp_path, segmentation):
    """pycocotools raises IndexError / a bare Exception on these: a counted garbled-annotation skip instead."""
    rng = np.random.default_rng(11)
    trainval = tmp_path / "trainval"
    names = ["A__1", "B__1"]
    expected = make_tree(trainval / "images", [tmp_path / "unused"], names, "sota", rng)
    write_coco(trainval, "sota", "train", names, expected)
    path = trainval / "sota_rbb_train_ins_segmentation.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["segmentation"] = segmentation  # an annotation of A__1
    path.write_text(json.dumps(data))
    result = convert(tmp_path, "sota", tmp_path / "hub")
    (skip,) = [p for p in result.report.problems if p.kind == "garbled-annotation"]
    assert skip.skipped and "annotation[0]" in skip.where and "polygons" in skip.message
    assert sum(result.splits.values()) == 1  # B__1 converted


def test_a_labels_dir_outside_the_root_reads_nothing_beside_it(tmp_path):
    """Images and split lists come from the root (or --images-dir), never from the label folder's siblings."""
    rng = np.random.default_rng(12)
    root, elsewhere = tmp_path / "release", tmp_path / "scratch"
    expected = make_tree(root / "images", [elsewhere / "hbox_segs_init"], ["P1__1"], "sota", rng)
    make_tree(elsewhere / "other-images", [tmp_path / "unused"], ["P9__1"], "sota", rng)
    (elsewhere / "train.txt").write_text("P9__1\n")  # a foreign split list next to the labels
    layout = find_release(root, labels_dir=elsewhere / "hbox_segs_init")
    assert [p.name for p in layout.images] == ["images"] and not layout.split_lists
    assert set(expected) == {"P1__1"}
