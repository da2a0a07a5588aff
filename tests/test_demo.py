"""`samrs demo` end to end (tiny-random, offline) and its model choice."""

import json

from PIL import Image

from samrs_hf.cli import main
from samrs_hf.demo import TINY, VIT_H, default_model


def test_demo_end_to_end(demo, capsys):
    from datasets import load_dataset

    ds = load_dataset(str(demo / "hub"))
    assert {k: len(v) for k, v in ds.items()} == {"train": 2, "test": 1}  # the DIOR sample: 2 trainval + 1 test
    assert sum(len(ex["objects"]["id"]) for split in ds.values() for ex in split) == 8
    build = json.loads((demo / "build" / "build.json").read_text())
    assert build["model"]["random"] is True and build["subset"] == "sior"
    stats = json.loads((demo / "stats" / "stats.json").read_text())
    assert stats["table2"]["images"] == 3 and stats["table2"]["image_size"] == "800 × 800"
    assert (demo / "stats" / "class_pixels_instances.png").is_file()
    overlays = sorted((demo / "overlays").glob("*.png"))
    assert len(overlays) == 3 and Image.open(overlays[0]).size == (2400, 800)
    assert (demo / "hub" / "README.md").read_text().startswith("---")


def test_demo_prints_where_things_are(demo):
    text = (demo / "printed.txt").read_text()
    assert f"Hub dataset (parquet + README.md)  {demo / 'hub'}" in text
    assert "random weights" in text and "Next:" in text and "samrs visualize" in text


def test_default_model_uses_cached_vit_h_only(tmp_path):
    assert default_model(tmp_path) == TINY
    repo = tmp_path / "models--facebook--sam-vit-huge"
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (snap / "config.json").write_text("{}")
    assert default_model(tmp_path) == TINY  # config without weights is not a usable model
    (snap / "model.safetensors").write_bytes(b"")
    assert default_model(tmp_path) == VIT_H


def test_demo_switches_the_hub_off_before_huggingface_hub_reads_it(tmp_path):
    """huggingface_hub reads HF_HUB_OFFLINE once, at import: the demo must set it before importing
    datasets, or a cached ViT-H build may still ask the Hub (and wait on it offline)."""
    import os
    import subprocess
    import sys

    code = (
        "import samrs_hf.sources.samples as s\n"
        "def stop(root):\n"
        "    import huggingface_hub.constants as c\n"
        "    raise SystemExit(f'offline={c.HF_HUB_OFFLINE}')\n"
        "s.write_dior_sample = stop\n"
        "from samrs_hf.demo import run_demo\n"
        f"run_demo({str(tmp_path / 'd')!r}, model='tiny-random')\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "offline=True" in proc.stderr, proc.stderr[-2000:]


def test_demo_refuses_a_bad_n_before_building(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--model", TINY, "--n", "0"]) == 2
    assert "--n must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # nothing built for a run that cannot finish


def test_demo_rerun_with_smaller_n_replaces_the_overlays(demo, tmp_path, monkeypatch):
    """A re-run replaces its own outputs: overlays of an earlier, larger --n must not linger."""
    import shutil

    import samrs_hf.demo as demo_mod

    out = tmp_path / "d"
    shutil.copytree(demo / "hub", out / "hub")
    shutil.copytree(demo / "overlays", out / "overlays")  # the earlier run's 3 overlays
    monkeypatch.setattr(demo_mod, "_build_and_package", lambda *args: None)  # build + package: already in out/hub
    result = demo_mod.run_demo(out, model=TINY, n_overlays=1, progress=False)
    assert sorted((out / "overlays").glob("*.png")) == result.overlays and len(result.overlays) == 1
