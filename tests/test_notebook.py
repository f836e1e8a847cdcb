"""notebooks/S10.ipynb runs top to bottom (on the tiny synthetic CIFAR-10, quick mode)."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "S10.ipynb"


def test_notebook_executes(tiny_bin, tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARKIT_DATA", str(tiny_bin))
    monkeypatch.setenv("CIFARKIT_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("CIFARKIT_NOTEBOOK_OUT", str(tmp_path / "out"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "test accuracy" in text and "suggested max lr" in text and "412,944" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 8
    assert (tmp_path / "out" / "train" / "report.html").exists()
