"""`samrs demo` end to end (tiny-random, offline) and its model choice."""

import contextlib
import io
import json

import pytest
from PIL import Image

from samrs_hf.cli import main
from samrs_hf.demo import TINY, VIT_H, default_model


def demo_dir(tmp_path_factory):
    """One demo run per test session, shared with the notebook tests."""
    out = tmp_path_factory.getbasetemp() / "samrs-demo"
    if not (out / "hub" / "README.md").is_file():
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert main(["demo", "--out", str(out), "--model", TINY, "--n", "3"]) == 0
        (out / "printed.txt").write_text(printed.getvalue())
    return out


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    return demo_dir(tmp_path_factory)


def test_demo_end_to_end(demo, capsys):
    from datasets import load_dataset

    ds = load_dataset(str(demo / "hub"))
    assert {k: len(v) for k, v in ds.items()} == {"train": 2, "test": 1}  # the DIOR sample: 2 trainval + 1 test
    assert sum(len(ex["objects"]) for split in ds.values() for ex in split) == 8
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
