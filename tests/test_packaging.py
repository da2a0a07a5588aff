"""samrs package: build folders -> parquet + README, loaded back with datasets.load_dataset."""

import hashlib
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from samrs_hf.sources.classes import get_class_table
from samrs_hf.cli import main as cli_main
from samrs_hf.hub.features import decode_masks, image_id_of, objects_as_list, samrs_features
from samrs_hf.hub.packaging import PackagingError, package, parse_size
from samrs_hf.sources.records import SourceError
from samrs_hf.hub.splits import assign_split
from samrs_hf.analysis.stats import write_stats
from support_builds import SIOR_ITEMS, SOTA_ITEMS, H, W, load_hub, make_build


@pytest.fixture(scope="module")
def sota_build(tmp_path_factory):
    return make_build(tmp_path_factory.mktemp("b") / "sota_build", "sota", SOTA_ITEMS)


@pytest.fixture(scope="module")
def sior_build(tmp_path_factory):
    return make_build(tmp_path_factory.mktemp("b") / "sior_build", "sior", SIOR_ITEMS)


@pytest.fixture(scope="module")
def sota_hub(sota_build, tmp_path_factory):
    hub = tmp_path_factory.mktemp("hub") / "sota"
    result = package([sota_build], hub, val_fraction=0.4, seed=3, progress=False, stats=write_stats)
    return hub, result


def test_parse_size():
    assert parse_size("500MB") == 500_000_000
    assert parse_size("64MiB") == 64 * 2**20
    assert parse_size("1.5GB") == 1_500_000_000
    assert parse_size(1234) == 1234
    with pytest.raises(ValueError):
        parse_size("lots")


def test_split_assignment_is_stable_and_groups_sources():
    assert assign_split("P0001", "train", val_fraction=0.05, seed=0) == assign_split("P0001", None, seed=0)
    assert assign_split("anything", "test") == "test"
    assert assign_split("x", None, val_fraction=1.0) == "validation"
    assert assign_split("x", None, val_fraction=0.0) == "train"
    shares = [assign_split(f"img{i}", None, val_fraction=0.05, seed=0) == "validation" for i in range(4000)]
    assert 0.03 < np.mean(shares) < 0.07


def test_package_loads_with_exact_features(sota_hub, sota_build):
    hub, result = sota_hub
    ds = load_hub(hub)
    assert set(ds) == {"train", "validation"}
    assert ds["train"].features == samrs_features("sota")
    names = ds["train"].features["objects"]["category"].feature.names
    assert names == list(get_class_table("sota").names)
    assert sum(len(d) for d in ds.values()) == len(SOTA_ITEMS) == result.num_rows
    files = sorted(p.name for p in (hub / "data").iterdir())
    assert files == [f"{s}-00000-of-00001.parquet" for s in ("train", "validation")]
    readme = (hub / "README.md").read_text()
    assert readme.startswith("---\n") and "RANDOM MODEL WEIGHTS" in readme
    assert "image-segmentation" in readme and "object-detection" in readme and "wang2023samrs" in readme
    for i in range(18):
        assert (hub / "figures" / "palette" / f"{i:02d}.png").is_file()


def test_rows_equal_the_build(sota_hub, sota_build):
    hub, _ = sota_hub
    ds = load_hub(hub)
    ids = []
    seen = {}
    for split, d in ds.items():
        for ex in d:
            name = ex["file_name"]
            assert ex["image_id"] == image_id_of(name)
            seen[name] = split
            record = json.loads((sota_build / "ins" / f"{name}.json").read_text())
            gray = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(sota_build / "gray" / f"{name}.png"))
            assert ex["semantic"].mode == "L"
            np.testing.assert_array_equal(np.asarray(ex["semantic"]), gray)
            assert (ex["width"], ex["height"], ex["subset"]) == (W, H, "sota")
            assert ex["source_image"] == record["source_image"]
            assert ex["image"].tobytes() == __import__("PIL.Image", fromlist=["Image"]).open(
                sota_build / "images" / f"{name}.png").tobytes()
            masks = decode_masks(ex)
            expected = mask_utils.decode([{"size": i["segmentation"]["size"], "counts": i["segmentation"]["counts"].encode()}
                                          for i in record["instances"]]).transpose(2, 0, 1).astype(bool)
            np.testing.assert_array_equal(masks, expected)
            for o, inst in zip(objects_as_list(ex["objects"]), record["instances"]):
                x0, y0, x1, y1 = inst["bbox"]
                assert o["bbox"] == [x0, y0, x1 - x0, y1 - y0]
                assert o["category"] == get_class_table("sota").id_of(inst["category"])
                assert o["area"] == inst["area"] and o["truncated"] == inst["truncated"]
                assert o["score"] == pytest.approx(inst["score"])
                assert o["rbox"] == (None if inst["rbox"] is None else [float(v) for v in inst["rbox"]])
                ids.append(o["id"])
    assert len(seen) == len(SOTA_ITEMS)
    assert sorted(ids) == list(range(1, len(ids) + 1))  # unique in the dataset, no holes
    # No source image is split across train/validation.
    by_source = {}
    for name, split in seen.items():
        by_source.setdefault(name.split("__")[0], set()).add(split)
    assert all(len(s) == 1 for s in by_source.values())
    assert {s for v in by_source.values() for s in v} == {"train", "validation"}


def test_dior_test_images_only_in_test(sior_build, tmp_path):
    result = package([sior_build], tmp_path / "hub", val_fraction=0.0, progress=False, stats=False)
    ds = load_hub(tmp_path / "hub")
    assert sorted(ds["test"]["file_name"]) == ["11726", "11727"]
    assert sorted(ds["train"]["file_name"]) == ["00001", "00002", "00003"]
    assert "validation" not in ds and result.splits == {"train": 3, "test": 2}
    ex = [e for e in ds["train"] if e["file_name"] == "00001"][0]
    names = ds["train"].features["objects"]["category"].feature.names
    assert [names[c] for c in ex["objects"]["category"]] == ["airplane", "expressway-toll-station"]
    assert ds["test"].filter(lambda e: e["file_name"] == "11727")[0]["objects"]["id"] == []


def test_deterministic_bytes(sota_build, tmp_path):
    def digest(root):
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    # Same input, same output folder (stats.json records the folder it describes): same bytes.
    package([sota_build], tmp_path / "a", val_fraction=0.4, seed=3, progress=False, shard_size="2KB")
    da = digest(tmp_path / "a")
    package([sota_build], tmp_path / "a", val_fraction=0.4, seed=3, progress=False, shard_size="2KB")
    assert digest(tmp_path / "a") == da
    shards = [k for k in da if k.startswith("data/train-")]
    assert len(shards) > 1 and all(k.endswith(f"-of-{len(shards):05d}.parquet") for k in shards)
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(tmp_path / "a" / shards[0]).metadata
    assert b"huggingface" in meta.metadata


def test_repackaging_with_other_splits_into_the_same_folder(sota_build, tmp_path):
    """The statistics read the folder through its README: a stale README from an earlier package
    (other splits) must neither break packaging nor make the statistics miss a split."""
    hub = tmp_path / "hub"
    package([sota_build], hub, val_fraction=0.0, progress=False, stats=False)  # README: train only
    result = package([sota_build], hub, val_fraction=0.4, seed=3, progress=False, stats=write_stats)
    assert set(result.splits) == {"train", "validation"}
    stats = json.loads((hub / "figures" / "stats" / "stats.json").read_text())
    assert stats["images_per_split"] == result.splits and stats["table2"]["images"] == len(SOTA_ITEMS)
    package([sota_build], hub, val_fraction=0.0, progress=False, stats=write_stats)  # README listed a validation split
    assert {s: len(d) for s, d in load_hub(hub).items()} == {"train": len(SOTA_ITEMS)}
    stats = json.loads((hub / "figures" / "stats" / "stats.json").read_text())
    assert stats["images_per_split"] == {"train": len(SOTA_ITEMS)}


def test_cli_package_and_mixed_subsets(sota_build, sior_build, tmp_path, capsys):
    assert cli_main(["package", str(sior_build), "--to", str(tmp_path / "h"), "--name", "sior-mini",
                     "--val-fraction", "0.5", "--seed", "1", "--shard-size", "1MB"]) == 0
    out = capsys.readouterr().out
    assert "5 images" in out and "test: 2" in out
    assert "SAMRS sior-mini" in (tmp_path / "h" / "README.md").read_text()
    assert cli_main(["package", str(sior_build), str(sota_build), "--to", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "sota_build" in err and "cannot be packaged" in err
    assert not (tmp_path / "x" / "data").exists()


def _copy_build(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage, kind, dropped", [
    ("missing_gray", "missing-annotation", "image"),
    ("corrupt_gray", "corrupt-image", "image"),
    ("corrupt_ins", "garbled-annotation", "image"),
    ("rle_size", "size-mismatch", "object"),
    ("unknown_class", "unknown-class", "object"),
    ("orphan_gray", "missing-annotation", "image"),
    ("garbled_values", "garbled-annotation", "object"),
])
def test_bad_inputs_are_counted_or_fatal(sior_build, tmp_path, damage, kind, dropped):
    """A broken image drops its row; a broken instance drops that object only (the row stays)."""
    b = _copy_build(sior_build, tmp_path / "b")
    name = "00002"
    if damage == "missing_gray":
        (b / "gray" / f"{name}.png").unlink()
    elif damage == "corrupt_gray":
        data = (b / "gray" / f"{name}.png").read_bytes()
        (b / "gray" / f"{name}.png").write_bytes(data[:-20])
    elif damage == "corrupt_ins":
        (b / "ins" / f"{name}.json").write_text("{not json")
    elif damage == "orphan_gray":
        (b / "ins" / f"{name}.json").unlink()
    else:
        rec = json.loads((b / "ins" / f"{name}.json").read_text())
        if damage == "rle_size":
            rec["instances"][0]["segmentation"]["size"] = [H + 1, W]
        elif damage == "garbled_values":  # values the instance checks pass but the row cannot hold
            rec["instances"][0]["area"] = "big"
        else:
            rec["instances"][0]["category"] = "spaceship"
        (b / "ins" / f"{name}.json").write_text(json.dumps(rec))
    result = package([b], tmp_path / "hub", val_fraction=0.0, progress=False, stats=False)
    assert result.num_rows == len(SIOR_ITEMS) - (dropped == "image")
    assert dict(result.dropped) == {"images": dropped == "image", "objects": dropped == "object"}
    if dropped == "object":  # the row stays, without that object
        ex = next(e for e in load_hub(tmp_path / "hub")["train"] if e["file_name"] == name)
        assert len(ex["objects"]["id"]) == len(SIOR_ITEMS[1][3]) - 1
    assert result.report.counts() == {kind: 1}
    assert name in result.report.skips[0].where
    readme = (tmp_path / "hub" / "README.md").read_text()
    assert f"Dropped while packaging: 1 {dropped} (counts by kind)" in readme and f"`{kind}`: 1" in readme
    # --strict: the same problem is an error naming the file.
    with pytest.raises(SourceError, match=name):
        package([b], tmp_path / "hub2", val_fraction=0.0, progress=False, strict=True, stats=False)


def test_same_image_in_two_builds_is_an_error(sior_build, tmp_path):
    with pytest.raises(PackagingError, match="00001.*also in"):
        package([sior_build, sior_build], tmp_path / "hub", progress=False, stats=False)
    assert not (tmp_path / "hub" / "data").exists()


def test_not_a_build(tmp_path):
    with pytest.raises(PackagingError, match="not a samrs build"):
        package([tmp_path], tmp_path / "hub", progress=False)


@pytest.fixture(scope="module")
def tiny_random_build(tmp_path_factory):
    """A real `samrs build` (tiny random SAM) of the DIOR sample, with --pkl."""
    from samrs_hf.sources.samples import write_dior_sample

    root = tmp_path_factory.mktemp("e2e")
    src = write_dior_sample(root / "src")
    assert cli_main(["build", "sior", "--source", str(src), "--out", str(root / "out"), "--model", "tiny-random",
                     "--pkl", "--no-progress"]) == 0
    return root / "out"


def test_end_to_end_build_package_load(tiny_random_build, tmp_path):
    from PIL import Image

    from samrs_hf.hub.release import convert_release

    build = tiny_random_build
    result = package([build], tmp_path / "hub", progress=False)
    ds = load_hub(tmp_path / "hub")
    records = {p.stem: json.loads(p.read_text()) for p in (build / "ins").glob("*.json")}
    assert sum(len(d) for d in ds.values()) == len(records) == result.num_rows
    assert sorted(ds["test"]["file_name"]) == sorted(n for n, r in records.items() if r["split"] == "test")
    assert all(records[n]["split"] != "test" for n in ds["train"]["file_name"])
    assert ds["train"].features == samrs_features("sior")
    for d in ds.values():
        for ex in d:
            rec = records[ex["file_name"]]
            np.testing.assert_array_equal(np.asarray(ex["semantic"]), np.asarray(Image.open(build / "gray" / f"{ex['file_name']}.png")))
            rles = [{"size": i["segmentation"]["size"], "counts": i["segmentation"]["counts"].encode()} for i in rec["instances"]]
            np.testing.assert_array_equal(decode_masks(ex), mask_utils.decode(rles).transpose(2, 0, 1).astype(bool))
            assert ex["objects"]["score"] == pytest.approx([i["score"] for i in rec["instances"]])
    assert "RANDOM MODEL WEIGHTS" in (tmp_path / "hub" / "README.md").read_text()
    # The --pkl form of the same build is a release layout: convert-release gives the same data.
    conv = convert_release(build, "sior", tmp_path / "conv", progress=False, stats=False)
    assert conv.splits == result.splits
    assert "RANDOM MODEL WEIGHTS" in (tmp_path / "conv" / "README.md").read_text()  # not "official ViT-H"
    converted = load_hub(tmp_path / "conv")
    for split, d in converted.items():
        assert d.features == samrs_features("sior")
        for a, b in zip(d, ds[split]):
            assert a["image_id"] == b["image_id"]
            np.testing.assert_array_equal(decode_masks(a), decode_masks(b))
            assert a["objects"]["bbox"] == b["objects"]["bbox"]
