"""Plots and report.html of a finished tiny run."""
import base64
import re

import numpy as np
import pytest

from cifarkit.cli import main
from cifarkit.rundir import PLOTS


@pytest.fixture
def finished_run(trained_run):
    root, results = trained_run
    return root / "run", results


def test_every_plot_is_written(finished_run):
    run, _ = finished_run
    for name in ("curves", "lr_schedule", "samples", "augmented", "misclassified", "confusion", "per_class"):
        assert (run / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name
    assert "6,573,120" not in (run / "model.txt").read_text() and "412,944" in (run / "model.txt").read_text()


def test_report_embeds_every_plot_and_references_no_file(finished_run):
    run, results = finished_run
    page = (run / "report.html").read_text()
    sources = re.findall(r"""src=['"]([^'"]*)['"]""", page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"""href=['"](?!#)""", page)
    embedded = dict(re.findall(r"""data-file='([^']+)' src='data:image/png;base64,([^']+)'""", page))
    present = [name for name, _ in PLOTS if (run / name).exists()]
    assert sorted(embedded) == sorted(present) and len(present) >= 7
    for name in present:
        assert base64.b64decode(embedded[name]) == (run / name).read_bytes()
    assert f"{results['test_accuracy']:.6g}" in page and "Configuration" in page and "412,944" in page


def test_cli_report_rebuilds_the_page_from_the_files(finished_run, capsys):
    run, _ = finished_run
    (run / "report.html").unlink()
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").exists() and "wrote" in capsys.readouterr().out
    assert main(["report", str(run / "nope")]) == 2


def test_a_gradcam_drawn_after_the_run_joins_the_rebuilt_report(finished_run, tmp_path):
    """A run that ended without Captum has no plots/gradcam.png; `cifarkit gradcam RUN` (its default out is
    RUN_DIR/gradcam.png) and then `cifarkit report RUN` show it."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run[0], run, ignore=shutil.ignore_patterns(".cifarkit.lock"))
    (run / "gradcam.png").write_bytes((run / "plots" / "samples.png").read_bytes())
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "GradCAM drawn after the run" in page and "data-file='gradcam.png'" in page


def test_many_classes_get_a_colour_bar_not_a_number_in_every_cell(tmp_path, monkeypatch):
    """CIFAR-100's confusion matrix: 20,000 cell numbers took a minute to draw and could not be read."""
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from cifarkit.report import plot_confusion, plot_per_class

    drawn = {"text": 0, "bar_label": 0, "colorbar": 0}
    for cls, name in ((Axes, "text"), (Axes, "bar_label"), (Figure, "colorbar")):
        real = getattr(cls, name)
        monkeypatch.setattr(cls, name, lambda *a, _real=real, _name=name, **k: drawn.update(
            {_name: drawn[_name] + 1}) or _real(*a, **k))
    for n, cells, bars, colour_bars in ((10, 200, 1, 0), (100, 0, 0, 2)):
        drawn.update(text=0, bar_label=0, colorbar=0)
        classes = tuple(f"class{i}" for i in range(n))
        plot_confusion(np.random.default_rng(0).integers(0, 9, (n, n)), classes, tmp_path / f"confusion{n}.png")
        plot_per_class(np.linspace(0, 1, n), classes, tmp_path / f"per_class{n}.png")
        assert (drawn["text"], drawn["bar_label"], drawn["colorbar"]) == (cells, bars, colour_bars)
        assert (tmp_path / f"confusion{n}.png").stat().st_size > 0


def test_an_image_grid_says_when_it_has_nothing_to_show(tmp_path):
    from PIL import Image

    from cifarkit.report import draw_cells

    assert draw_cells([], 10, "GradCAM", tmp_path / "empty.png", empty="no images (no mistakes to show)") == 1
    pixels = [(np.full((8, 8, 3), 200, dtype=np.uint8), f"image {i}") for i in range(7)]
    assert draw_cells(pixels, 3, "seven", tmp_path / "seven.png") == 3  # rows
    width, height = Image.open(tmp_path / "seven.png").size
    assert height > width  # three rows of three
