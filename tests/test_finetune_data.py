"""Potsdam / iSAID readers on generated files in the release layouts, crops, fractions, metrics, fine-tuning."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samrs_hf.sources.records import Report, SourceError
from samrs_hf.sep.finetune_data import (ISAID_COLOURS, POTSDAM_CLASSES, CropDataset, axis_starts, isaid_tiles,
                                        load_task, plan_crops, potsdam_tiles, read_label, select_fraction, windows)

REPO = Path(__file__).resolve().parents[1]
WHITE, BLUE, CYAN, GREEN, YELLOW, RED, BLACK = ((255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0),
                                                 (255, 255, 0), (255, 0, 0), (0, 0, 0))


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def potsdam_label(w, h):
    lab = np.zeros((h, w, 3), np.uint8)
    lab[:] = WHITE
    lab[:, : w // 4] = BLUE
    lab[: h // 3, w // 4: w // 2] = CYAN
    lab[h // 3:, w // 4: w // 2] = GREEN
    lab[:10, -10:] = YELLOW
    lab[-10:, -10:] = RED          # clutter -> ignored
    lab[h // 2, :] = BLACK          # eroded boundary -> ignored
    lab[0, 0] = (12, 34, 56)        # not an ISPRS colour -> ignored and noted
    return lab


@pytest.fixture(scope="module")
def potsdam(tmp_path_factory):
    root = tmp_path_factory.mktemp("potsdam")
    (root / "2_Ortho_RGB").mkdir()
    (root / "5_Labels_all").mkdir()
    (root / "5_Labels_all_noBoundary").mkdir()
    rng = np.random.default_rng(0)
    for tile, (w, h) in {"2_10": (700, 600), "2_11": (520, 512), "2_12": (600, 600), "2_13": (512, 512)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(root / "2_Ortho_RGB" / f"top_potsdam_{tile}_RGB.tif")
    for tile, (w, h) in {"2_10": (700, 600), "2_13": (512, 512)}.items():
        Image.fromarray(potsdam_label(w, h)).save(root / "5_Labels_all" / f"top_potsdam_{tile}_label.tif")
    Image.fromarray(potsdam_label(520, 512)).save(
        root / "5_Labels_all_noBoundary" / "top_potsdam_2_11_label_noBoundary.tif")
    # 2_12 has no label at all -> counted skip
    return root


@pytest.fixture(scope="module")
def isaid(tmp_path_factory):
    root = tmp_path_factory.mktemp("isaid")
    palette = list(ISAID_COLOURS)
    rng = np.random.default_rng(1)
    for split, name, (w, h) in (("train", "P0001", (1000, 950)), ("val", "P0002", (500, 400))):
        (root / split / "images").mkdir(parents=True)
        (root / split / "Semantic_masks" / "images").mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(root / split / "images" / f"{name}.png")
        lab = np.zeros((h, w, 3), np.uint8)  # background
        lab[:100, :100] = palette[0]          # ship
        lab[100:200, :100] = palette[14]      # harbor
        Image.fromarray(lab).save(root / split / "Semantic_masks" / "images" / f"{name}_instance_color_RGB.png")
    return root


def test_window_grid_matches_paper_counts():
    # Potsdam 6000x6000, 512/320: 19 x 19 = 361 crops per tile -> 24 tiles = 8,664 (App. A.6).
    assert len(axis_starts(6000, 512, 320)) == 19 and axis_starts(6000, 512, 320)[-1] == 5488
    assert 24 * len(windows(6000, 6000, 512, 320)) == 8664 and 14 * len(windows(6000, 6000, 512, 320)) == 5054
    assert axis_starts(1000, 896, 512) == [0, 104]
    assert axis_starts(500, 896, 512) == [0]


def test_potsdam_reader_layout_labels_and_skips(potsdam):
    report = Report()
    tiles = potsdam_tiles(potsdam, "train", report)
    assert [t.name for t in tiles] == ["2_10", "2_11"]
    assert tiles[1].label_path.name == "top_potsdam_2_11_label_noBoundary.tif"
    assert report.counts() == {"missing-annotation": 1} and "2_12" in report.skips[0].where
    assert [t.name for t in potsdam_tiles(potsdam, "test")] == ["2_13"]

    ids = read_label("potsdam", tiles[0].label_path, report)
    assert ids.shape == (600, 700) and ids.dtype == np.uint8
    assert ids[300 + 1, 0] == POTSDAM_CLASSES.index("building")
    assert ids[10, 200] == POTSDAM_CLASSES.index("low_vegetation")
    assert ids[500, 200] == POTSDAM_CLASSES.index("tree")
    assert ids[5, 695] == POTSDAM_CLASSES.index("car")
    assert ids[400, 400] == POTSDAM_CLASSES.index("impervious_surface")
    assert ids[595, 695] == 255 and ids[300, 400] == 255 and ids[0, 0] == 255  # clutter, boundary, unknown
    assert report.counts()["unknown-label-colour"] == 1

    crops = plan_crops("potsdam", tiles)
    assert [c.box for c in crops if c.tile.name == "2_10"] == [(0, 0, 512, 512), (188, 0, 700, 512),
                                                                (0, 88, 512, 600), (188, 88, 700, 600)]
    assert [c.box for c in crops if c.tile.name == "2_11"] == [(0, 0, 512, 512), (8, 0, 520, 512)]
    with pytest.raises(SourceError, match="no Potsdam train tiles"):
        potsdam_tiles(potsdam / "2_Ortho_RGB", "train")


def test_isaid_devkit_and_mmseg_layouts(isaid, tmp_path):
    tiles = isaid_tiles(isaid, "train")
    assert [t.name for t in tiles] == ["P0001"]
    ids = read_label("isaid", tiles[0].label_path, Report())
    assert ids[50, 50] == 0 and ids[150, 50] == 14 and ids[500, 500] == 255  # ship, harbor, background
    crops = plan_crops("isaid", tiles)
    assert [c.box for c in crops] == [(0, 0, 896, 896), (104, 0, 1000, 896), (0, 54, 896, 950), (104, 54, 1000, 950)]

    pairs, names = load_task("isaid", isaid, "val", tmp_path / "cache")
    assert len(names) == 15 and len(pairs) == 1  # a 500x400 image: one padded 896 crop
    img, lab = np.asarray(Image.open(pairs[0][0])), np.asarray(Image.open(pairs[0][1]))
    assert img.shape == (896, 896, 3) and lab.shape == (896, 896)
    assert (lab[400:, :] == 255).all() and (img[400:, :] == 0).all() and lab[50, 50] == 0

    conv = tmp_path / "conv"
    (conv / "img_dir" / "val").mkdir(parents=True)
    (conv / "ann_dir" / "val").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(conv / "img_dir" / "val" / "P9_0_8_0_8.png")
    Image.fromarray(np.array([[0, 1, 15, 16]] * 8, np.uint8).repeat(2, 1), mode="L").save(
        conv / "ann_dir" / "val" / "P9_0_8_0_8_instance_color_RGB.png")
    t = isaid_tiles(conv, "val")
    assert read_label("isaid", t[0].label_path, Report())[0, ::2].tolist() == [255, 0, 14, 255]


def test_train_fraction_is_deterministic(potsdam):
    crops = plan_crops("potsdam", potsdam_tiles(potsdam, "train"))  # 6 crops
    half = select_fraction(crops, 0.5, seed=0)
    assert len(half) == 3 and half == select_fraction(crops, 0.5, seed=0)
    assert len(select_fraction(crops, 0.01)) == 1
    assert select_fraction(crops, None) == crops
    with pytest.raises(ValueError):
        select_fraction(crops, -0.1)
    assert select_fraction(crops, 1.0) == crops
    with pytest.raises(ValueError, match=r"\(0, 1\]"):  # "--train-fraction 5" meant 5 %, not all crops
        select_fraction(crops, 5)


def test_metrics_on_hand_computed_confusion_matrix():
    from samrs_hf.sep.evaluation import confusion_for

    class Fixed(torch.nn.Module):
        """Predicts classes [0, 0, 1, 1] for a 1x4 image."""

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, pixel_values):
            logits = torch.tensor([[[[1.0, 1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0, 1.0]]]])
            return type("Out", (), {"logits": logits})

    labels = torch.tensor([[[0, 1, 1, 255]]])
    cm = confusion_for(Fixed(), [(torch.zeros(1, 3, 1, 4), labels)], 2)
    assert cm.tolist() == [[1, 0], [1, 1]]  # rows truth: 0->0; 1->0, 1->1; the ignored pixel is left out
    from samrs_hf.analysis.metrics import scores_from_confusion

    s = scores_from_confusion(cm, ["a", "b"])
    assert s["OA"] == pytest.approx(2 / 3) and s["IoU"] == {"a": 0.5, "b": 0.5}
    assert s["mF1"] == pytest.approx((2 / 3 + 2 / 3) / 2)


def test_finetune_builder_from_sep_on_potsdam(potsdam, tmp_path):
    from samrs_hf.sep import SEPConfig, SEPForSemanticSegmentation

    SEPForSemanticSegmentation(SEPConfig(hidden_size=16)).save_pretrained(tmp_path / "sep")
    spec = importlib.util.spec_from_file_location("finetune", REPO / "builders" / "finetune.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    out = tmp_path / "ft"
    assert builder.main(["--task", "potsdam", "--root", str(potsdam), "--init", str(tmp_path / "sep"),
                         "--output-dir", str(out), "--max-steps", "2", "--batch-size", "2", "--crop-size", "64",
                         "--num-workers", "0", "--train-fraction", "0.5", "--log-every", "0"]) == 0
    result = json.loads((out / "finetune_results.json").read_text())
    assert [h["step"] for h in result["history"]] == [2]  # --log-every 0: the last step only
    assert result["init_kind"] == "sep" and result["train_crops"] == 3 and result["eval_crops"] == 1
    assert set(result["scores"]) >= {"OA", "mF1", "mIoU", "IoU", "F1"}
    assert list(result["scores"]["IoU"]) == list(POTSDAM_CLASSES)
    assert result["weight_decay"] == 1e-4  # Table 8 ResNet fine-tuning weight decay
    from transformers import UperNetForSemanticSegmentation

    assert UperNetForSemanticSegmentation.from_pretrained(out).config.num_labels == 5
    assert builder.main(["--task", "potsdam", "--root", str(tmp_path), "--init", str(tmp_path / "sep"),
                         "--output-dir", str(out)]) == 2


def test_finetune_backbone_preset_init_makes_no_hub_lookup(monkeypatch):
    # `--init tiny-resnet` / `--init resnet50` name backbones: asking the Hub whether "tiny-resnet"
    # is an SEP repo stalls offline on retries and looks up a repo that does not exist.
    from transformers import AutoConfig

    from samrs_hf.sep.finetune import finetune_model

    looked_up = []

    def offline(cls, name, *args, **kwargs):
        looked_up.append(name)
        raise OSError(f"no network for {name}")

    monkeypatch.setattr(AutoConfig, "from_pretrained", classmethod(offline))
    model, kind = finetune_model("tiny-resnet", list(POTSDAM_CLASSES))
    assert kind == "backbone" and model.config.num_labels == 5 and looked_up == []


def test_finetune_init_that_is_no_sep_model_nor_backbone_says_what_to_pass(tmp_path, monkeypatch):
    from transformers import AutoConfig

    from samrs_hf.sep import SEPConfig, SEPForSemanticSegmentation
    from samrs_hf.sep.finetune import finetune_model

    # An exported (or fine-tuned) UperNet: neither an SEP model nor a backbone.
    SEPForSemanticSegmentation(SEPConfig(hidden_size=8)).export("sota", tmp_path / "upernet")
    with pytest.raises(ValueError, match=r"upernet.* is a 'upernet' checkpoint, not a backbone nor an SEP "
                                         r"model.*SEP model it came from") as err:
        finetune_model(str(tmp_path / "upernet"), list(POTSDAM_CLASSES))
    assert "AutoBackbone" not in str(err.value)

    # An SEP Hub id, offline and not cached: the hint names finetune.py's own option.
    def offline(cls, name, *args, **kwargs):
        raise OSError(f"no network for {name}")

    monkeypatch.setattr(AutoConfig, "from_pretrained", classmethod(offline))
    with pytest.raises(ValueError, match=r"'org/sep-r50' .*not available") as err:
        finetune_model("org/sep-r50", list(POTSDAM_CLASSES))
    assert "--init tiny-resnet" in str(err.value) and "--backbone" not in str(err.value)


def test_crop_dataset_train_and_eval_tensors(isaid, tmp_path):
    pairs, _ = load_task("isaid", isaid, "val", tmp_path / "cache")
    ev = CropDataset(pairs, 896, (0, 0, 0), (1, 1, 1), train=False)
    x, y = ev[0]
    assert x.shape == (3, 896, 896) and y.shape == (896, 896) and int(y[50, 50]) == 0
    tr = CropDataset(pairs, 128, (0, 0, 0), (1, 1, 1), train=True)
    a, b = tr[(0, 0, 3, 1)], tr[(0, 0, 3, 1)]
    assert a[0].shape == (3, 128, 128) and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
