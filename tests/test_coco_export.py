"""samrs export-coco: COCO instances JSON that round-trips through pycocotools."""

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from samrs_hf.cli import main as cli_main
from samrs_hf.hub.coco_export import export_coco
from samrs_hf.hub.features import objects_as_list
from samrs_hf.hub.packaging import package
from samrs_hf.sources.records import SourceError
from support_builds import SIOR_ITEMS, SOTA_ITEMS, load_hub, make_build


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    build = make_build(root / "build", "sota", SOTA_ITEMS)
    package([build], root / "hub", val_fraction=0.4, seed=3, progress=False, stats=False)
    return build, root / "hub"


def test_hub_export_round_trips(built, tmp_path):
    build, hub = built
    out = tmp_path / "instances_train.json"
    counts = export_coco(hub, "train", out)
    ds = load_hub(hub)["train"]
    assert counts["images"] == len(ds)
    coco = COCO(str(out))
    names = ds.features["objects"]["category"].feature.names
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == names
    ann_ids = [a["id"] for a in coco.dataset["annotations"]]
    assert len(ann_ids) == len(set(ann_ids)) == counts["annotations"] > len(ds)
    by_name = {img["image_name"]: img["id"] for img in coco.dataset["images"]}
    for ex in ds:
        img_id = by_name[ex["file_name"]]
        assert img_id == ex["image_id"]  # the dataset's int64 image_id
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
        assert [a["id"] for a in anns] == ex["objects"]["id"]  # exactly this image's objects
        for a, o in zip(anns, objects_as_list(ex["objects"])):
            assert a["bbox"] == o["bbox"] and a["category_id"] == o["category"] and a["iscrowd"] == 0
            assert a["area"] == o["area"]
            m = coco.annToMask(a)
            assert m.shape == (ex["height"], ex["width"])
            expected = mask_utils.decode({"size": o["segmentation"]["size"], "counts": o["segmentation"]["counts"].encode()})
            np.testing.assert_array_equal(m, expected)


def test_build_export_matches_hub_export(built, tmp_path):
    build, hub = built
    export_coco(hub, "validation", tmp_path / "a.json")
    assert cli_main(["export-coco", str(build), "--split", "validation", "--out", str(tmp_path / "b.json"),
                     "--val-fraction", "0.4", "--seed", "3"]) == 0
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert a["annotations"] == b["annotations"] and a["categories"] == b["categories"]
    assert [i["file_name"] for i in b["images"]] == [f"images/{i['file_name']}" for i in a["images"]]


def test_unknown_split(built, tmp_path):
    with pytest.raises(SourceError, match="no split 'test'"):
        export_coco(built[1], "test", tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def test_build_export_of_a_split_the_build_lacks_is_an_error(built, tmp_path):
    """As for a packaged folder: a misspelt or absent split is an error, not an empty COCO file."""
    build, _ = built
    for split in ("val", "test"):
        with pytest.raises(SourceError, match=f"no split '{split}' \\(has: train, validation\\)"):
            export_coco(build, split, tmp_path / "x.json", val_fraction=0.4, seed=3)
    assert cli_main(["export-coco", str(build), "--split", "val", "--out", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()


def test_parquet_folder_that_is_not_samrs_says_so(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "other" / "data").mkdir(parents=True)
    pq.write_table(pa.table({"text": ["a", "b"]}), tmp_path / "other" / "data" / "train-00000-of-00001.parquet")
    assert cli_main(["export-coco", str(tmp_path / "other"), "--out", str(tmp_path / "o.json")]) == 2
    assert "not a SAMRS dataset" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_fractional_boxes_are_written_short_and_the_same_from_build_and_hub(tmp_path):
    """Parquet holds float32 boxes: the export writes their shortest form (151.3, not
    151.3000030517578), as the build export does, so both files are the same."""
    from samrs_hf.build import layout

    build = make_build(tmp_path / "build", "sior", SIOR_ITEMS[:1])
    ins = build / "ins" / "00001.json"
    record = json.loads(ins.read_text())
    record["instances"][0]["bbox"] = [0.1, 2.2, 151.4, 9.35]
    layout.atomic_write(ins, layout.json_bytes(record))
    package([build], tmp_path / "hub", val_fraction=0.0, seed=0, progress=False, stats=False)
    export_coco(tmp_path / "hub", "train", tmp_path / "a.json")
    export_coco(build, "train", tmp_path / "b.json", val_fraction=0.0, seed=0)
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert a["annotations"] == b["annotations"]
    assert a["annotations"][0]["bbox"] == [0.1, 2.2, 151.3, 7.15]
    assert a["annotations"][1]["bbox"] == [10.0, 10.0, 20.0, 10.0]
    assert "151.3," in (tmp_path / "a.json").read_text()
    COCO(str(tmp_path / "a.json"))  # still valid COCO
