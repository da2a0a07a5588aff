"""``--row-group-size`` of ``samrs package`` / ``convert-release``: the largest parquet row group, which is
what a reader holds in memory per open split."""

import pyarrow.parquet as pq
import pytest
from support_builds import SOTA_ITEMS, make_build

from samrs_hf.cli import main as cli_main


def _groups(hub):
    files = sorted((hub / "data").glob("*.parquet"))
    return [pq.ParquetFile(f).metadata.num_row_groups for f in files], \
        sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def test_row_group_size_option_sets_the_groups(tmp_path):
    build = make_build(tmp_path / "b", "sota", SOTA_ITEMS)
    common = [str(build), "--val-fraction", "0", "--no-stats"]
    assert cli_main(["package", *common, "--to", str(tmp_path / "default")]) == 0
    groups, rows = _groups(tmp_path / "default")
    assert rows > 1 and groups == [1]  # a few small rows: one group under the 100MB default
    assert cli_main(["package", *common, "--to", str(tmp_path / "small"), "--row-group-size", "1B"]) == 0
    groups, rows = _groups(tmp_path / "small")
    assert groups == [rows]  # every row larger than the limit: a group of its own


@pytest.mark.parametrize("command", ["package", "convert-release"])
def test_a_bad_row_group_size_fails_before_anything_is_read(tmp_path, capsys, command):
    args = [str(tmp_path / "missing")] + (["--subset", "sota"] if command == "convert-release" else [])
    assert cli_main([command, *args, "--to", str(tmp_path / "hub"), "--row-group-size", "lots"]) == 2
    assert "bad --row-group-size 'lots'; use e.g. 500MB" in capsys.readouterr().err
    assert not (tmp_path / "hub").exists()
