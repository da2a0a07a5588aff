"""samrs push fails cleanly without a Hub; samrs_hf.load attaches the class table."""

import hashlib
import os
import subprocess
import sys

import pytest

from samrs_hf.sources.classes import get_class_table
from samrs_hf.cli import main as cli_main
from samrs_hf.hub.repo import PushError, load, push
from samrs_hf.hub.packaging import package
from support_builds import SIOR_ITEMS, make_build, make_item

SECRET = "hf_samrsTestTokenThatMustNeverBePrinted"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    build = make_build(root / "build", "sior", SIOR_ITEMS)
    package([build], root / "hub", val_fraction=0.0, progress=False, stats=False)
    return root / "hub"


def snapshot(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_push_offline_fails_cleanly(hub, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    before = snapshot(hub)
    with pytest.raises(PushError, match="offline"):
        push(hub, "samrs/sior")
    assert cli_main(["push", str(hub), "--repo-id", "samrs/sior", "--private"]) == 1
    err = capsys.readouterr().err
    assert "samrs push: error:" in err and "offline" in err and SECRET not in err
    assert snapshot(hub) == before


def test_push_unreachable_endpoint(hub):
    env = dict(os.environ, HF_HUB_OFFLINE="0", HF_ENDPOINT="http://127.0.0.1:9", HF_TOKEN=SECRET)
    before = snapshot(hub)
    proc = subprocess.run([sys.executable, "-m", "samrs_hf", "push", str(hub), "--repo-id", "samrs/sior",
                           "--revision", "v1"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "cannot reach the Hub" in proc.stderr and SECRET not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert snapshot(hub) == before


def test_push_uploads_the_folder_with_the_installed_huggingface_hub(hub, monkeypatch, capsys):
    """With a reachable Hub, push must call an upload method this huggingface_hub has (2.x dropped
    ``upload_large_folder``; ``upload_folder`` is the resumable one there)."""
    from huggingface_hub import HfApi

    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create_repo", repo_id, kw))
                        or f"https://huggingface.co/datasets/{repo_id}")
    monkeypatch.setattr(HfApi, "create_branch", lambda self, repo_id, **kw: calls.append(("create_branch", repo_id, kw)))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", kw["repo_id"], kw)))
    monkeypatch.delattr(HfApi, "upload_large_folder", raising=False)  # as in huggingface_hub 2.x
    assert cli_main(["push", str(hub), "--repo-id", "me/sior", "--private", "--revision", "v1"]) == 0
    assert "pushed" in capsys.readouterr().out
    assert [c[:2] for c in calls] == [("create_repo", "me/sior"), ("create_branch", "me/sior"), ("upload", "me/sior")]
    assert calls[0][2]["private"] is True and calls[1][2]["branch"] == "v1"
    upload = calls[2][2]
    assert upload["folder_path"] == str(hub) and upload["repo_type"] == "dataset" and upload["revision"] == "v1"
    assert ".samrs-partial/**" in upload["ignore_patterns"]


def test_push_refuses_a_folder_that_is_not_packaged(tmp_path):
    with pytest.raises(FileNotFoundError, match="samrs package"):
        push(tmp_path, "samrs/x")


def test_load_attaches_class_table(hub):
    ds = load(hub)
    table = get_class_table("sior")
    assert ds.class_table == table and ds["train"].class_table == table
    assert ds["test"].palette == table.palette and ds["train"].id2label[19] == "windmill"
    assert ds["train"].label2id["airplane"] == 0
    one = load(hub, split="test")
    assert one.class_table == table and one.num_rows == 2


def test_load_sees_new_rows_in_a_repackaged_folder_of_the_same_name(hub, tmp_path):
    """datasets caches a local folder by name + README; load() must still see changed files."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    copy = tmp_path / hub.name
    shutil.copytree(hub, copy)
    first = load(copy)
    shard = next((copy / "data").glob("train-*.parquet"))
    table = pq.read_table(shard)
    names = table.column("file_name").to_pylist()
    pq.write_table(table.set_column(table.schema.get_field_index("file_name"), "file_name",
                                     pa.array([f"{n}-new" for n in names])), shard)
    assert sorted(load(copy)["train"]["file_name"]) == sorted(f"{n}-new" for n in first["train"]["file_name"])


def test_card_of_a_package_without_stats_says_why(hub):
    readme = (hub / "README.md").read_text()
    assert "## Statistics" in readme and "--no-stats" in readme and "unavailable" not in readme


def test_load_names_a_custom_class_table_after_its_subset(tmp_path):
    """A custom build (e.g. COCO-format data) keeps its own subset name, as its rows and card do."""
    from samrs_hf.build import layout
    from samrs_hf.sources.classes import class_table_from_names

    table = class_table_from_names("mydata", ("car", "tree"))
    build = tmp_path / "build"
    make_item(build, "a", "a", None, [("car", (1, 1, 5, 5)), ("tree", (6, 6, 9, 9))], table)
    layout.atomic_write(build / "build.json", layout.json_bytes(
        {"subset": "mydata", "classes": list(table.names), "model": {"spec": "tiny-random", "random": True},
         "prompt": "H-Box", "source": "synthetic", "format": "coco"}))
    package([build], tmp_path / "hub", name="my-release", val_fraction=0.0, progress=False, stats=False)
    ds = load(tmp_path / "hub")
    assert ds["train"][0]["subset"] == "mydata"
    assert ds.class_table == table and ds["train"].class_table.subset == "mydata"
    assert ds.id2label == {0: "car", 1: "tree"}
