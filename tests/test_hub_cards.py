"""Hub fit (#18): dataset and model cards the Hub reads, export-sep, export-coco --images-dir, pictures that
say what they show, and the install extras."""

import configparser
import contextlib
import io
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from PIL import Image

import samrs_hf
from samrs_hf.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo (tiny random SAM) and a copy of its build marked as made with real weights, packaged."""
    from samrs_hf.analysis.stats import write_stats
    from samrs_hf.demo import run_demo
    from samrs_hf.hub.packaging import package

    root = tmp_path_factory.mktemp("cards")
    with contextlib.redirect_stdout(io.StringIO()):
        run_demo(root / "demo", model="tiny-random", n_overlays=1, progress=False)
    real = root / "real-build"
    shutil.copytree(root / "demo" / "build", real)
    report = json.loads((real / "build.json").read_text())
    report["model"] = {**report["model"], "spec": "facebook/sam-vit-huge", "random": False}
    (real / "build.json").write_text(json.dumps(report))
    package([real], root / "real-hub", name="sior", progress=False, stats=write_stats)
    return SimpleNamespace(hub=root / "demo" / "hub", build=root / "demo" / "build", real_build=real,
                           real_hub=root / "real-hub")


def _front_matter(path: Path) -> str:
    text = path.read_text()
    assert text.startswith("---\n")
    return text[4:text.index("\n---\n", 4) + 1]


# -- dataset card --------------------------------------------------------------------------------------------
def test_dataset_card_has_the_metadata_the_hub_uses(demo):
    meta = yaml.safe_load(_front_matter(demo.hub / "README.md"))
    assert meta["license"] == "other" and meta["license_name"] == "dior-terms"
    assert meta["license_link"].startswith("https://")
    assert meta["annotations_creators"] == ["machine-generated"]
    assert meta["source_datasets"] == ["extended|other-dior"]
    assert meta["task_categories"] == ["image-segmentation", "object-detection"]
    assert {"semantic-segmentation", "instance-segmentation"} <= set(meta["task_ids"])
    assert meta["pretty_name"] == "SAMRS sior" and meta["size_categories"] == ["n<1K"]
    assert "arxiv:2305.02034" in meta["tags"]
    body = (demo.hub / "README.md").read_text()
    assert "https://arxiv.org/abs/2305.02034" in body and meta["license_link"] in body


def test_dataset_card_yaml_round_trips_through_huggingface_hub(demo):
    from huggingface_hub import DatasetCard, DatasetCardData

    header = _front_matter(demo.hub / "README.md")
    meta = yaml.safe_load(header)
    data = DatasetCardData(**meta)
    assert data.to_dict() == meta
    assert data.to_yaml() + "\n" == header  # the same bytes: nothing lost or reordered
    assert DatasetCard.load(demo.hub / "README.md").data.to_dict() == meta


def test_random_weights_tag_only_on_random_builds(demo):
    from samrs_hf.hub.reader import open_folder

    assert "random-weights" in yaml.safe_load(_front_matter(demo.hub / "README.md"))["tags"]
    assert "random-weights" not in yaml.safe_load(_front_matter(demo.real_hub / "README.md"))["tags"]
    assert samrs_hf.load(demo.hub).random_weights is True
    assert samrs_hf.load(demo.real_hub)["train"].random_weights is False
    assert open_folder(demo.build).random_weights and open_folder(demo.hub).random_weights
    assert not open_folder(demo.real_build).random_weights and not open_folder(demo.real_hub).random_weights


# -- pictures ------------------------------------------------------------------------------------------------
def _texts(fig, gid):
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_gid() == gid and t.get_text()]


def _first_row(path):
    from samrs_hf.hub.reader import open_folder

    folder = open_folder(path)
    return folder, next(iter(folder.rows("train")))


def test_overlay_panels_have_titles_and_random_builds_a_mark(demo):
    from samrs_hf.analysis.visualize import plot

    folder, ex = _first_row(demo.hub)
    fig = plot(ex, folder.class_names, random_weights=folder.random_weights)
    titles = [t.get_text() for t in _texts(fig, "title")]
    assert titles[0] == f"image {ex['file_name']}" and titles[1].startswith("semantic map")
    assert titles[2].endswith("instances") and len(titles) == 3
    (mark,) = _texts(fig, "random-weights")  # on the instance panel, under its title
    assert mark.axes is fig.axes[2] and "RANDOM WEIGHTS" in mark.get_text()
    renderer = fig.canvas.get_renderer()
    title = [t for t in fig.axes[2].texts if t.get_gid() == "title"][0]
    assert not mark.get_window_extent(renderer).overlaps(title.get_window_extent(renderer))
    folder, ex = _first_row(demo.real_hub)
    assert not _texts(plot(ex, folder.class_names, random_weights=folder.random_weights), "random-weights")


def _repeat_first_object(objects, n):
    """``n`` copies of the first object, in whichever shape ``objects`` has (list of dicts / dict of lists)."""
    if isinstance(objects, dict):
        return {k: [v[0]] * n for k, v in objects.items()}
    return [objects[0]] * n


def test_names_in_a_dense_scene_do_not_cover_each_other(demo):
    from samrs_hf.analysis.visualize import plot

    folder, ex = _first_row(demo.hub)
    ex["objects"] = _repeat_first_object(ex["objects"], 30)
    fig = plot(ex, folder.class_names)
    panel = fig.axes[2]
    names = [t for t in panel.texts if t.get_gid() != "title"]
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in names]
    assert 1 <= len(names) < 30
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    (title,) = [t.get_text() for t in panel.texts if t.get_gid() == "title"]
    assert f"({30 - len(names)} overlapping names hidden)" in title
    bare = plot(ex, folder.class_names, show_names=False)
    assert [t.get_gid() for t in bare.axes[2].texts] == ["title"]


def test_visualize_no_names_option(demo, tmp_path):
    assert cli_main(["visualize", str(demo.hub), "--out", str(tmp_path / "a"), "--n", "1"]) == 0
    assert cli_main(["visualize", str(demo.hub), "--out", str(tmp_path / "b"), "--n", "1", "--no-names"]) == 0
    (a,), (b,) = sorted((tmp_path / "a").glob("*.png")), sorted((tmp_path / "b").glob("*.png"))
    assert a.name == b.name and Image.open(a).size == Image.open(b).size
    assert a.read_bytes() != b.read_bytes()


def test_fig5_instance_axis_has_integer_ticks_and_random_mark(demo):
    from samrs_hf.analysis.stats import compute_stats, figure_mask_sizes, figure_per_class

    stats = compute_stats(demo.hub)
    assert stats["random_weights"] is True
    fig = figure_per_class(stats)
    fig.canvas.draw()
    instances = fig.axes[1]
    lo, hi = sorted(instances.get_ylim())
    ticks = [t for t in instances.get_yticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() and t >= 1 for t in ticks)
    assert not [t for t in instances.get_yticks(minor=True) if lo <= t <= hi]
    labels = [t.get_text() for t in instances.get_yticklabels() if t.get_text()]
    assert labels and all(s.replace(",", "").isdigit() for s in labels)
    assert _texts(fig, "random-weights") and _texts(figure_mask_sizes(stats), "random-weights")
    real = compute_stats(demo.real_hub)
    assert not real["random_weights"] and not _texts(figure_per_class(real), "random-weights")


# -- model cards ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sep_dir(tmp_path_factory):
    """A tiny SEP folder with the card train_sep.py writes (one Hub dataset, one local one)."""
    from samrs_hf.sep import SEPConfig, SEPForSemanticSegmentation, tiny_backbone_config
    from samrs_hf.sep.card import model_card

    out = tmp_path_factory.mktemp("sep") / "sep"
    config = SEPConfig(backbone_config=tiny_backbone_config(), backbone_checkpoint="microsoft/resnet-50",
                       heads={"sota": 3, "sior": 2}, head_labels={"sota": ["plane", "ship", "bridge"],
                                                                  "sior": ["airplane", "dam"]}, hidden_size=16)
    SEPForSemanticSegmentation(config).save_pretrained(out)
    args = SimpleNamespace(datasets={"sota": "my-org/samrs-sota", "sior": str(out)}, backbone="resnet50",
                           max_steps=3, batch_size=4, crop_size=64, lr=1e-3, weight_decay=0.05, min_lr=0.0,
                           eval_crop_size=64, eval_max_samples=None)
    scores = {"sota": {"images": 4, "mIoU": 0.5, "mF1": 0.6, "OA": 0.7},
              "sior": {"images": 2, "mIoU": 0.25, "mF1": float("nan"), "OA": 0.9}}
    (out / "README.md").write_text(model_card(args, config, scores, {"sota": 16, "sior": 8}))
    return out


def _round_trip(readme: Path):
    from huggingface_hub import ModelCard, ModelCardData

    header = _front_matter(readme)
    meta = yaml.safe_load(header)
    data = ModelCardData(**meta)
    assert data.to_dict() == meta and data.to_yaml() + "\n" == header
    return meta, ModelCard.load(readme).data


def test_sep_card_metadata_and_model_index(sep_dir):
    meta, data = _round_trip(sep_dir / "README.md")
    assert meta["library_name"] == "transformers" and meta["license"] == "other" and meta["license_link"]
    assert meta["base_model"] == "microsoft/resnet-50"
    assert meta["datasets"] == ["my-org/samrs-sota"]  # the local folder is no Hub dataset
    assert "pipeline_tag" not in meta  # a multi-head model needs subset=: the pipeline cannot run it
    got = {(r.dataset_name, r.metric_type): r.metric_value for r in data.eval_results}
    assert got == {("SAMRS SOTA", "mean_iou"): 50.0, ("SAMRS SOTA", "f1"): 60.0, ("SAMRS SOTA", "accuracy"): 70.0,
                   ("SAMRS SIOR", "mean_iou"): 25.0, ("SAMRS SIOR", "accuracy"): 90.0}  # NaN left out
    assert {r.dataset_type for r in data.eval_results} == {"my-org/samrs-sota", "samrs-sior"}


def test_export_sep_command_end_to_end(sep_dir, tmp_path):
    import torch
    from transformers import UperNetForSemanticSegmentation, pipeline

    out = tmp_path / "upernet-sota"
    assert cli_main(["export-sep", str(sep_dir), "--subset", "sota", "--out", str(out)]) == 0
    model = UperNetForSemanticSegmentation.from_pretrained(out)
    assert model.config.id2label == {0: "plane", 1: "ship", 2: "bridge"}
    meta, data = _round_trip(out / "README.md")
    assert meta["pipeline_tag"] == "image-segmentation" and meta["library_name"] == "transformers"
    assert meta["base_model"] == "microsoft/resnet-50" and meta["datasets"] == ["my-org/samrs-sota"]
    assert {(r.dataset_name, r.metric_value) for r in data.eval_results} == {
        ("SAMRS SOTA", 50.0), ("SAMRS SOTA", 60.0), ("SAMRS SOTA", 70.0)}
    torch.manual_seed(0)
    segments = pipeline("image-segmentation", model=str(out))(Image.new("RGB", (32, 32), (90, 120, 60)))
    assert segments and {s["label"] for s in segments} <= {"plane", "ship", "bridge"}
    assert cli_main(["export-sep", str(sep_dir), "--subset", "sota", "--out", str(out)]) == 2  # not empty
    assert cli_main(["export-sep", str(sep_dir), "--subset", "sota", "--out", str(out), "--overwrite"]) == 0
    assert cli_main(["export-sep", str(sep_dir), "--subset", "fast", "--out", str(tmp_path / "x")]) == 2
    assert cli_main(["export-sep", str(out), "--subset", "sota", "--out", str(tmp_path / "y")]) == 2  # a UperNet


def test_finetune_card_and_base_model(sep_dir, tmp_path):
    from samrs_hf.sep.card import finetune_card
    from samrs_hf.sep.finetune import finetune_base_model

    assert finetune_base_model("resnet50", "backbone") == "microsoft/resnet-50"
    assert finetune_base_model("tiny-resnet", "backbone") is None
    assert finetune_base_model(str(sep_dir), "sep") == "microsoft/resnet-50"
    args = SimpleNamespace(task="potsdam", init=str(sep_dir), train_fraction=0.01)
    result = {"init_kind": "sep", "steps": 5, "train_crops": 10, "eval_crops": 4, "lr": 1e-3, "weight_decay": 1e-4,
              "scores": {"OA": 0.8, "mF1": 0.7, "mIoU": 0.6, "IoU": {"building": 0.6}, "F1": {"building": 0.75}}}
    (tmp_path / "README.md").write_text(finetune_card(args, result, "microsoft/resnet-50"))
    meta, data = _round_trip(tmp_path / "README.md")
    assert meta["pipeline_tag"] == "image-segmentation" and meta["base_model"] == "microsoft/resnet-50"
    assert meta["datasets"] == ["my-org/samrs-sota"]  # the SEP model's pre-training data
    assert {(r.dataset_type, r.dataset_split, r.metric_type, r.metric_value) for r in data.eval_results} == {
        ("potsdam", "test", "accuracy", 80.0), ("potsdam", "test", "f1", 70.0), ("potsdam", "test", "mean_iou", 60.0)}
    assert "| building | 60.00 | 75.00 |" in (tmp_path / "README.md").read_text()


# -- export-coco --images-dir --------------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["hub", "build"])
def test_export_coco_images_dir_is_self_contained(demo, tmp_path, source):
    from pycocotools.coco import COCO

    src = demo.hub if source == "hub" else demo.build
    out, images = tmp_path / "annotations" / "train.json", tmp_path / "images"
    assert cli_main(["export-coco", str(src), "--split", "train", "--out", str(out), "--images-dir", str(images)]) == 0
    coco = COCO(str(out))
    assert coco.dataset["info"]["images_dir"] == "../images"
    assert sorted(p.name for p in images.iterdir()) == sorted(i["file_name"] for i in coco.dataset["images"])
    stored = {r["file_name"]: r["image"]["bytes"] for r in _rows_with_bytes(demo.hub)}
    for img in coco.dataset["images"]:
        path = out.parent / coco.dataset["info"]["images_dir"] / img["file_name"]
        assert Image.open(path).size == (img["width"], img["height"])
        assert path.read_bytes() == stored[img["image_name"]]  # the stored bytes, not re-encoded
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]])):
            assert coco.annToMask(ann).shape == (img["height"], img["width"])


def _rows_with_bytes(path):
    from samrs_hf.hub.reader import open_folder

    return list(open_folder(path).rows("train", images="bytes"))


# -- install extras ------------------------------------------------------------------------------------------
def test_extras_keep_triton_out_of_test_and_name_the_notebooks_extra():
    from samrs_hf.demo import NOTEBOOKS_HINT

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    extras = {k: v for k, v in cfg["options.extras_require"].items()}
    assert "triton" not in extras["test"] and "triton" in extras["triton"]
    assert "jupyterlab" in extras["notebooks"] and "nbclient" in extras["notebooks"]
    for needed in ("pytest", "nbclient", "nbformat", "ipykernel", "segment-anything"):
        assert needed in extras["test"], needed  # what the remaining tests import (.ci/run installs [test])
    assert '".[notebooks]"' in NOTEBOOKS_HINT and "jupyter lab" in NOTEBOOKS_HINT
