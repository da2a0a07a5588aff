"""Prompt ablation (Table 1): exact Eq. 1 with an oracle at the engine boundary, then tiny-random end to end."""

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samrs_hf.analysis.ablation import (
    EMPTY_MASK,
    NO_MASK,
    PAPER_TABLE1,
    aggregate,
    group_of,
    parse_settings,
    run_ablation,
    table_csv,
    table_markdown,
)
from samrs_hf.cli import main
from samrs_hf.sam.engine import MaskResult
from samrs_hf.sources.imageio import open_rgb
from samrs_hf.sam.prompts import TABLE1_PROMPTS
from samrs_hf.sources.readers import open_source
from samrs_hf.sources.samples import write_hrsc2016_sample

TABLE1_ROWS = [  # the paper's Table 1, in its order: (row, mIoU_I, mIoU_P)
    ("CP", 16.14, 2.72), ("H-Box", 89.97, 79.40), ("H-Box-M", 40.54, 36.71), ("CP+H-Box", 86.67, 77.35),
    ("H-Box+H-Box-M", 74.21, 62.25), ("CP+H-Box-M", 24.54, 5.41), ("CP+H-Box+H-Box-M", 59.71, 49.30),
    ("R-Box-M", 65.54, 59.78), ("CP+R-Box-M", 26.49, 4.97), ("RH-Box", 88.85, 76.42), ("RH-Box-M", 34.63, 31.81),
    ("CP+RH-Box", 83.55, 72.67), ("RH-Box+RH-Box-M", 66.23, 52.75), ("CP+RH-Box-M", 23.71, 5.10),
    ("CP+RH-Box+RH-Box-M", 49.24, 39.03),
]

EXTRA_SHIP = """    <HRSC_Object>
      <Object_ID>99</Object_ID>
      <box_xmin>10</box_xmin><box_ymin>10</box_ymin><box_xmax>60</box_xmax><box_ymax>30</box_ymax>
      <mbox_cx>35</mbox_cx><mbox_cy>20</mbox_cy><mbox_w>50</mbox_w><mbox_h>20</mbox_h><mbox_ang>0</mbox_ang>
      <seg_color>9,9,9</seg_color>
    </HRSC_Object>
"""


def hrsc_set(tmp_path) -> Path:
    """The generated HRSC2016 sample plus a coloured ship whose colour is absent (empty GT mask)."""
    root = write_hrsc2016_sample(tmp_path / "hrsc")
    xml = root / "FullDataSet" / "Annotations" / "100000002.xml"
    xml.write_text(xml.read_text().replace("  </HRSC_Objects>", EXTRA_SHIP + "  </HRSC_Objects>"))
    return root


def independent_gt(root: Path, image_id: str) -> list[np.ndarray]:
    """GT masks of the coloured ships, straight from the segmentation PNG and the XML's colours."""
    import xml.etree.ElementTree as ET

    seg = np.asarray(Image.open(root / "FullDataSet" / "Segmentations" / f"{image_id}.png").convert("RGB"))
    out = []
    for node in ET.parse(root / "FullDataSet" / "Annotations" / f"{image_id}.xml").iter("HRSC_Object"):
        text = (node.findtext("seg_color") or "").strip()
        if text:
            m = np.all(seg == np.array([int(v) for v in text.split(",")], np.uint8), axis=-1)
            if m.any():
                out.append(m)
    return out


class Oracle:
    """Engine stand-in with SamLabeler's embed/decode: for setting k (Table 1 index) it returns the
    ground truth minus its first k pixels, so instance i scores exactly (n_i - k) / n_i."""

    def __init__(self, gt_by_image_hash):
        self.gt = gt_by_image_hash
        self.embedded = 0

    def embed(self, images):
        self.embedded += len(images)
        return [hashlib.sha1(np.ascontiguousarray(im).tobytes()).hexdigest() for im in images]

    def decode(self, embeddings, index, prompts):
        gts = self.gt[embeddings[index]]
        assert len(prompts) == len(gts), "the ablation must prompt exactly the ships with a GT mask"
        k = TABLE1_PROMPTS.index(prompts.name)
        masks = []
        for g in gts:
            m = g.copy().ravel()
            m[np.flatnonzero(m)[:k]] = False
            masks.append(m.reshape(g.shape))
        return MaskResult(np.stack(masks), np.ones(len(gts), np.float32))


def test_settings_and_paper_table_are_table1():
    assert [r[0] for r in TABLE1_ROWS] == list(TABLE1_PROMPTS) == list(parse_settings("all"))
    assert {k: v for k, *v in [(r[0], r[1], r[2]) for r in TABLE1_ROWS]} == {k: list(v) for k, v in PAPER_TABLE1.items()}
    assert parse_settings("h-box, RH-Box+CP") == ("H-Box", "CP+RH-Box")
    with pytest.raises(ValueError, match="twice"):
        parse_settings("H-Box,h-box")
    with pytest.raises(ValueError, match="invalid prompt"):
        parse_settings("R-Box")
    assert [group_of(n) for n in ("CP", "CP+H-Box-M", "CP+R-Box-M", "RH-Box+RH-Box-M")] == \
        ["Point", "H-Box", "R-Box", "RH-Box"]


def test_oracle_gives_exact_eq1_and_encodes_each_image_once(tmp_path):
    root = hrsc_set(tmp_path)
    source = open_source("hrsc2016", root)  # all splits: the trainval ships have no seg_color
    gts = independent_gt(root, "100000002")
    pixels = open_rgb(root / "FullDataSet" / "AllImages" / "100000002.bmp")
    oracle = Oracle({hashlib.sha1(pixels.tobytes()).hexdigest(): gts})
    records, images, exclusions = run_ablation(source, "hrsc2016", oracle, TABLE1_PROMPTS)
    assert images == 2 and oracle.embedded == 1  # the image without maskable ships is not encoded
    assert exclusions == {NO_MASK: 2, EMPTY_MASK: 1}
    result = aggregate(records, TABLE1_PROMPTS, images, exclusions)
    n = np.array([g.sum() for g in gts], dtype=np.float64)
    assert len(n) == 2 and result.instances == 2
    rows = result.rows()
    assert [r["prompt"] for r in rows] == list(TABLE1_PROMPTS)
    for k, row in enumerate(rows):
        assert row["instances"] == 2
        assert row["mIoU_I"] == round(100 * np.mean((n - k) / n), 2)
        assert row["mIoU_P"] == round(100 * (n - k).sum() / n.sum(), 2)
        assert (row["paper_mIoU_I"], row["paper_mIoU_P"]) == PAPER_TABLE1[row["prompt"]]
    assert rows[0]["mIoU_I"] == 100.0 and rows[14]["mIoU_I"] < 100.0
    # the markdown table has Table 1's 15 rows, in order, with the paper's numbers beside
    md = table_markdown(result).splitlines()
    body = [line for line in md if line.startswith("| ") and not line.startswith("| Group")]
    assert [line.split(" | ")[1] for line in body] == list(TABLE1_PROMPTS)
    assert "89.97" in body[1] and "79.40" in body[1]


def test_segmentation_size_mismatch_names_the_file(tmp_path):
    root = hrsc_set(tmp_path)
    seg = root / "FullDataSet" / "Segmentations" / "100000002.png"
    Image.open(seg).resize((320, 240)).save(seg)
    source = open_source("hrsc2016", root, splits=["test"])
    with pytest.raises(Exception, match=r"100000002\.png.*320x240"):
        run_ablation(source, "hrsc2016", Oracle({}), ["H-Box"])


def test_no_ground_truth_at_all_gives_nan_not_division_by_zero(tmp_path):
    root = write_hrsc2016_sample(tmp_path / "hrsc")
    source = open_source("hrsc2016", root, splits=["trainval"])
    records, images, exclusions = run_ablation(source, "hrsc2016", Oracle({}), ["H-Box"])
    result = aggregate(records, ["H-Box"], images, exclusions)
    row = result.rows()[0]
    assert images == 1 and row["instances"] == 0 and row["mIoU_I"] is None and row["mIoU_P"] is None
    assert "H-Box,H-Box,0,1,0,0,0,0,,,89.97,79.4,0\n" in table_csv(result)


def test_ablate_end_to_end_tiny_random(tmp_path):
    root = hrsc_set(tmp_path)
    out = tmp_path / "abl"
    assert main(["ablate", "--source", str(root), "--split", "test", "--model", "tiny-random", "--out", str(out),
                 "--prompts", "all"]) == 0
    rows = list(csv.DictReader(open(out / "table1.csv")))
    assert [r["prompt"] for r in rows] == list(TABLE1_PROMPTS)
    assert list(rows[0]) == ["group", "prompt", "CP", "H-Box", "H-Box-M", "R-Box-M", "RH-Box", "RH-Box-M",
                             "mIoU_I", "mIoU_P", "paper_mIoU_I", "paper_mIoU_P", "instances"]
    assert rows[3]["CP"] == "1" and rows[3]["H-Box"] == "1" and rows[3]["RH-Box"] == "0"
    for r in rows:
        assert r["instances"] == "2"
        assert 0.0 <= float(r["mIoU_I"]) <= 100.0 and 0.0 <= float(r["mIoU_P"]) <= 100.0
    data = json.loads((out / "table1.json").read_text())
    assert data["model"]["random"] is True and data["images"] == 1 and data["instances"] == 2
    assert data["excluded"] == {EMPTY_MASK: 1}
    assert "random weights" in (out / "table1.md").read_text()
    assert len((out / "instances.csv").read_text().splitlines()) == 1 + 15 * 2


def test_ablate_coco_source_with_polygons_and_rle(tmp_path):
    """COCO with polygon / RLE masks: mask quality of a model on your own data; crowd and mask-less left out."""
    from pycocotools import mask as mask_utils

    img = np.full((48, 64, 3), 90, np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    rle_mask = np.zeros((48, 64), np.uint8)
    rle_mask[30:40, 40:60] = 1
    rle = mask_utils.encode(np.asfortranarray(rle_mask))
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 10], "iscrowd": 0, "area": 200,
             "segmentation": [[4, 4, 24, 4, 24, 14, 4, 14]]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [40, 30, 20, 10], "iscrowd": 0, "area": 200,
             "segmentation": {"size": [48, 64], "counts": rle["counts"].decode()}},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [30, 5, 10, 10], "iscrowd": 0, "area": 100},
        ],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    source = open_source("coco", tmp_path / "coco.json", images_dir=tmp_path)
    gt_poly = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(coco["annotations"][0]["segmentation"], 48, 64)))
    oracle = Oracle({hashlib.sha1(img.tobytes()).hexdigest(): [gt_poly.astype(bool), rle_mask.astype(bool)]})
    records, images, exclusions = run_ablation(source, "coco", oracle, ["CP", "H-Box"])
    assert images == 1 and exclusions == {NO_MASK: 1}
    result = aggregate(records, ["CP", "H-Box"], images, exclusions)
    assert result.rows()[0]["mIoU_I"] == 100.0  # CP is index 0: the oracle returns the GT itself


def test_real_hrsc_annotation_with_empty_seg_color_is_counted_not_scored(real_fixtures):
    """mmrotate's HRSC sample: one ship whose <seg_color> is whitespace; its image is not shipped."""
    source = open_source("hrsc2016", real_fixtures / "hrsc2016", check_images=False)
    oracle = Oracle({})
    records, images, exclusions = run_ablation(source, "hrsc2016", oracle, TABLE1_PROMPTS)
    assert (records, images, exclusions, oracle.embedded) == ([], 1, {NO_MASK: 1}, 0)
    row = aggregate(records, TABLE1_PROMPTS, images, exclusions).rows()[1]
    assert row["prompt"] == "H-Box" and row["instances"] == 0 and row["mIoU_I"] is None


def test_ablate_wrong_split_fails_before_the_model_loads(tmp_path, monkeypatch, capsys):
    from samrs_hf.sam import loading as sam_loading

    def no_load(*a, **k):
        raise AssertionError("the SAM model was loaded before the split was checked")

    monkeypatch.setattr(sam_loading, "load_sam", no_load)
    root = hrsc_set(tmp_path)
    assert main(["ablate", "--source", str(root), "--split", "tset", "--model", "tiny-random",
                 "--out", str(tmp_path / "abl")]) == 2
    assert "split 'tset' not found" in capsys.readouterr().err
    assert not (tmp_path / "abl").exists()
