"""Official SAMRS release layout (ins/*.pkl) -> convert-release -> the packaged features."""

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from samrs_hf.cli import main as cli_main
from samrs_hf.hub.features import decode_masks, samrs_features
from samrs_hf.hub.packaging import package
from samrs_hf.sources.records import SourceError
from samrs_hf.hub.release import UnsafePickleError, convert_release, safe_load_pickle
from samrs_hf.loading_scripts import load_builder_class
from support_builds import SIOR_ITEMS, as_release, load_hub, make_build


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return make_build(tmp_path_factory.mktemp("rel") / "build", "sior", SIOR_ITEMS, random=False)


def test_safe_load_plain_data_and_old_numpy_names(tmp_path):
    value = [{"mask": {"size": [2, 3], "counts": "abc"}, "rbox": np.arange(8.0).reshape(4, 2),
              "label": np.int64(4), "size": np.uint64(7), "t": (1, 2.5, None, True)}]
    p = tmp_path / "a.pkl"
    p.write_bytes(pickle.dumps(value))
    got = safe_load_pickle(p)
    np.testing.assert_array_equal(got[0]["rbox"], value[0]["rbox"])
    assert got[0]["label"] == 4 and got[0]["t"] == (1, 2.5, None, True)
    # A pickle written by numpy < 2 names numpy.core.multiarray.
    old = pickle.dumps(value, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    p.write_bytes(old)
    np.testing.assert_array_equal(safe_load_pickle(p)[0]["rbox"], value[0]["rbox"])


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path, build):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps([{"mask": evil}]))
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl.*(posix|os)\.system"):
        safe_load_pickle(p)
    assert not marker.exists()
    # Inside a release it is a counted skip naming the file (an error with --strict).
    rel = as_release(build, tmp_path / "rel")
    shutil.copy(p, rel / "ins" / "00002.pkl")
    result = convert_release(rel, "sior", tmp_path / "hub", val_fraction=0.0, progress=False, stats=False)
    assert result.num_rows == len(SIOR_ITEMS) - 1 and result.report.counts() == {"unsafe-file": 1}
    (problem,) = result.report.problems
    assert problem.where.endswith("00002.pkl") and "system" in problem.message
    assert not marker.exists()
    assert cli_main(["convert-release", str(rel), "--subset", "sior", "--to", str(tmp_path / "hub2"),
                     "--strict", "--no-stats"]) == 2
    assert not marker.exists() and not (tmp_path / "hub2" / "data").exists()


@pytest.mark.parametrize("official", [True, False], ids=["samrs-pickle", "build-pkl"])
def test_convert_release_gives_packaged_features(tmp_path, build, official):
    rel = as_release(build, tmp_path / "SIOR", keep_json=not official, official=official)
    result = convert_release(rel, "sior", tmp_path / "hub", val_fraction=0.0, progress=False, stats=False)
    assert result.splits == {"train": 3, "test": 2}
    converted = load_hub(tmp_path / "hub")
    assert converted["train"].features == samrs_features("sior")
    package([build], tmp_path / "pkg", val_fraction=0.0, progress=False, stats=False)
    packaged = load_hub(tmp_path / "pkg")
    for split in ("train", "test"):
        a = sorted(converted[split], key=lambda e: e["file_name"])
        b = sorted(packaged[split], key=lambda e: e["file_name"])
        assert [(e["image_id"], e["file_name"]) for e in a] == [(e["image_id"], e["file_name"]) for e in b]
        for ea, eb in zip(a, b):
            np.testing.assert_array_equal(np.asarray(ea["semantic"]), np.asarray(eb["semantic"]))
            np.testing.assert_array_equal(decode_masks(ea), decode_masks(eb))
            for key in ("category", "bbox", "segmentation", "area"):
                assert ea["objects"][key] == eb["objects"][key], key
            assert all(s is None for s in ea["objects"]["score"])  # the release has no SAM scores
    ids = [i for d in converted.values() for e in d for i in e["objects"]["id"]]
    assert len(ids) == len(set(ids)) == sum(len(items[3]) for items in SIOR_ITEMS)


def test_builder_module_is_a_generator_based_builder(tmp_path, build):
    import datasets

    cls = load_builder_class("sior")
    assert issubclass(cls, datasets.GeneratorBasedBuilder) and cls.SUBSET == "sior"
    rel = as_release(build, tmp_path / "SIOR")
    builder = cls(data_dir=str(rel), cache_dir=str(tmp_path / "cache"), val_fraction=0.0)
    builder.download_and_prepare()
    ds = builder.as_dataset()
    assert ds["test"].num_rows == 2 and ds["train"].features == samrs_features("sior")


def test_wheel_ships_the_loading_scripts(tmp_path):
    """A plain (non-editable) install must still find every subset's builder."""
    import subprocess
    import sys
    import zipfile

    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    repo, src = Path(__file__).resolve().parents[1], tmp_path / "src"  # a copy: the build writes build/ in place
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(repo / name, src / name)
    shutil.copytree(repo / "samrs_hf", src / "samrs_hf", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(src)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("samrs_hf-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for subset in ("sota", "sior", "fast"):
        assert f"samrs_hf/loading_scripts/{subset}.py" in names
    with pytest.raises(FileNotFoundError, match="no loading script for subset 'coco'"):
        load_builder_class("coco")


def test_missing_image_is_counted(tmp_path, build):
    rel = as_release(build, tmp_path / "SIOR")
    (rel / "images" / "00003.png").unlink()
    result = convert_release(rel, "sior", tmp_path / "hub", val_fraction=0.0, progress=False, stats=False)
    assert result.num_rows == len(SIOR_ITEMS) - 1 and result.report.counts() == {"missing-image": 1}


def test_folder_without_pickles_is_a_clear_error(tmp_path, build):
    with pytest.raises(SourceError, match=r"no \*\.pkl instance files"):
        convert_release(build, "sior", tmp_path / "hub", progress=False, stats=False)
