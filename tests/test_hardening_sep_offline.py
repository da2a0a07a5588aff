"""Hardening (#16): SEP runs that are not written over, resumes that log each step once and survive a
corrupt checkpoint state; Hub ids that fail fast offline (cache first, one request, one line); backbone
folders and cached backbone ids that load without transformers' ``repo_exists`` lookup."""

import importlib.util
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from samrs_hf.sep.pretrain import SEPTrainer, TrainArgs
import support_sep
from support_sep import sep_subsets

REPO = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return sep_subsets(tmp_path_factory.mktemp("sep-data"))


def small_args(data, out, **kw) -> TrainArgs:
    return support_sep.small_args(data, out, **{"lr": 3e-3, "checkpoint_every": 2, **kw})


def builder(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "builders" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def logged_steps(out) -> list[int]:
    return [json.loads(line)["step"] for line in (Path(out) / "train_log.jsonl").read_text().splitlines()]


# -- 7. SEP runs ----------------------------------------------------------------------------------
def test_rerun_into_an_earlier_run_is_refused_and_overwrite_removes_only_that_run(data, tmp_path, capsys):
    out = tmp_path / "run"
    SEPTrainer(small_args(data, out)).train()
    (out / "notes.txt").write_text("mine")
    (out / "checkpoints" / "keep.txt").write_text("mine too")
    weights = (out / "model.safetensors").read_bytes()

    argv = ["--dataset", f"sota={data['sota']}", "--dataset", f"sior={data['sior']}", "--backbone", "tiny-resnet",
            "--output-dir", str(out), "--max-steps", "1", "--batch-size", "4", "--crop-size", "32",
            "--hidden-size", "8", "--num-workers", "0", "--checkpoint-every", "0", "--eval-crop-size", "32",
            "--eval-max-samples", "2"]
    train_sep = builder("train_sep")
    capsys.readouterr()
    assert train_sep.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds an earlier run" in err[0] and "--overwrite" in err[0] and "--resume" in err[0]
    assert (out / "model.safetensors").read_bytes() == weights and len(logged_steps(out)) == 4

    assert train_sep.main([*argv, "--resume", "--overwrite"]) == 2
    assert "pass one" in capsys.readouterr().err

    assert train_sep.main([*argv, "--overwrite"]) == 0
    assert (out / "model.safetensors").read_bytes() != weights
    assert logged_steps(out) == [1]  # the earlier run's 4 lines are gone, not appended to
    assert not list((out / "checkpoints").glob("step-*"))  # its checkpoints too (this run wrote none)
    assert (out / "notes.txt").read_text() == "mine" and (out / "checkpoints" / "keep.txt").is_file()


def test_finetune_into_an_earlier_model_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "ft"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"earlier")
    argv = ["--task", "potsdam", "--root", str(tmp_path / "no-such-root"), "--init", "tiny-resnet",
            "--output-dir", str(out), "--cpu", "--num-workers", "0"]
    finetune = builder("finetune")
    assert finetune.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds an earlier run (model.safetensors)" in err[0] and "--overwrite" in err[0]
    # --overwrite gets past the check (and fails on the missing data), and nothing is deleted before that
    assert finetune.main([*argv, "--overwrite"]) == 2
    assert "earlier run" not in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == b"earlier"


def test_resume_logs_each_step_once(data, tmp_path):
    SEPTrainer(small_args(data, tmp_path)).train()
    shutil.rmtree(tmp_path / "checkpoints" / "step-00000004")  # as if killed while saving step 4
    assert logged_steps(tmp_path) == [1, 2, 3, 4]
    resumed = SEPTrainer(small_args(data, tmp_path, resume=True))
    assert resumed.start_step == 2
    result = resumed.train()
    assert logged_steps(tmp_path) == [1, 2, 3, 4]  # steps 3 and 4 were trained again, and logged once
    assert [r["step"] for r in result["history"]] == [1, 2, 3, 4]


def test_corrupt_checkpoint_state_falls_back_to_the_previous_checkpoint(data, tmp_path, caplog):
    full = SEPTrainer(small_args(data, tmp_path)).train()
    assert full["steps"] == 4
    final = load_file(tmp_path / "model.safetensors")
    newest = tmp_path / "checkpoints" / "step-00000004" / "sep_state.json"
    newest.write_text("")  # e.g. a disk that filled up
    with caplog.at_level(logging.WARNING):
        resumed = SEPTrainer(small_args(data, tmp_path, resume=True))
    assert resumed.start_step == 2
    assert str(newest) in caplog.text and "Expecting value" in caplog.text and "step-00000002" in caplog.text
    resumed.train()
    assert logged_steps(tmp_path) == [1, 2, 3, 4]
    again = load_file(tmp_path / "model.safetensors")
    assert all(torch.equal(final[k], again[k]) for k in final)  # steps 3-4 retrained to the same weights

    for state in (tmp_path / "checkpoints").glob("step-*/sep_state.json"):
        state.write_text("{\"step\": ")
    with pytest.raises(ValueError, match=r"no usable checkpoint.*step-00000004/sep_state.json.*"
                                         r"step-00000002/sep_state.json"):
        SEPTrainer(small_args(data, tmp_path, resume=True))


# -- 14. offline: cache first, one request, one line --------------------------------------------------
@pytest.fixture
def network(monkeypatch, tmp_path):
    """Online mode with an empty Hub cache; every HTTP request fails to connect, and those for models and
    datasets are counted (not huggingface_hub's own once-per-process, 3 s, agent-registry fetch)."""
    import datasets
    import httpx2
    import huggingface_hub.constants as hc

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    calls = []

    def send(self, request, **kwargs):
        if request.url.path != "/api/agent-harnesses":
            calls.append(f"{request.method} {request.url}")
        if len(calls) > 3:  # retrying: fail now rather than after ~30 s of back-off
            raise AssertionError(f"requests: {calls}")
        raise httpx2.ConnectError("no network here", request=request)

    monkeypatch.setattr(httpx2.Client, "send", send)
    return calls


@pytest.fixture
def offline(network, monkeypatch):
    import datasets
    import huggingface_hub.constants as hc

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return network


def one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


def test_sam_hub_id_not_cached_is_one_request_and_one_line(network, capfd):
    from samrs_hf.sam.loading import ModelLoadError, load_sam

    with pytest.raises(ModelLoadError) as exc:
        load_sam("facebook/sam-vit-huge")
    assert one_line(exc).startswith("facebook/sam-vit-huge: not a local folder nor in the local Hugging Face cache, "
                                    "and the Hub is unreachable")
    assert "tiny-random" in str(exc.value)
    assert len(network) == 1, network
    assert capfd.readouterr().err == ""  # no retry warnings


def test_sam_hub_id_offline_makes_no_request(offline):
    from samrs_hf.sam.loading import ModelLoadError, load_sam

    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE is set"):
        load_sam("facebook/sam-vit-huge")
    assert offline == []


def test_load_of_an_unknown_dataset_is_one_request_and_one_line(network, capfd):
    from samrs_hf.hub.repo import load
    from samrs_hf.common.hub_ids import HubUnreachableError

    with pytest.raises(HubUnreachableError) as exc:
        load("hub/typo")
    assert one_line(exc).startswith("hub/typo: not a local folder nor in the local Hugging Face cache, and the Hub "
                                    "is unreachable")
    assert len(network) == 1 and capfd.readouterr().err == ""


def test_load_offline_makes_no_request(offline):
    from samrs_hf.hub.repo import load
    from samrs_hf.common.hub_ids import HubError

    with pytest.raises(HubError, match="hub/typo: .*HF_HUB_OFFLINE is set"):
        load("hub/typo")
    assert offline == []


def test_load_with_the_hub_unreachable_serves_the_datasets_cache_after_one_request(data, network, tmp_path,
                                                                                  monkeypatch):
    import datasets

    from samrs_hf.hub.repo import load

    # The datasets cache an earlier `load("samrs-test/sota")` leaves: the arrow files of its splits.
    cache = tmp_path / "datasets-cache"
    datasets.load_dataset(data["sota"], cache_dir=str(cache))
    built = next(p for p in (cache / "sota").glob("default/0.0.0/*") if p.is_dir())
    shutil.copytree(built, cache / "samrs-test___sota" / built.relative_to(cache / "sota"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))
    ds = load("samrs-test/sota")
    assert ds["train"].num_rows == 12 and ds.id2label[0] == "large-vehicle"
    assert len(network) == 1


def test_sep_backbone_hub_id_not_cached_is_one_request_and_one_line(data, network, tmp_path, capsys):
    train_sep = builder("train_sep")
    assert train_sep.main(["--dataset", f"sota={data['sota']}", "--backbone", "resnet50", "--output-dir",
                           str(tmp_path / "run"), "--max-steps", "1", "--batch-size", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "microsoft/resnet-50" in err[0] and "Hub is unreachable" in err[0], err
    assert "--backbone tiny-resnet" in err[0]
    assert len(network) == 1, network


def test_eval_sep_of_an_uncached_hub_model_is_one_request_and_one_line(data, network, capsys):
    from samrs_hf.cli import main as cli_main

    assert cli_main(["eval-sep", "samrs-test/sep-r50", "--dataset", f"sota={data['sota']}", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("samrs eval-sep: error: samrs-test/sep-r50: not a local folder nor")
    assert len(network) == 1, network


def test_sep_backbone_hub_id_offline_makes_no_request(offline):
    from samrs_hf.sep import resolve_backbone

    with pytest.raises(ValueError, match=r"'resnet50' \(microsoft/resnet-50\) is not available: .*HF_HUB_OFFLINE"):
        resolve_backbone("resnet50")
    assert offline == []


# -- 15. backbone folders and cached backbone ids ---------------------------------------------------
def saved_backbone(kind: str, folder: Path):
    from transformers import MODEL_FOR_BACKBONE_MAPPING

    from samrs_hf.sep.configuration_sep import tiny_backbone_config

    config = tiny_backbone_config(kind)
    torch.manual_seed(7)
    backbone = MODEL_FOR_BACKBONE_MAPPING[type(config)](config)
    with torch.no_grad():
        for p in backbone.parameters():
            p.normal_()
    backbone.save_pretrained(folder)
    return backbone.state_dict()


@pytest.fixture
def no_repo_exists(monkeypatch):
    from huggingface_hub import HfApi

    def refuse(self, repo_id, *args, **kwargs):
        raise AssertionError(f"repo_exists({repo_id!r}) called")

    monkeypatch.setattr(HfApi, "repo_exists", refuse)


@pytest.mark.parametrize("kind", ["resnet", "convnext"])
def test_backbone_folder_loads_its_weights_without_any_hub_lookup(kind, tmp_path, network, no_repo_exists):
    from samrs_hf.sep import SEPForSemanticSegmentation
    from samrs_hf.sep.finetune import finetune_model

    folder = tmp_path / f"tiny-{kind}"  # absolute: transformers' repo_exists raised "Repo id must be ..."
    expected = saved_backbone(kind, folder)
    sep = SEPForSemanticSegmentation.from_backbone(str(folder))
    upernet, init_kind = finetune_model(str(folder), ["a", "b"])
    assert init_kind == "backbone"
    for model in (sep, upernet):
        got = model.backbone.state_dict()
        assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in got)
    assert network == []


def test_cached_backbone_id_loads_offline_and_cache_first(tmp_path, offline, no_repo_exists, monkeypatch):
    import huggingface_hub.constants as hc

    from samrs_hf.sep import SEPForSemanticSegmentation

    # The Hub cache layout hf_hub_download leaves: refs/main -> snapshots/<commit>/<files>.
    repo = Path(hc.HF_HUB_CACHE) / "models--samrs-test--tiny-convnext"
    expected = saved_backbone("convnext", repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)

    got = SEPForSemanticSegmentation.from_backbone("samrs-test/tiny-convnext").backbone.state_dict()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)  # online: the cached copy is still used, no request
    got = SEPForSemanticSegmentation.from_backbone("samrs-test/tiny-convnext").backbone.state_dict()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert offline == []
