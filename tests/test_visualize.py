"""`samrs visualize` and `samrs_hf.plot`: panel sizes, palette colours, errors."""

import numpy as np
import pytest
from PIL import Image
from support_scenes import make_scene_build, make_scene_hub

import samrs_hf
from samrs_hf.cli import main
from samrs_hf.analysis.stats import NotADatasetFolder, open_folder
from samrs_hf.analysis.visualize import instance_colors, semantic_to_color, visualize


def test_semantic_palette_and_instance_colours():
    sem = np.array([[0, 13], [255, 37]], np.uint8)
    rgb = semantic_to_color(sem)
    assert rgb[0, 0].tolist() == [0, 127, 255] and rgb[0, 1].tolist() == [0, 0, 255]
    assert rgb[1, 0].tolist() == [255, 255, 255]
    assert rgb[1, 1].tolist() == [0, 127, 255]  # ids past the palette cycle it, like classes.color_of
    cols = instance_colors(5)
    assert cols.shape == (5, 3) and len({tuple(c) for c in cols.round(3)}) == 5


def test_visualize_build_writes_side_by_side_pngs(tmp_path):
    build = make_scene_build(tmp_path / "b")
    out = tmp_path / "vis"
    assert main(["visualize", str(build), "--out", str(out), "--n", "8"]) == 0
    files = sorted(p.name for p in out.glob("*.png"))
    assert files == ["test_img_b.png", "train_img_a.png"]
    a = np.asarray(Image.open(out / "train_img_a.png").convert("RGB"))
    assert a.shape == (30, 3 * 40, 3)  # image | semantic | instances, each at the image's pixel size
    assert Image.open(out / "test_img_b.png").size == (150, 40)
    src = np.asarray(Image.open(build / "images" / "img_a.png").convert("RGB"))
    assert np.abs(a[:, :40].astype(int) - src).max() <= 2  # left panel is the image itself
    assert a[2, 40 + 5].tolist() == [0, 127, 255]  # airplane (class 0) in palette colour
    assert a[28, 40 + 38].tolist() == [255, 255, 255]  # unlabelled is white
    # instance panel: pixel inside the ship mask (rows 10-20, cols 10-30) is tinted, outside it is not
    assert np.abs(a[16, 80 + 20].astype(int) - src[16, 20]).max() > 20
    assert np.abs(a[27, 80 + 37].astype(int) - src[27, 37]).max() <= 2


def test_visualize_split_n_and_bad_split(tmp_path):
    build = make_scene_build(tmp_path / "b")
    written = visualize(build, tmp_path / "v", split="test", n=5)
    assert [p.name for p in written] == ["test_img_b.png"]
    assert len(visualize(build, tmp_path / "v1", n=1)) == 1
    with pytest.raises(Exception, match="no split 'nope'"):
        visualize(build, tmp_path / "v2", split="nope")


def test_plot_packaged_example_returns_figure(tmp_path):
    hub = make_scene_hub(tmp_path)
    from datasets import load_dataset

    example = load_dataset(str(hub), split="train")[0]
    fig = samrs_hf.plot(example)
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure)
    assert tuple(int(v) for v in fig.get_size_inches() * fig.dpi) == (120, 30)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts[0] == "airplane" and set(texts) == {"airplane", "ship"}  # names from the subset's table
    # (a thumbnail this small has no panel titles, and a name that would cover another is left out)
    assert open_folder(hub).kind == "hub"
    assert len(visualize(hub, tmp_path / "hv", split="train")) == 2


def test_not_a_dataset_folder(tmp_path, capsys):
    with pytest.raises(NotADatasetFolder, match="neither a samrs build"):
        visualize(tmp_path, tmp_path / "out")
    assert main(["visualize", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "no such folder" in capsys.readouterr().err
