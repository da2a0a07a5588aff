"""SEP training: proportional sampling, learning on a learnable dataset, exact resume, NaN stop, bad input,
and ``samrs eval-sep``."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from samrs_hf.sep.data import ProportionalBatchSampler, SEPTrainDataset, proportional_sizes
from samrs_hf.sep.synthetic import write_synthetic_subset
from samrs_hf.sep.pretrain import SEPTrainer, TrainArgs
from samrs_hf.sep.training import NonFiniteLossError
from samrs_hf.cli import build_parser
from samrs_hf.common.options import from_args

REPO = Path(__file__).resolve().parents[1]
SUBSETS = ("sota", "sior", "fast")


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sep-data")
    sizes = {"sota": 24, "sior": 32, "fast": 40}
    return {s: str(write_synthetic_subset(root / s, s, num_train=n, num_val=8, seed=i))
            for i, (s, n) in enumerate(sizes.items())}


def small_args(data, out, **kw) -> TrainArgs:
    base = dict(datasets=dict(data), output_dir=str(out), backbone="tiny-resnet", max_steps=6, batch_size=6,
                crop_size=48, hidden_size=16, lr=3e-3, num_workers=0, checkpoint_every=3, eval_crop_size=64,
                log_every=1)
    base.update(kw)
    return TrainArgs(**base)


# -- proportional sampling ------------------------------------------------------------------------
def test_proportional_sizes_hand_examples():
    # SAMRS image counts (Table 2): 96 * L_i / sum = 15.97, 21.43, 58.60 -> floors 15, 21, 58 (94);
    # the two largest remainders (.97 SOTA, .60 FAST) get the 2 left.
    assert proportional_sizes([17480, 23463, 64147], 96) == [16, 21, 59]
    assert proportional_sizes([1, 1, 1], 5) == [2, 2, 1]          # equal remainders: earlier subsets first
    assert proportional_sizes([1000, 1, 1], 3) == [1, 1, 1]       # every subset gets at least one
    assert proportional_sizes([98, 1, 1], 10) == [8, 1, 1]        # 9.8 -> 9 -> 8 to make room for the 1s
    assert proportional_sizes([24, 32, 40], 6) == [2, 2, 2]       # 1.5, 2, 2.5 -> 1, 2, 2 + 1 to .5 (first)
    with pytest.raises(ValueError, match="smaller than the number of subsets"):
        proportional_sizes([5, 5, 5], 2)
    with pytest.raises(ValueError, match="at least one example"):
        proportional_sizes([5, 0], 4)



def eval_sep(argv):
    """`samrs eval-sep ARGV` with its errors raised (the CLI would print them and exit 2)."""
    args = build_parser().parse_args(["eval-sep", *argv])
    return args.func(from_args(args.options, args))

def test_sampler_is_a_pure_function_of_step_and_covers_each_epoch():
    full = ProportionalBatchSampler([5, 7], 4, seed=3, num_steps=20)
    batches = list(full)
    assert [sum(1 for k in b if k[0] == i) for b in batches[:1] for i in (0, 1)] == [2, 2]
    resumed = list(ProportionalBatchSampler([5, 7], 4, seed=3, start_step=7, num_steps=13))
    assert resumed == batches[7:]
    stream0 = [k[1] for b in batches for k in b if k[0] == 0]
    assert sorted(stream0[:5]) == list(range(5)) and sorted(stream0[5:10]) == list(range(5))  # epochs
    r0 = ProportionalBatchSampler([8, 8], 2, seed=3, num_replicas=2, rank=0).batch(0)
    r1 = ProportionalBatchSampler([8, 8], 2, seed=3, num_replicas=2, rank=1).batch(0)
    assert not {k[:2] for k in r0} & {k[:2] for k in r1}  # processes train on different examples


def test_scaled_crop_equals_resize_then_crop_and_pads_with_255():
    from PIL import Image

    from samrs_hf.sep.data import scaled_crop

    rng = np.random.default_rng(0)
    lab = Image.fromarray(rng.integers(0, 5, (40, 50)).astype(np.uint8), mode="L")
    img = Image.fromarray(rng.integers(0, 255, (40, 50, 3)).astype(np.uint8))
    _, got = scaled_crop(img, lab, 2.0, 32, np.random.default_rng(1))
    r = np.random.default_rng(1)
    top, left = int(r.integers(0, 80 - 32 + 1)), int(r.integers(0, 100 - 32 + 1))
    assert np.array_equal(got, np.asarray(lab.resize((100, 80), Image.NEAREST))[top:top + 32, left:left + 32])
    small_img, small = scaled_crop(img, lab, 0.5, 32, np.random.default_rng(1))  # 25x20 inside a 32 crop
    assert (small[20:] == 255).all() and (small[:, 25:] == 255).all() and (small[:20, :25] != 255).all()
    assert (small_img[20:] == 0).all()


def test_augmentation_is_seeded_by_position(data):
    from datasets import load_dataset

    ds = load_dataset(data["sota"])["train"]
    a = SEPTrainDataset([ds], 48, (0, 0, 0), (1, 1, 1), seed=0)
    x1, x2, x3 = a[(0, 1, 5, 2)], a[(0, 1, 5, 2)], a[(0, 1, 6, 2)]
    assert torch.equal(x1[1], x2[1]) and torch.equal(x1[2], x2[2])
    assert x1[1].shape == (3, 48, 48) and x1[2].dtype == torch.int64
    assert not torch.equal(x1[1], x3[1])
    assert set(np.unique(x1[2].numpy())) <= {0, 1, 2, 3, 255}


# -- training ---------------------------------------------------------------------------------------
def test_learnable_dataset_trains_well_above_chance_via_builder(data, tmp_path):
    spec = importlib.util.spec_from_file_location("train_sep", REPO / "builders" / "train_sep.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    out = tmp_path / "run"
    argv = [a for s, p in data.items() for a in ("--dataset", f"{s}={p}")]
    argv += ["--backbone", "tiny-resnet", "--output-dir", str(out), "--max-steps", "120", "--batch-size", "12",
             "--crop-size", "64", "--hidden-size", "32", "--lr", "3e-3", "--num-workers", "1",
             "--checkpoint-every", "0", "--eval-crop-size", "64", "--log-every", "20"]
    assert builder.main(argv) == 0
    scores = json.loads((out / "eval_results.json").read_text())
    # 4 colour-coded classes per subset: chance is ~0.25 mIoU; a trained head is near 0.9.
    for subset in SUBSETS:
        assert scores[subset]["mIoU"] > 0.6, (subset, scores[subset]["mIoU"])
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert {"loss/sota", "loss/sior", "loss/fast", "samples_per_s", "lr"} <= set(log[-1])
    assert log[-1]["loss"] < log[0]["loss"]
    card = (out / "README.md").read_text()
    assert "tiny-resnet" in card and "| sota |" in card and "120 x batch 12" in card

    # samrs eval-sep on the trained model reproduces the validation scores and writes JSON.
    assert eval_sep([str(out), "--dataset", f"sior={data['sior']}", "--crop-size", "64",
                     "--json", str(tmp_path / "eval.json")]) == 0
    got = json.loads((tmp_path / "eval.json").read_text())["results"]["sior"]
    assert got["mIoU"] == pytest.approx(scores["sior"]["mIoU"])
    assert got["IoU"]["windmill"] is None  # class absent from data and prediction
    with pytest.raises(ValueError, match="no head for"):
        eval_sep([str(out), "--dataset", f"dior={data['sior']}"])


def test_eval_sep_refuses_a_checkpoint_that_is_not_sep(data, tmp_path):
    # An exported (or fine-tuned) plain UperNet would load into SEP with freshly initialised
    # default heads (sota/sior/fast) and score random noise; it must be refused instead.
    from samrs_hf.sep import SEPConfig, SEPForSemanticSegmentation

    SEPForSemanticSegmentation(SEPConfig(hidden_size=8)).export("sota", tmp_path / "upernet")
    with pytest.raises(ValueError, match=r"upernet.* not an SEP model"):
        eval_sep([str(tmp_path / "upernet"), "--dataset", f"sota={data['sota']}", "--crop-size", "64"])

    # Same number of classes, other names (another label table or order): not comparable.
    names = [f"class{i}" for i in range(18)]
    SEPForSemanticSegmentation(SEPConfig(heads={"sota": 18}, head_labels={"sota": names},
                                         hidden_size=8)).save_pretrained(tmp_path / "sep")
    with pytest.raises(ValueError, match=r"sota: the dataset's classes .*large-vehicle.* differ from the model's"):
        eval_sep([str(tmp_path / "sep"), "--dataset", f"sota={data['sota']}", "--crop-size", "64"])


def test_eval_sep_on_a_device_that_is_not_there_is_one_clear_error(data, tmp_path, monkeypatch, capsys):
    from samrs_hf.cli import main as cli_main
    from samrs_hf.sep import SEPConfig, SEPForSemanticSegmentation

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    SEPForSemanticSegmentation(SEPConfig(heads={"sior": 20}, hidden_size=8)).save_pretrained(tmp_path / "m")
    capsys.readouterr()
    for device, message in (("cuda", "--device 'cuda' is not available: no CUDA device"),
                            ("cdua", "--device 'cdua' is not a torch device")):
        assert cli_main(["eval-sep", str(tmp_path / "m"), "--dataset", f"sior={data['sior']}",
                         "--crop-size", "64", "--device", device]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"samrs eval-sep: error: {message}") and len(err.strip().splitlines()) == 1, err


def test_failed_push_is_one_clear_error_and_the_model_stays_saved(data, tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    spec = importlib.util.spec_from_file_location("train_sep", REPO / "builders" / "train_sep.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    out = tmp_path / "run"
    assert builder.main(["--dataset", f"sota={data['sota']}", "--backbone", "tiny-resnet", "--output-dir", str(out),
                         "--max-steps", "1", "--batch-size", "2", "--crop-size", "32", "--hidden-size", "8",
                         "--num-workers", "0", "--checkpoint-every", "0", "--eval-crop-size", "32",
                         "--push-to-hub", "samrs-test/sep-offline"]) == 2
    err = capsys.readouterr().err
    assert f"model is saved in {out}" in err and "samrs-test/sep-offline" in err and "Traceback" not in err
    assert (out / "model.safetensors").is_file()


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(data, tmp_path, monkeypatch):
    full = SEPTrainer(small_args(data, tmp_path / "full"))
    full.train()

    original = SEPTrainer.train_step

    def crash_at_4(self, micro, step):
        if step == 4:
            raise KeyboardInterrupt
        return original(self, micro, step)

    monkeypatch.setattr(SEPTrainer, "train_step", crash_at_4)
    with pytest.raises(KeyboardInterrupt):
        SEPTrainer(small_args(data, tmp_path / "cut")).train()
    monkeypatch.setattr(SEPTrainer, "train_step", original)
    assert [p.name for p in (tmp_path / "cut" / "checkpoints").iterdir()] == ["step-00000003"]
    resumed = SEPTrainer(small_args(data, tmp_path / "cut", resume=True))
    assert resumed.start_step == 3
    resumed.train()

    a = load_file(tmp_path / "full" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    first = load_file(tmp_path / "full" / "checkpoints" / "step-00000003" / "model.safetensors")
    assert any(not torch.equal(first[k], a[k]) for k in a)  # steps 4-6 did train


def test_resume_from_another_configuration_is_refused(data, tmp_path):
    # --log-every 0 (like --checkpoint-every 0 / --eval-every 0): log the last step only.
    result = SEPTrainer(small_args(data, tmp_path, max_steps=3, log_every=0)).train()
    assert [r["step"] for r in result["history"]] == [3]
    with pytest.raises(ValueError, match="another configuration.*batch_size"):
        SEPTrainer(small_args(data, tmp_path, max_steps=3, batch_size=9, resume=True))
    # The --dataset order decides subset indices (sampling seeds) and B_i tie-breaks: [24, 32, 40]
    # gives 2/2/2 per batch, [40, 32, 24] gives 3/2/1. Same subsets in another order is another run.
    reordered = dict(reversed(list(data.items())))
    with pytest.raises(ValueError, match="another configuration.*datasets"):
        SEPTrainer(small_args(reordered, tmp_path, max_steps=3, resume=True))
    with pytest.raises(ValueError, match="no checkpoint"):
        SEPTrainer(small_args(data, tmp_path / "empty", resume=True))


def test_a_subset_without_validation_split_keeps_the_others_validated(data, tmp_path):
    import shutil

    train_only = tmp_path / "sota-train-only" / "data"
    train_only.mkdir(parents=True)
    for f in (Path(data["sota"]) / "data").glob("train-*.parquet"):
        shutil.copy(f, train_only / f.name)
    trainer = SEPTrainer(small_args({"sota": str(train_only.parent), "sior": data["sior"]}, tmp_path / "run"))
    assert list(trainer.val_sets) == ["sior"]


def test_nan_loss_stops_naming_step_and_subset_and_keeps_last_good_checkpoint(data, tmp_path, monkeypatch):
    original = SEPTrainDataset.__getitem__

    def poisoned(self, key):
        subset, x, y = original(self, key)
        if key[2] == 4 and subset == 1:  # micro-batch of step 5, an SIOR example
            x = torch.full_like(x, float("nan"))
        return subset, x, y

    monkeypatch.setattr(SEPTrainDataset, "__getitem__", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"step 5 in subset\(s\) .*sior.*step-00000004"):
        SEPTrainer(small_args(data, tmp_path, checkpoint_every=0)).train()
    kept = load_file(tmp_path / "checkpoints" / "step-00000004" / "model.safetensors")
    assert all(torch.isfinite(v.float()).all() for v in kept.values())


def test_bad_inputs_are_refused_before_training(data, tmp_path):
    from datasets import Dataset, Image

    swapped = {"sota": data["sior"], "sior": data["sior"]}
    with pytest.raises(ValueError, match=r"sota=.*differ from samrs_features\('sota'\)"):
        SEPTrainer(small_args(swapped, tmp_path))
    plain = tmp_path / "plain"
    (plain / "data").mkdir(parents=True)
    from datasets import Features
    from PIL import Image as PILImage

    Dataset.from_dict({"image": [PILImage.new("RGB", (4, 4))]}, features=Features({"image": Image()})).to_parquet(
        str(plain / "data" / "train-00000-of-00001.parquet"))
    with pytest.raises(ValueError, match="missing or wrong semantic"):
        SEPTrainer(small_args({"sota": str(plain)}, tmp_path))
    with pytest.raises(ValueError, match="cannot load"):
        SEPTrainer(small_args({"sota": str(tmp_path / "nowhere")}, tmp_path))
    with pytest.raises(ValueError, match="smaller than the number of subsets"):
        SEPTrainer(small_args(data, tmp_path, batch_size=2))
    with pytest.raises(ValueError, match="not available"):
        SEPTrainer(small_args(data, tmp_path, backbone="nobody-samrs/no-such-backbone"))


def test_schedule_is_cosine_from_lr_to_min_lr_over_max_steps():
    # transformers' get_cosine_with_min_lr_schedule_with_warmup (no warmup) must give, at every optimizer
    # step 0..max_steps, exactly the cosine the run documents: min_lr + (lr - min_lr) * (1 + cos(pi t)) / 2.
    import math

    from samrs_hf.sep.training import build_optimizer

    lr, min_lr, max_steps = 1e-3, 5e-6, 40
    optimizer, scheduler = build_optimizer(torch.nn.Linear(2, 2), lr, 0.05, min_lr, max_steps)
    seen = []
    for _ in range(max_steps + 1):
        seen.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    floor = min_lr / lr
    expected = [lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (s / max_steps))))
                for s in range(max_steps + 1)]
    assert seen == expected  # bit for bit: the hand-written schedule this replaced computed the same
    assert seen[0] == lr and seen[-1] == pytest.approx(min_lr, rel=1e-12)
    assert all(a > b for a, b in zip(seen, seen[1:]))
    # --lr 0 gives a zero schedule rather than dividing by zero.
    _, zero = build_optimizer(torch.nn.Linear(2, 2), 0.0, 0.0, 0.0, 3)
    assert zero.get_last_lr() == [0.0]


def test_options_are_checked_once_at_the_edge(data, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("train_sep", REPO / "builders" / "train_sep.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    base = ["--dataset", f"sota={data['sota']}", "--output-dir", str(tmp_path / "run")]
    for extra, message in ((["--max-steps", "0"], "--max-steps must be positive, got 0"),
                           (["--num-workers", "-1"], "--num-workers must be non-negative, got -1"),
                           (["--dataset", f"sota={data['sior']}"], "--dataset sota given twice"),
                           (["--resume", "--overwrite"], "pass one")):
        capsys.readouterr()
        assert builder.main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("train_sep: error: ") and message in err[0], err
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit) as exc:  # argparse's own usage errors keep exit code 2
        builder.main([*base, "--mixed-precision", "fp8"])
    assert exc.value.code == 2
    with pytest.raises(ValueError, match="--batch-size must be positive"):
        small_args(data, tmp_path, batch_size=0)
    args = small_args(data, tmp_path)
    assert list(args.datasets) == list(data) and args.mixed_precision == "no"
