"""The notebooks run top to bottom, offline, on the demo data (nbclient, python3 kernel)."""

import shutil
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
    """As a user meets it: the notebook in a repository's notebooks/ folder (Jupyter's working directory), the
    Quick start's samrs-demo at the root, no SAMRS_DEMO_DIR / SAMRS_NOTEBOOK_WORK. Its figures come out as
    PNGs, it uses that demo (no rebuild) and it leaves nothing new in notebooks/."""
    from nbclient import NotebookClient

    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    (repo / "samrs-demo").symlink_to(demo, target_is_directory=True)
    shutil.copy(path, repo / "notebooks" / path.name)
    (tmp_path / "tmp").mkdir()
    for name in ("SAMRS_DEMO_DIR", "SAMRS_NOTEBOOK_WORK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # the notebooks' temporary work folders
    monkeypatch.setenv("SAMRS_MODEL", "tiny-random")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                   resources={"metadata": {"path": str(repo / "notebooks")}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sorted(p.name for p in (repo / "notebooks").iterdir()) == [path.name]  # no folders left there
    printed = "".join(o.get("text", "") for o in outputs)
    source = "".join(c.source for c in nb.cells if c.cell_type == "code")
    if "demo_hub()" in source:
        assert str(demo.resolve() / "hub") in printed and "has no demo dataset" not in printed
    if "samrs_hf.plot(" in source or "plt.subplots(" in source:  # shown, not printed as <Figure size ...>
        figures = [o.get("data", {}) for o in outputs if "<Figure size" in str(o.get("data", {}).get("text/plain"))]
        assert figures and all("image/png" in data for data in figures)
    assert (demo / "hub" / "README.md").is_file()


def test_demo_hub_runs_the_demo_at_the_repository_root_not_in_notebooks(tmp_path, monkeypatch, capsys):
    import samrs_hf.demo as demo_module

    ran = []
    monkeypatch.delenv("SAMRS_DEMO_DIR", raising=False)
    monkeypatch.setattr(demo_module, "run_demo", lambda out, **kw: ran.append(Path(out)))
    assert demo_module.demo_hub(tmp_path / "notebooks") == tmp_path / "samrs-demo" / "hub"
    assert ran == [tmp_path / "samrs-demo"] and "running `samrs demo" in capsys.readouterr().out
    (tmp_path / "samrs-demo" / "hub").mkdir(parents=True)
    (tmp_path / "samrs-demo" / "hub" / "README.md").write_text("---\n---\n")
    assert demo_module.demo_hub(tmp_path) == tmp_path / "samrs-demo" / "hub" and len(ran) == 1  # found, kept
    monkeypatch.setenv("SAMRS_DEMO_DIR", str(tmp_path / "elsewhere"))
    demo_module.demo_hub(tmp_path)
    assert ran[-1] == tmp_path / "elsewhere"
