"""Issue #16, ``samrs build``: --overwrite deletes only samrs's files, one build per --out, the
fingerprint covers the model's weights, over-long patch names, builds that wrote nothing, preset formats.

Builds use ``--model tiny-random`` on the generated sources of :mod:`samrs_hf.sources.samples`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from samrs_hf import cli
from samrs_hf.build import config as build
from samrs_hf.build import outdir
from samrs_hf.sources.samples import write_coco_sample, write_dior_sample, write_dota_sample
from samrs_hf.sources.tiling import MAX_NAME_BYTES, patch_name

LAYOUT_DIRS = ("images", "gray", "color", "ins")


def samrs_build(*argv, model="tiny-random") -> int:
    return cli.main(["build", *map(str, argv), "--model", str(model), "--device", "cpu", "--no-progress"])


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` -> bytes (what a refused build must leave untouched)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dior(tmp_path_factory) -> Path:
    return write_dior_sample(tmp_path_factory.mktemp("src") / "dior")


@pytest.fixture(scope="module")
def two_images(dior, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("build") / "out"
    assert samrs_build("sior", "--source", dior, "--out", out, "--limit", "2") == 0
    return out


# ------------------------------------------------------------------------------ 4: --overwrite


def test_overwrite_refuses_a_foreign_file_and_deletes_nothing(dior, two_images, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(two_images, out)
    (out / "images" / "holiday.jpg").write_bytes(b"\xff\xd8 my holiday")
    (out / "notes.txt").write_text("mine")
    (out / "ins" / "notes.json").write_text("{}")  # a .json in ins/ is a record only beside its gray map
    before = tree(out)
    capsys.readouterr()
    assert samrs_build("sior", "--source", dior, "--out", out, "--prompt", "CP", "--overwrite") == 2
    err = capsys.readouterr().err
    assert "images/holiday.jpg" in err and "ins/notes.json" in err and "notes.txt" in err
    assert "samrs did not write" in err
    assert "pass --overwrite" not in err  # it would not help
    assert tree(out) == before
    # Without --overwrite the refusal must not recommend it either.
    assert samrs_build("sior", "--source", dior, "--out", out, "--prompt", "CP") == 2
    assert "--overwrite" not in capsys.readouterr().err
    assert tree(out) == before


def test_overwrite_deletes_exactly_the_build_files_even_of_a_killed_build(dior, two_images, tmp_path):
    """A killed build leaves a patch's image/gray/color without its ins/*.json: still samrs's files."""
    out = tmp_path / "out"
    shutil.copytree(two_images, out)
    (out / "ins" / "00002.json").unlink()  # as if killed while writing 00002
    (out / "gray" / ".00002.png.abcd_123.tmp").write_bytes(b"half")
    assert samrs_build("sior", "--source", dior, "--out", out, "--prompt", "CP", "--limit", "1",
                       "--overwrite") == 0
    left = sorted(str(p.relative_to(out)) for d in LAYOUT_DIRS for p in (out / d).iterdir())
    assert left == ["color/00001.png", "gray/00001.png", "images/00001.jpg", "ins/00001.json"]
    assert json.loads((out / "build.json").read_text())["prompt"] == "CP"


def test_out_and_source_may_not_contain_each_other(tmp_path, capsys):
    dota = write_dota_sample(tmp_path / "dota")
    flat = dota / "train"  # images/ + labelTxt/: a flat DOTA source, as the user had
    before = tree(dota)
    link = tmp_path / "link"
    link.symlink_to(flat)
    for out, how in [(flat, "is"), (flat / "samrs", "lies inside"), (dota, "holds"), (link, "is")]:
        capsys.readouterr()
        assert samrs_build("sota", "--source", flat, "--out", out, "--overwrite") == 2, out
        err = capsys.readouterr().err
        assert f"--out {how} the --source folder {flat.resolve()}" in err
    assert tree(dota) == before and not (flat / "samrs").exists()

    coco = write_coco_sample(tmp_path / "coco")
    json_file = coco / "annotations" / "instances_train.json"
    assert samrs_build("custom", "--format", "coco", "--source", json_file, "--images-dir", coco / "train",
                       "--out", coco / "train", "--overwrite") == 2
    assert "--out is the --images-dir folder" in capsys.readouterr().err
    # A COCO JSON file guards its own folder, not the folders beside it.
    assert samrs_build("custom", "--format", "coco", "--source", json_file, "--out", coco / "annotations") == 2
    assert samrs_build("custom", "--format", "coco", "--source", json_file, "--out", coco / "annotations" / "b",
                       "--limit", "1") == 0


# ------------------------------------------------------------------------------ 6: one build per --out


def test_a_running_build_holds_out_and_refuses_others(dior, tmp_path, monkeypatch, capsys):
    """While a build labels, a second one into the same --out is refused at once and writes nothing."""
    from samrs_hf.sam.engine import SamLabeler

    out = tmp_path / "out"
    argv = ["sior", "--source", dior, "--out", out, "--limit", "1"]
    seen = {}
    real_label = SamLabeler.label

    def label(self, *a, **k):
        if not seen:
            files = tree(out)
            seen["same"] = samrs_build(*argv)
            seen["same_err"] = capsys.readouterr().err
            seen["other"] = samrs_build(*argv, "--prompt", "CP")
            seen["other_err"] = capsys.readouterr().err
            seen["untouched"] = tree(out) == files
        return real_label(self, *a, **k)

    monkeypatch.setattr(SamLabeler, "label", label)
    assert samrs_build(*argv) == 0
    assert seen["same"] == 2 and seen["other"] == 2 and seen["untouched"]
    assert f"another samrs build is running in {out} (pid {os.getpid()} on" in seen["same_err"]
    assert "was built with different options (prompt: 'H-Box' -> 'CP')" in seen["other_err"]
    assert "still running" in seen["other_err"]
    monkeypatch.undo()
    assert samrs_build(*argv) == 0  # released at the end: the rerun resumes
    assert json.loads((out / "build.json").read_text())["run"]["patches_resumed"] == 1


def test_every_process_of_a_launch_stops_when_its_main_process_is_refused(dior, tmp_path, free_port):
    """The lock is the main process's; the others take its verdict instead of waiting forever."""
    import subprocess
    import sys


    out = tmp_path / "out"
    common = ["--source", str(dior), "--out", str(out), "--model", "tiny-random", "--device", "cpu", "--no-progress"]
    plan = build.resolve(build.BuildConfig("sior", dior, out, model="tiny-random"))
    lock = outdir.lock_out_dir(out, plan)  # a build of the same options is running
    try:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port), str(Path(__file__).resolve().parents[1] / "builders" / "build_sior.py"), *common]
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
    finally:
        outdir.unlock_out_dir(out, lock)
    assert proc.returncode != 0
    assert proc.stderr.count(f"another samrs build is running in {out} (pid {os.getpid()}") == 2, proc.stderr[-3000:]
    assert not (out / "ins").exists()


def test_same_model_path_with_other_weights_does_not_resume(dior, tmp_path, capsys):
    import torch

    from samrs_hf.sam.loading import load_sam

    model, _ = load_sam("tiny-random")
    folder = tmp_path / "sam"
    model.save_pretrained(folder)
    out = tmp_path / "out"
    argv = ["sior", "--source", dior, "--out", out, "--limit", "1"]
    assert samrs_build(*argv, model=folder) == 0
    weights = json.loads((out / "build.json").read_text())["model"]["weights"]
    assert weights.startswith("sha256:")
    model.save_pretrained(folder)  # the same weights written again (new mtime): still the same model
    assert samrs_build(*argv, model=folder) == 0
    assert json.loads((out / "build.json").read_text())["run"]["patches_resumed"] == 1
    with torch.no_grad():
        model.mask_decoder.iou_token.weight.add_(1.0)
    model.save_pretrained(folder)
    capsys.readouterr()
    assert samrs_build(*argv, model=folder) == 2
    err = capsys.readouterr().err
    assert "different options" in err and f"model_weights: '{weights}' -> 'sha256:" in err


def test_hub_ids_are_fingerprinted_by_the_commit_that_loads(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    calls = []
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info",
                        lambda self, repo, **kw: calls.append(repo) or SimpleNamespace(sha="c0ffee1"))
    # Not cached: the commit the Hub serves now, asked once.
    assert build.model_weights_id("org/sam") == "hub:c0ffee1" and calls == ["org/sam"]
    # Cached: the snapshot refs/main names, the one the cache-first load reads; no request.
    snapshot = tmp_path / "models--org--sam" / "snapshots" / "beef2"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "models--org--sam" / "refs").mkdir()
    (tmp_path / "models--org--sam" / "refs" / "main").write_text("beef2")
    assert build.model_weights_id("org/sam") == "hub:beef2" and calls == ["org/sam"]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert build.model_weights_id("org/sam") == "hub:beef2"
    # Offline and not cached: one line, no request.
    with pytest.raises(OSError, match="HF_HUB_OFFLINE"):
        build.model_weights_id("org/other")
    assert calls == ["org/sam"]
    assert build.model_weights_id("tiny-random") is None


# ------------------------------------------------------------------------------ 10b: long names


def test_patch_names_fit_a_file_name():
    long_id = "x" * 230 + "tail-a"
    a, b = patch_name(long_id, 1024, 824, 0), patch_name(long_id[:-1] + "b", 1024, 824, 0)
    assert a != b and a == patch_name(long_id, 1024, 824, 0) and a.endswith("__1024__824___0")
    assert a.startswith("x" * 100) and len(a.encode()) == MAX_NAME_BYTES
    # The longest temp file of the longest extension still fits 255 bytes.
    assert len(f".{a}.jpeg.abcdefgh.tmp".encode()) <= 255
    wide = patch_name("é" * 150)  # 300 bytes of UTF-8, uncut: shortened without splitting a character
    assert len(wide.encode()) <= MAX_NAME_BYTES and wide.encode().decode() == wide
    assert patch_name("P0000", 1024, 824, 0) == "P0000__1024__824___0" and patch_name("00001") == "00001"


def test_a_241_character_source_file_name_builds_and_resumes(tmp_path):
    dota = write_dota_sample(tmp_path / "dota")
    long_id = "P0002_" + "a" * (241 - len(".png") - len("P0002_"))
    for folder, ext in (("images", ".png"), ("labelTxt", ".txt")):
        (dota / "train" / folder / f"P0002{ext}").rename(dota / "train" / folder / f"{long_id}{ext}")
    out = tmp_path / "out"
    assert samrs_build("sota", "--source", dota, "--out", out) == 0
    records = [json.loads(p.read_text()) for p in (out / "ins").glob("*.json")]
    mine = [r for r in records if r["source_image"] == long_id]
    assert len(mine) == 1 and len(mine[0]["image"].encode()) <= MAX_NAME_BYTES
    assert mine[0]["image"].endswith("__1024__0___0")
    for d, ext in (("images", ".png"), ("gray", ".png"), ("color", ".png"), ("ins", ".json")):
        assert (out / d / f"{mine[0]['image']}{ext}").is_file()
    assert samrs_build("sota", "--source", dota, "--out", out) == 0  # the rerun finds them: nothing relabelled
    report = json.loads((out / "build.json").read_text())
    assert report["run"]["patches_labelled"] == 0 and report["run"]["patches_resumed"] == len(records)


# ------------------------------------------------------------------------------ 11: nothing built, preset formats


def test_a_build_that_wrote_nothing_fails_with_the_reason(dior, tmp_path, capsys):
    source = tmp_path / "dior"
    shutil.copytree(dior, source)
    for xml in (source / "Annotations" / "Horizontal Bounding Boxes").glob("*.xml"):
        xml.write_text("<annotation><object>")
    out = tmp_path / "out"
    capsys.readouterr()
    assert samrs_build("sior", "--source", source, "--out", out) == 2
    err = capsys.readouterr().err
    assert "wrote 0 images: 3 of 3 source images were skipped" in err and "garbled-annotation 3" in err
    assert json.loads((out / "build.json").read_text())["skipped"]["images"] == 3  # the report is still there


def test_a_preset_reads_its_own_format_only(dior, tmp_path, capsys):
    assert samrs_build("sota", "--format", "dior", "--source", dior, "--out", tmp_path / "a") == 2
    err = capsys.readouterr().err
    assert "samrs build sota reads --format dota only, not dior" in err and "custom --format dior" in err
    assert not (tmp_path / "a").exists()
    plan = build.resolve(build.BuildConfig("sior", dior, tmp_path / "b", format="dior", model="tiny-random"))
    assert plan.format == "dior" and plan.preset == "sior"
