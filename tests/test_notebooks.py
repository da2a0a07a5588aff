"""The notebooks run top to bottom, offline, on the demo data (nbclient, python3 kernel)."""

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 300


def test_the_three_notebooks_exist_with_outputs_stripped():
    assert [p.name for p in NOTEBOOKS] == ["01_load_and_explore.ipynb", "02_build_your_own.ipynb",
                                           "03_sep_pretrain_finetune.ipynb"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: outputs not stripped"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path, demo, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("SAMRS_DEMO_DIR", str(demo))
    monkeypatch.setenv("SAMRS_NOTEBOOK_WORK", str(tmp_path / "work"))
    monkeypatch.setenv("SAMRS_MODEL", "tiny-random")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert not (demo / "hub").samefile(tmp_path) and (demo / "hub" / "README.md").is_file()
