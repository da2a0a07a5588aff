"""Packaged datasets in the stock Hugging Face clients: detection (objects as a dict of lists, int64
image_id), semantic segmentation (image + label, id2label.json) and row groups sized in bytes."""

import fnmatch
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from samrs_hf.build import layout
from samrs_hf.hub import features as hub_features
from samrs_hf.hub.features import image_id_of, samrs_features
from samrs_hf.hub.packaging import ID2LABEL, MANIFEST, PackagingError, package
from samrs_hf.sources.classes import get_class_table

TABLE = get_class_table("sota")
W, H = 48, 32
OBJECTS = [("plane", (1, 2, 12, 10)), ("ship", (20, 4, 40, 28)), ("large-vehicle", (30, 1, 34, 5))]


def write_build(build: Path, names, *, size=(W, H), noise=False):
    """A hand-made `samrs build` folder: per name a PNG, its gray map and ``ins/<name>.json`` (masks = boxes)."""
    w, h = size
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8) if noise else np.full((h, w, 3), 40 * i % 255, np.uint8)
        gray = np.full((h, w), 255, np.uint8)
        instances = []
        for cat, (x0, y0, x1, y1) in OBJECTS[: 1 + i % 3]:
            m = np.zeros((h, w), np.uint8)
            m[y0:y1, x0:x1] = 1
            gray[m.astype(bool)] = TABLE.id_of(cat)
            instances.append({"category": cat, "label": TABLE.id_of(cat), "bbox": [x0, y0, x1, y1], "rbox": None,
                              "segmentation": {"size": [h, w], "counts": mask_utils.encode(np.asfortranarray(m))["counts"].decode()},
                              "area": int(m.sum()), "score": 0.9, "truncated": False})
        layout.atomic_write(build / "images" / f"{name}.png", layout.png_bytes(image))
        layout.atomic_write(build / "gray" / f"{name}.png", layout.png_bytes(gray))
        layout.atomic_write(build / "color" / f"{name}.png", layout.png_bytes(np.zeros((h, w, 3), np.uint8)))
        record = {"image": name, "source_image": name.split("__")[0], "offset": [0, 0], "width": w, "height": h,
                  "split": "train", "instances": instances}
        layout.atomic_write(build / "ins" / f"{name}.json", layout.json_bytes(record))
    layout.atomic_write(build / "build.json", layout.json_bytes({
        "subset": "sota", "classes": list(TABLE.names), "model": {"spec": "tiny-random", "random": True},
        "prompt": "H-Box", "source": "synthetic", "format": "dota"}))
    return build


NAMES = [f"P{s:04d}__1024__{x}___0" for s in range(3) for x in (0, 824)]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit")
    build = write_build(root / "build", NAMES)
    package([build], root / "hub", val_fraction=0.0, progress=False, stats=None)
    return root / "hub"


def format_image_annotations_as_coco(image_id, categories, areas, bboxes):
    """As transformers' object-detection guide writes it."""
    annotations = [{"image_id": image_id, "category_id": category, "iscrowd": 0, "area": area, "bbox": list(bbox)}
                   for category, area, bbox in zip(categories, areas, bboxes)]
    return {"image_id": image_id, "annotations": annotations}


def test_detection_batch_as_the_transformers_guide_makes_it(hub, tmp_path):
    from datasets import Value, load_dataset
    from transformers import AutoImageProcessor, DetrImageProcessor

    ds = load_dataset(str(hub), split="train")
    assert ds.features["image_id"] == Value("int64")
    first = ds[0]
    assert first["objects"]["bbox"][0] == [1.0, 2.0, 11.0, 8.0]  # no cast_column: a dict of lists
    assert first["objects"]["category"] == [TABLE.id_of("plane")]

    DetrImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}).save_pretrained(tmp_path / "proc")
    processor = AutoImageProcessor.from_pretrained(tmp_path / "proc")

    def augment_and_transform_batch(examples):  # the guide's batch function, without its augmentation
        images, annotations = [], []
        for image_id, image, objects in zip(examples["image_id"], examples["image"], examples["objects"]):
            images.append(np.array(image.convert("RGB")))
            annotations.append(format_image_annotations_as_coco(image_id, objects["category"], objects["area"],
                                                                objects["bbox"]))
        result = processor(images=images, annotations=annotations, return_tensors="pt")
        result.pop("pixel_mask", None)
        return result

    batch = ds.with_transform(augment_and_transform_batch)[:4]
    assert batch["pixel_values"].shape[0] == 4
    for label, ex in zip(batch["labels"], (ds[i] for i in range(4))):
        assert int(label["image_id"]) == ex["image_id"] == image_id_of(ex["file_name"])
        assert label["class_labels"].tolist() == ex["objects"]["category"]
        x, y, w, h = torch.tensor(ex["objects"]["bbox"]).unbind(-1)
        expected = torch.stack([(x + w / 2) / W, (y + h / 2) / H, w / W, h / H], -1)  # normalised cx, cy, w, h
        torch.testing.assert_close(label["boxes"], expected)
        torch.testing.assert_close(label["area"], torch.tensor(ex["objects"]["area"], dtype=torch.float32)
                                   * (label["size"].prod() / (W * H)))


def test_plain_parquet_and_streaming_clients_see_the_same_columns(hub):
    from datasets import load_dataset

    files = sorted(str(p) for p in (hub / "data").glob("train-*.parquet"))
    plain = load_dataset("parquet", data_files=files, split="train")
    streamed = next(iter(load_dataset(str(hub), split="train", streaming=True)))
    assert plain.features == samrs_features("sota")
    assert streamed["objects"]["bbox"] == plain[0]["objects"]["bbox"]
    assert streamed["objects"]["segmentation"][0]["size"] == [H, W]
    assert (streamed["image_id"], streamed["file_name"]) == (plain[0]["image_id"], plain[0]["file_name"])


def test_image_ids_are_stable_across_packagings_and_unique(hub, tmp_path):
    from datasets import load_dataset

    ids = dict(zip(*(load_dataset(str(hub), split="train")[k] for k in ("file_name", "image_id"))))
    assert len(set(ids.values())) == len(NAMES) and all(0 <= v < 2**63 for v in ids.values())
    # Another package holding some of the same patches (and others) gives them the same ids.
    other = write_build(tmp_path / "other", ["Z0001__1024__0___0", *NAMES[::2]])
    package([other], tmp_path / "hub2", val_fraction=0.0, progress=False, stats=None)
    again = load_dataset(str(tmp_path / "hub2"), split="train")
    assert {n: i for n, i in zip(again["file_name"], again["image_id"]) if n in ids} == {n: ids[n] for n in NAMES[::2]}


def test_an_image_id_collision_is_an_error_naming_both(hub, tmp_path, monkeypatch):
    build = write_build(tmp_path / "b", NAMES[:2])
    monkeypatch.setattr(hub_features, "image_id_of", lambda name: 7)
    with pytest.raises(PackagingError, match=f"{NAMES[1]}.*image_id 7.*{NAMES[0]}"):
        package([build], tmp_path / "hub", val_fraction=0.0, progress=False, stats=None)
    assert not (tmp_path / "hub").exists()


def test_id2label_is_packaged_and_pushed(hub, monkeypatch):
    from huggingface_hub import HfApi

    from samrs_hf.hub.repo import push

    assert json.loads((hub / ID2LABEL).read_text()) == {str(i): n for i, n in enumerate(TABLE.names)}
    assert ID2LABEL in json.loads((hub / MANIFEST).read_text())["files"]
    uploads = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: f"https://hf.co/datasets/{repo_id}")
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: uploads.append(kw))
    monkeypatch.delattr(HfApi, "upload_large_folder", raising=False)
    push(hub, "me/sota")
    (upload,) = uploads
    assert Path(upload["folder_path"]) == hub
    assert not any(fnmatch.fnmatch(ID2LABEL, pattern) for pattern in upload["ignore_patterns"])


def test_semantic_segmentation_training_step_as_run_semantic_segmentation_does_it(hub):
    """The columns, id2label.json and label values transformers' example reads, in one UperNet step."""
    from datasets import load_dataset
    from transformers import ConvNextConfig, UperNetConfig, UperNetForSemanticSegmentation

    dataset = load_dataset(str(hub))
    assert {"image", "label"} <= set(dataset["train"].column_names)  # the script renames nothing here
    id2label = {int(k): v for k, v in json.loads((hub / ID2LABEL).read_text()).items()}
    label2id = {v: str(k) for k, v in id2label.items()}
    readme = (hub / "README.md").read_text()
    assert "--do_reduce_labels" in readme and "255 = unlabelled" in readme and "Class 0 is a real class" in readme

    def preprocess_batch(example_batch):  # the script's, with its albumentations crop/normalise in numpy
        pixel_values, labels = [], []
        for image, target in zip(example_batch["image"], example_batch["label"]):
            pixel_values.append(torch.from_numpy(np.array(image.convert("RGB"), np.float32).transpose(2, 0, 1) / 255))
            labels.append(torch.from_numpy(np.array(target)))
        return {"pixel_values": torch.stack(pixel_values).to(torch.float), "labels": torch.stack(labels).to(torch.long)}

    batch = dataset["train"].with_transform(preprocess_batch)[:4]
    semantic = torch.stack([torch.from_numpy(np.array(ex["semantic"])) for ex in dataset["train"].select(range(4))])
    assert torch.equal(batch["labels"], semantic.long())
    values = set(batch["labels"].unique().tolist())
    assert 255 in values and values - {255} <= set(id2label) and TABLE.id_of("large-vehicle") == 0 and 0 in values

    torch.manual_seed(0)
    config = UperNetConfig(backbone_config=ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                                                          out_features=["stage1", "stage2", "stage3", "stage4"]).to_dict(),
                           hidden_size=16, use_auxiliary_head=False, loss_ignore_index=255,
                           id2label=id2label, label2id=label2id)
    model = UperNetForSemanticSegmentation(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    out = model(pixel_values=batch["pixel_values"], labels=batch["labels"])
    assert out.logits.shape == (4, len(TABLE), H, W) and torch.isfinite(out.loss)
    # 255 pixels are left out of the loss, class 0 pixels are in it.
    labelled = batch["labels"] != 255
    expected = torch.nn.functional.cross_entropy(out.logits.permute(0, 2, 3, 1)[labelled], batch["labels"][labelled])
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    before = model.decode_head.classifier.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, model.decode_head.classifier.weight)


def test_row_groups_and_shards_are_sized_in_bytes(tmp_path):
    import datasets
    import pyarrow.parquet as pq

    from samrs_hf.hub.writer import DEFAULT_ROW_GROUP_SIZE, DEFAULT_SHARD_SIZE, FOOTER_BYTES, parse_size

    assert parse_size(DEFAULT_ROW_GROUP_SIZE) == parse_size(datasets.config.MAX_ROW_GROUP_SIZE) == 100_000_000
    assert parse_size(DEFAULT_SHARD_SIZE) == parse_size(datasets.config.MAX_SHARD_SIZE) == 500_000_000
    names = [f"P{i:04d}__1024__0___0" for i in range(9)]
    build = write_build(tmp_path / "b", names, size=(128, 96), noise=True)  # ~37 KB of incompressible PNG per row
    row_bytes = (build / "images" / f"{names[0]}.png").stat().st_size
    group_limit, shard_limit = int(2.5 * row_bytes), FOOTER_BYTES + int(5.5 * row_bytes)
    result = package([build], tmp_path / "hub", val_fraction=0.0, progress=False, stats=None,
                     row_group_size=group_limit, shard_size=shard_limit)
    shards = [tmp_path / "hub" / f for f in result.files["train"]]
    assert len(shards) == 2  # 9 rows, at most 5 per shard
    groups = []
    for shard in shards:
        assert shard.stat().st_size <= shard_limit
        meta = pq.ParquetFile(shard).metadata
        groups += [(meta.row_group(g).num_rows, meta.row_group(g).total_byte_size) for g in range(meta.num_row_groups)]
    assert [n for n, _ in groups] == [2, 2, 1, 2, 2]  # 2 rows per group, a shard closed before a 6th row
    assert all(size <= group_limit for _, size in groups)
    assert sum(n for n, _ in groups) == len(names)


def test_a_package_of_the_old_features_is_refused_with_the_reason(tmp_path):
    from datasets import ClassLabel, Dataset, Features, List, Value

    from samrs_hf.hub.reader import NotADatasetFolder, open_folder

    old = Features({"objects": List({"id": Value("int64"), "category": ClassLabel(names=list(TABLE.names))}),
                    "image_id": Value("string"), "subset": Value("string")})
    (tmp_path / "old" / "data").mkdir(parents=True)
    Dataset.from_dict({"objects": [[{"id": 1, "category": 0}]], "image_id": ["P0000"], "subset": ["sota"]},
                      features=old).to_parquet(str(tmp_path / "old" / "data" / "train-00000-of-00001.parquet"))
    with pytest.raises(NotADatasetFolder, match="old: .*list of per-object structs.*package or convert it again"):
        open_folder(tmp_path / "old")
