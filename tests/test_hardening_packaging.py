"""Issue 16 (hardening), packaging side: the --to folder, corrupt data, empty builds, the card's skips."""

import json
import shutil

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from support_builds import SIOR_ITEMS, H, W, load_hub, make_build

from samrs_hf.analysis.stats import write_stats
from samrs_hf.build import layout
from samrs_hf.sources.classes import get_class_table
from samrs_hf.cli import main as cli_main
from samrs_hf.hub.packaging import MANIFEST, PackagingError, package
from samrs_hf.sources.records import SourceError
from samrs_hf.sam.rle import check_rle, decompress_counts, mask_runs


@pytest.fixture(scope="module")
def sior_build(tmp_path_factory):
    return make_build(tmp_path_factory.mktemp("b") / "sior_build", "sior", SIOR_ITEMS)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------ 5: the --to folder

def test_to_refuses_a_folder_that_is_not_a_package(sior_build, tmp_path, capsys):
    hub = tmp_path / "hub"
    (hub / "data").mkdir(parents=True)
    (hub / "data" / "mine.csv").write_text("1,2\n")
    (hub / "notes.txt").write_text("keep me")
    before = _files(hub)
    with pytest.raises(PackagingError, match=r"not made by samrs package.*data/, notes\.txt"):
        package([sior_build], hub, progress=False, stats=False)
    assert cli_main(["package", str(sior_build), "--to", str(hub), "--no-stats"]) == 2
    assert "not made by samrs package" in capsys.readouterr().err
    assert _files(hub) == before and sorted(p.name for p in hub.iterdir()) == ["data", "notes.txt"]


def test_repackaging_replaces_only_our_files(sior_build, tmp_path):
    hub = tmp_path / "hub"
    first = package([sior_build], hub, val_fraction=0.0, progress=False, stats=False, shard_size="2KB")
    assert len(first.files["train"]) > 1
    foreign = {"data/NOTES.md": b"notes", "figures/mine.png": b"png?", "figures/palette/extra.txt": b"x",
               "extra.txt": b"mine"}
    for rel, data in foreign.items():
        (hub / rel).write_bytes(data)
    second = package([sior_build], hub, name="renamed", val_fraction=0.0, progress=False, stats=write_stats)
    files = _files(hub)
    assert {k: files[k] for k in foreign} == foreign  # kept, byte for byte
    # The first package's extra shards are gone: only the new package's shards are loaded.
    assert sorted(k for k in files if k.startswith("data/")) == ["data/NOTES.md", "data/test-00000-of-00001.parquet",
                                                                 "data/train-00000-of-00001.parquet"]
    assert "SAMRS renamed" in files["README.md"].decode()
    assert {s: len(d) for s, d in load_hub(hub).items()} == second.splits == {"train": 3, "test": 2}
    ours = json.loads(files[MANIFEST])["files"]
    assert "README.md" in ours and "figures/stats/stats.json" in ours and not set(foreign) & set(ours)


@pytest.mark.parametrize("rel, why", [("data/train-extra.parquet", "load it as rows"),
                                      ("figures/palette/00.png", "has a file of that name")])
def test_repackaging_refuses_to_overwrite_or_load_foreign_files(sior_build, tmp_path, rel, why):
    hub = tmp_path / "hub"
    package([sior_build], hub, val_fraction=0.0, progress=False, stats=False)
    (hub / rel).unlink(missing_ok=True)
    manifest = json.loads((hub / MANIFEST).read_text())
    manifest["files"] = [f for f in manifest["files"] if f != rel]  # the file is now the user's
    (hub / MANIFEST).write_text(json.dumps(manifest))
    (hub / rel).write_bytes(b"user data")
    before = _files(hub)
    with pytest.raises(PackagingError, match=why):
        package([sior_build], hub, val_fraction=0.0, progress=False, stats=False)
    assert _files(hub) == before


def test_manifest_cannot_delete_outside_the_package(sior_build, tmp_path):
    hub = tmp_path / "hub"
    package([sior_build], hub, val_fraction=0.0, progress=False, stats=False)
    outside = tmp_path / "precious.txt"
    outside.write_text("do not delete")
    manifest = json.loads((hub / MANIFEST).read_text())
    (hub / MANIFEST).write_text(json.dumps({"files": manifest["files"] + ["../precious.txt"]}))
    with pytest.raises(PackagingError, match="not a file inside the package"):
        package([sior_build], hub, val_fraction=0.0, progress=False, stats=False)
    assert outside.read_text() == "do not delete"


# ------------------------------------------------------------------------- 8: corrupt data is not published

def _rle(mask: np.ndarray) -> str:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()


def _damage_instance(build, name, k, change):
    path = build / "ins" / f"{name}.json"
    rec = json.loads(path.read_text())
    change(rec["instances"][k])
    path.write_text(json.dumps(rec))  # NaN is written as the JSON extension NaN, which json.load reads


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _jpeg_truncated(build, name):
    from PIL import Image

    png = build / "images" / f"{name}.png"
    Image.open(png).convert("RGB").save(build / "images" / f"{name}.jpg", quality=90)
    png.unlink()
    _truncate(build / "images" / f"{name}.jpg", 0.6)


DAMAGES = {
    "truncated_png": ("corrupt-image", "image", lambda b: _truncate(b / "images" / "00001.png")),
    "truncated_jpeg": ("corrupt-image", "image", lambda b: _jpeg_truncated(b, "00001")),
    "garbage_counts": ("corrupt-mask", "object", lambda b: _damage_instance(
        b, "00001", 0, lambda i: i["segmentation"].update(counts="zz!!not-rle"))),
    "counts_past_hw": ("corrupt-mask", "object", lambda b: _damage_instance(
        b, "00001", 0, lambda i: i["segmentation"].update(counts=_rle(np.ones((H + 7, W), bool))))),
    "nan_bbox": ("non-finite-coordinate", "object", lambda b: _damage_instance(
        b, "00001", 0, lambda i: i["bbox"].__setitem__(2, float("nan")))),
    "negative_box": ("degenerate-box", "object", lambda b: _damage_instance(
        b, "00001", 0, lambda i: i.update(bbox=[8.0, 8.0, 0.0, 0.0]))),
    "label_mismatch": ("label-mismatch", "object", lambda b: _damage_instance(
        b, "00001", 0, lambda i: i.update(label=i["label"] + 1))),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_corrupt_data_is_a_counted_skip_or_a_strict_error(sior_build, tmp_path, damage):
    kind, dropped, apply = DAMAGES[damage]
    b = tmp_path / "b"
    shutil.copytree(sior_build, b)
    apply(b)
    result = package([b], tmp_path / "hub", val_fraction=0.0, progress=False, stats=False)
    assert result.report.counts() == {kind: 1} and "00001" in result.report.skips[0].where
    assert dict(result.dropped) == {"images": dropped == "image", "objects": dropped == "object"}
    rows = {ex["file_name"]: ex for d in load_hub(tmp_path / "hub").values() for ex in d}
    if dropped == "image":
        assert "00001" not in rows and len(rows) == len(SIOR_ITEMS) - 1
    else:  # the image stays with its good object; ids have no hole
        assert rows["00001"]["objects"]["category"] == [get_class_table("sior").id_of("expressway-toll-station")]
        ids = sorted(i for ex in rows.values() for i in ex["objects"]["id"])
        assert ids == list(range(1, len(ids) + 1))
    readme = (tmp_path / "hub" / "README.md").read_text()
    assert f"Dropped while packaging: 1 {dropped} (counts by kind)" in readme and f"`{kind}`: 1" in readme
    with pytest.raises(SourceError, match=f"00001.*{kind}"):
        package([b], tmp_path / "strict", val_fraction=0.0, progress=False, strict=True, stats=False)
    assert not (tmp_path / "strict").exists()


def test_rle_counts_decode_like_pycocotools():
    rng = np.random.default_rng(0)
    for t in range(200):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        mask = rng.random((h, w)) < rng.random()
        if t % 3 == 0:  # long runs: multi-character counts and negative deltas
            mask = np.zeros((h, w), bool)
            mask[rng.integers(0, h):, : rng.integers(0, w)] = True
        expected = mask_runs(torch.from_numpy(mask)[None])[0]
        np.testing.assert_array_equal(decompress_counts(_rle(mask)), expected)
        np.testing.assert_array_equal(check_rle({"size": [h, w], "counts": _rle(mask).encode()}), expected)
    big = np.zeros((3000, 2000), bool)
    big[100:2900, 50:60] = True
    assert check_rle({"size": [3000, 2000], "counts": _rle(big)})[1::2].sum() == big.sum()
    good = _rle(big)
    for bad in ("", good[:-1] + "`", good[: len(good) // 2], good + good, "~~~", "o" * 40):
        with pytest.raises(ValueError):
            check_rle({"size": [3000, 2000], "counts": bad})


# ------------------------------------------------------------- 11: nothing to package says what was skipped

def test_nothing_to_package_counts_the_builds_skips(tmp_path, capsys):
    build = tmp_path / "empty_build"
    (build / "ins").mkdir(parents=True)
    problems = [{"kind": "corrupt-image", "where": f"JPEGImages/{i}.jpg", "message": "truncated", "skipped": True}
                for i in range(5)]
    problems.append({"kind": "degenerate-box-widened", "where": "x.xml", "message": "note", "skipped": False})
    layout.atomic_write(build / "build.json", layout.json_bytes({
        "subset": "sior", "format": "dior", "model": {"spec": "tiny-random", "random": True},
        "skipped": {"images": 5, "objects": 0},
        "problems": {"counts": {"corrupt-image": 5, "degenerate-box-widened": 1}, "skipped": 5, "problems": problems}}))
    message = "nothing to package: the build empty_build skipped 5 images (corrupt-image: 5)"
    with pytest.raises(PackagingError) as err:
        package([build], tmp_path / "hub", progress=False, stats=False)
    assert str(err.value) == message
    assert cli_main(["package", str(build), "--to", str(tmp_path / "hub")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "hub").exists()


# ------------------------------------------------------------------- 12: the card lists every skip

@pytest.fixture(scope="module")
def build_with_skips(tmp_path_factory):
    """A real `samrs build` (tiny random SAM) of a DIOR sample with a corrupt image and an unknown class."""
    from samrs_hf.sources.samples import write_dior_sample

    root = tmp_path_factory.mktemp("skips")
    src = write_dior_sample(root / "src")
    _truncate(src / "JPEGImages-trainval" / "00002.jpg", 0.4)
    for folder in ("Horizontal Bounding Boxes", "Oriented Bounding Boxes"):
        xml = src / "Annotations" / folder / "00001.xml"
        xml.write_text(xml.read_text().replace("<name>vehicle</name>", "<name>spaceship</name>", 1))
    assert cli_main(["build", "sior", "--source", str(src), "--out", str(root / "out"), "--model", "tiny-random",
                     "--no-progress"]) == 0
    return root / "out"


def test_card_lists_what_the_build_and_packaging_dropped(build_with_skips, tmp_path, capsys):
    report = layout.read_report(build_with_skips)
    assert report["skipped"]["images"] >= 1 and report["skipped"]["objects"] >= 1
    kinds = {}
    for p in report["problems"]["problems"]:
        if p["skipped"]:
            kinds[p["kind"]] = kinds.get(p["kind"], 0) + 1
    assert {"corrupt-image", "unknown-class"} <= set(kinds)
    b = tmp_path / "out"
    shutil.copytree(build_with_skips, b)
    name = min(p.stem for p in (b / "ins").glob("*.json"))
    _damage_instance(b, name, 0, lambda i: i["segmentation"].update(counts="!!"))

    assert cli_main(["package", str(b), "--to", str(tmp_path / "hub"), "--no-stats"]) == 0
    out = capsys.readouterr().out
    readme = (tmp_path / "hub" / "README.md").read_text()
    section = readme.split("## Skipped inputs")[1].split("## Features")[0]
    row = (f"| `out` | {report['skipped']['images']} | {report['skipped']['objects']} | "
           + ", ".join(f"`{k}`: {n}" for k, n in sorted(kinds.items())) + " |")
    assert row in section
    assert "Dropped while packaging: 1 object (counts by kind)" in section and "`corrupt-mask`: 1" in section
    assert "None" not in section
    assert str(tmp_path) not in readme  # messages name files by build folder, not by local path
    assert f"the build out had skipped {report['skipped']['images']} image" in out
    assert "packaging skipped 1 object (corrupt-mask: 1)" in out


def test_card_says_none_only_when_nothing_was_dropped(sior_build, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(sior_build, b)
    report = dict(layout.read_report(b), skipped={"images": 0, "objects": 0},
                  problems={"counts": {}, "skipped": 0, "problems": []})
    layout.atomic_write(b / "build.json", layout.json_bytes(report))
    package([b], tmp_path / "hub", progress=False, stats=False)
    assert "None: the build(s) and packaging dropped nothing." in (tmp_path / "hub" / "README.md").read_text()
    package([sior_build], tmp_path / "hub2", progress=False, stats=False)  # a build.json without counts
    assert "None: packaging dropped nothing." in (tmp_path / "hub2" / "README.md").read_text()


def test_checker_threads_change_nothing(sior_build, tmp_path):
    """Rows, object ids, problems and tallies come out in item order whatever the thread count."""
    from collections import Counter

    from samrs_hf.hub.packaging import rows_from_builds
    from samrs_hf.sources.records import Report

    b = tmp_path / "b"
    shutil.copytree(sior_build, b)
    DAMAGES["garbage_counts"][2](b)
    _truncate(b / "images" / "00003.png")
    runs = []
    for workers in (0, 3):
        report, dropped = Report(), Counter()
        rows = [(r.split, r.example["image_id"], r.example["objects"]["id"])
                for r in rows_from_builds([b], report, progress=False, dropped=dropped, workers=workers)]
        runs.append((rows, [str(p) for p in report.problems], dict(dropped)))
    assert runs[0] == runs[1] and runs[0][2] == {"images": 1, "objects": 1}
