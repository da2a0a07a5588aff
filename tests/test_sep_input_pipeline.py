"""SEP input pipeline (issue 20, target 4): ``--decode-cache`` decodes each training PNG once and later crops
read the cached arrays; ``--augment-on device`` moves the photometric part and the normalisation to the
training device with the same draws; ``--pin-memory`` / ``--prefetch-factor`` reach the DataLoader."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from samrs_hf.sep.augmentation import (PHOTOMETRIC_WEIGHTS, AugmentPlan, _photometric_factors, geometric,
                                       photometric, scaled_crop, scaled_crop_array)
from samrs_hf.sep.data import SEPTrainDataset, collate, load_subsets
from samrs_hf.sep.decode_cache import FILES, DecodeCacheError, open_decode_cache
from samrs_hf.sep.options import parse_args
from samrs_hf.sep.photometric_device import (_hsv_to_rgb, _rgb_to_hsv, apply_photometric, device_batches,
                                             pack_plan)
from samrs_hf.sep.pretrain import SEPTrainer, TrainArgs
from samrs_hf.sep.synthetic import write_synthetic_subset
from support_sep import small_args

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("input-data")
    return {s: str(write_synthetic_subset(root / s, s, num_train=n, num_val=4, size=72, seed=i))
            for i, (s, n) in enumerate({"sota": 10, "sior": 14}.items())}


@pytest.fixture(scope="module")
def train_sets(data):
    return load_subsets(data, "train")[0]


def keys(n_rows: int, chunks: int = 12):
    return [(0, (chunk * 5 + slot) % n_rows, chunk, slot) for chunk in range(chunks) for slot in range(4)]


# -- the decode cache ------------------------------------------------------------------------------------
def test_cache_is_built_once_then_reused_and_holds_the_decoded_pngs(train_sets, tmp_path):
    ds = train_sets["sota"]
    first = open_decode_cache(tmp_path / "cache", "sota", ds)
    again = open_decode_cache(tmp_path / "cache", "sota", ds)
    assert (first.decoded, again.decoded) == (len(ds), 0)
    assert sorted(p.name for p in first.folder.iterdir()) == sorted(FILES)
    for i in (0, len(ds) - 1):
        image, labels = again.arrays(i)
        assert np.array_equal(image, np.asarray(ds[i]["image"].convert("RGB")))
        assert np.array_equal(labels, np.asarray(ds[i]["semantic"]))
    clone = pickle.loads(pickle.dumps(again))  # DataLoader workers get it without its maps
    assert clone._maps is None and np.array_equal(clone.arrays(3)[1], again.arrays(3)[1])


def test_cached_crops_need_no_png_and_match_the_png_path(train_sets, tmp_path, monkeypatch):
    ds = train_sets["sota"]
    cache = open_decode_cache(tmp_path / "cache", "sota", ds)
    png = SEPTrainDataset([ds], 48, MEAN, STD, seed=3)
    expected = [png[k] for k in keys(len(ds))]

    def no_decoding(*args, **kwargs):
        raise AssertionError("a PNG was decoded")

    monkeypatch.setattr("datasets.features.image.Image.decode_example", no_decoding)
    cached = SEPTrainDataset([ds], 48, MEAN, STD, seed=3, caches=[cache])
    got = [cached[k] for k in keys(len(ds))]
    assert all(torch.equal(a[1], b[1]) and torch.equal(a[2], b[2]) for a, b in zip(expected, got))


@pytest.mark.parametrize("shape", [(90, 130), (300, 70), (70, 300), (40, 45)])
@pytest.mark.parametrize("scale", [1.0, 0.55, 0.8, 1.37, 2.0])
def test_region_read_equals_the_whole_image_crop(scale, shape):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    labels = rng.integers(0, 19, shape, dtype=np.uint8)
    labels[::7] = 255
    for seed in range(30):
        want = scaled_crop(Image.fromarray(pixels), Image.fromarray(labels, mode="L"), scale, 48,
                           np.random.default_rng(seed), centre_pad=True)
        got = scaled_crop_array(pixels, labels, scale, 48, np.random.default_rng(seed), centre_pad=True)
        assert np.array_equal(want[0], got[0]) and np.array_equal(want[1], got[1])


def test_a_changed_dataset_gets_a_new_cache_and_the_old_one_is_not_read(tmp_path):
    folder = tmp_path / "sota"
    write_synthetic_subset(folder, "sota", num_train=6, num_val=2, size=40, seed=0)
    old = open_decode_cache(tmp_path / "cache", "sota", load_subsets({"sota": str(folder)}, "train")[0]["sota"])
    write_synthetic_subset(folder, "sota", num_train=6, num_val=2, size=40, seed=1)  # same name, other pixels
    ds = load_subsets({"sota": str(folder)}, "train")[0]["sota"]
    new = open_decode_cache(tmp_path / "cache", "sota", ds)
    assert new.decoded == 6 and new.folder != old.folder and (old.folder / "meta.json").is_file()
    assert np.array_equal(new.arrays(2)[0], np.asarray(ds[2]["image"].convert("RGB")))
    assert not np.array_equal(new.arrays(2)[0], old.arrays(2)[0])


@pytest.mark.parametrize("damage", ["no meta", "truncated", "other key"])
def test_an_incomplete_or_foreign_cache_is_built_again_keeping_other_files(train_sets, tmp_path, damage):
    ds = train_sets["sota"]
    folder = open_decode_cache(tmp_path / "cache", "sota", ds).folder
    (folder / "notes.txt").write_text("mine")
    if damage == "no meta":
        (folder / "meta.json").unlink()
    elif damage == "truncated":
        with open(folder / "images.u8", "r+b") as f:
            f.truncate(100)
    else:
        meta = json.loads((folder / "meta.json").read_text())
        (folder / "meta.json").write_text(json.dumps({**meta, "key": "0" * 16}))
    rebuilt = open_decode_cache(tmp_path / "cache", "sota", ds)
    assert rebuilt.decoded == len(ds) and (folder / "notes.txt").read_text() == "mine"
    assert np.array_equal(rebuilt.arrays(1)[1], np.asarray(ds[1]["semantic"]))


def test_a_file_named_as_the_cache_folder_is_refused(train_sets, tmp_path):
    (tmp_path / "cache").write_text("")
    with pytest.raises(DecodeCacheError, match="not a folder"):
        open_decode_cache(tmp_path / "cache", "sota", train_sets["sota"])


# -- photometric changes on the device -------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(PHOTOMETRIC_WEIGHTS))
def test_device_photometric_equals_the_cpu_one(kind):
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (24, 20, 20, 3), dtype=np.uint8)
    images[:4] = images[:4] // 4 + 180  # bright ones: clipping and saturated colours
    plans = [AugmentPlan(1.0, False, False, 0, kind, _photometric_factors(kind, rng)) for _ in images]
    want = np.stack([photometric(img, p.photometric, p.factors) for img, p in zip(images, plans)]).astype(int)
    got = apply_photometric(torch.from_numpy(images), torch.from_numpy(np.stack([pack_plan(p) for p in plans])))
    diff = np.abs(got.numpy().astype(int) - want)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert not np.array_equal(want, images)  # the change did something


def test_examples_without_a_photometric_change_pass_unchanged():
    images = torch.randint(0, 256, (3, 8, 8, 3), dtype=torch.uint8)
    out = apply_photometric(images, torch.from_numpy(np.stack([pack_plan(AugmentPlan(1.0, False, False, 0, None))] * 3)))
    assert torch.equal(out, images.float())


def test_pil_hsv_conversions_are_restated_exactly():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (1, 300, 300, 3), dtype=np.uint8)
    rgb[0, 0, :6] = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [7, 7, 9]]
    hsv = np.asarray(Image.fromarray(rgb[0]).convert("HSV"))
    assert np.array_equal(_rgb_to_hsv(torch.from_numpy(rgb).float())[0].numpy(), hsv)
    back = np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))
    assert np.array_equal(_hsv_to_rgb(torch.from_numpy(hsv[None].astype(np.float64)))[0].numpy(), back)


def test_device_batches_give_the_cpu_batches(train_sets):
    ds = [train_sets["sota"], train_sets["sior"]]
    batch_keys = [[(0, 1, c, 0), (0, 4, c, 1), (1, 2, c, 2), (1, 9, c, 3)] for c in range(20)]
    cpu = SEPTrainDataset(ds, 40, MEAN, STD, seed=1)
    dev = SEPTrainDataset(ds, 40, MEAN, STD, seed=1, photometric_on_device=True)
    kinds = set()
    for b, keyset in zip(device_batches((collate([dev[k] for k in ks]) for ks in batch_keys), "cpu", MEAN, STD),
                         batch_keys):
        want = collate([cpu[k] for k in keyset])
        kinds |= {geometric(*(ds[s][i][c] for c in ("image", "semantic")), 40,
                            np.random.default_rng([1, ch, sl, 7919]))[0].photometric for s, i, ch, sl in keyset}
        assert b["subset_sizes"] == want["subset_sizes"] and torch.equal(b["labels"], want["labels"])
        assert b["labels"].dtype == torch.int64 and b["pixel_values"].shape == want["pixel_values"].shape
        torch.testing.assert_close(b["pixel_values"], want["pixel_values"], atol=1e-5, rtol=0)
    assert len(kinds) >= 3  # several photometric kinds went through


# -- options and the run ---------------------------------------------------------------------------------
def test_input_options_on_the_command_line(data, tmp_path):
    args = parse_args(TrainArgs, ["--dataset", f"sota={data['sota']}", "--output-dir", str(tmp_path / "o"),
                                  "--decode-cache", str(tmp_path / "c"), "--augment-on", "device",
                                  "--no-pin-memory", "--prefetch-factor", "2"])
    assert (args.decode_cache, args.augment_on, args.pin_memory, args.prefetch_factor) == (
        str(tmp_path / "c"), "device", False, 2)
    defaults = parse_args(TrainArgs, ["--dataset", f"sota={data['sota']}", "--output-dir", str(tmp_path / "o")])
    assert (defaults.decode_cache, defaults.augment_on, defaults.pin_memory) == (None, "workers", True)


@pytest.mark.parametrize("kw, message", [
    ({"decode_cache": "c", "streaming": True}, "does not apply to --streaming"),
    ({"augment_on": "gpu"}, "--augment-on must be one of"),
    ({"prefetch_factor": 0}, "--prefetch-factor must be positive"),
])
def test_bad_input_options_are_one_line_errors(data, tmp_path, kw, message):
    with pytest.raises(ValueError, match=message):
        small_args(data, tmp_path / "o", **kw)


def test_pretraining_with_the_cache_and_device_augmentation(data, tmp_path, torch_one_thread):
    common = dict(max_steps=3, cpu=True, eval_every="0", checkpoint_every=0)
    plain = SEPTrainer(small_args(data, tmp_path / "plain", **common))
    fast = SEPTrainer(small_args(data, tmp_path / "fast", decode_cache=str(tmp_path / "cache"), augment_on="device",
                                 prefetch_factor=2, **common))
    assert [c.decoded for c in fast.caches] == [10, 14]
    a, b = next(iter(plain.batches(0))), next(iter(fast.batches(0)))
    assert torch.equal(a["labels"], b["labels"])
    torch.testing.assert_close(a["pixel_values"], b["pixel_values"], atol=5e-3, rtol=0)
    result = fast.train()
    assert len(result["history"]) == 3 and all(np.isfinite(r["loss"]) for r in result["history"])
    assert (tmp_path / "fast" / "model.safetensors").is_file()
    run = json.loads((tmp_path / "fast" / "run_config.json").read_text())
    assert run["args"]["augment_on"] == "device" and run["args"]["decode_cache"] == str(tmp_path / "cache")
    again = SEPTrainer(small_args(data, tmp_path / "again", decode_cache=str(tmp_path / "cache"), num_workers=1,
                                  **common))
    assert [c.decoded for c in again.caches] == [0, 0]
    c = next(iter(again.batches(0)))  # a worker process maps the cache itself
    assert torch.equal(a["labels"], c["labels"])
    torch.testing.assert_close(a["pixel_values"], c["pixel_values"], atol=5e-3, rtol=0)


def test_streaming_run_with_device_augmentation(data, tmp_path, torch_one_thread):
    trainer = SEPTrainer(small_args(data, tmp_path / "s", streaming=True, shuffle_buffer=4, augment_on="device",
                                    max_steps=2, cpu=True, eval_every="0", checkpoint_every=0))
    result = trainer.train()
    assert len(result["history"]) == 2 and all(np.isfinite(r["loss"]) for r in result["history"])
