"""Plots and report.html of a finished tiny run."""

import base64
import re

import numpy as np
import pytest

from cifarkit.cli.main import main
from cifarkit.rundir.run_dir import PLOTS


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
    assert f"{results['test_accuracy']:.6g}" in page and "Settings (config.json)" in page and "412,944" in page


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

    from cifarkit.report.figures import plot_confusion, plot_per_class

    drawn = {"text": 0, "bar_label": 0, "colorbar": 0}
    for cls, name in ((Axes, "text"), (Axes, "bar_label"), (Figure, "colorbar")):
        real = getattr(cls, name)
        monkeypatch.setattr(
            cls, name, lambda *a, _real=real, _name=name, **k: drawn.update({_name: drawn[_name] + 1}) or _real(*a, **k)
        )
    for n, cells, bars, colour_bars in ((10, 200, 1, 0), (100, 0, 0, 2)):
        drawn.update(text=0, bar_label=0, colorbar=0)
        classes = tuple(f"class{i}" for i in range(n))
        plot_confusion(np.random.default_rng(0).integers(0, 9, (n, n)), classes, tmp_path / f"confusion{n}.png")
        plot_per_class(np.linspace(0, 1, n), classes, tmp_path / f"per_class{n}.png")
        assert (drawn["text"], drawn["bar_label"], drawn["colorbar"]) == (cells, bars, colour_bars)
        assert (tmp_path / f"confusion{n}.png").stat().st_size > 0


def test_an_image_grid_says_when_it_has_nothing_to_show(tmp_path):
    from PIL import Image

    from cifarkit.report.image_grids import draw_cells

    assert draw_cells([], 10, "GradCAM", tmp_path / "empty.png", empty="no images (no mistakes to show)") == 1
    pixels = [(np.full((8, 8, 3), 200, dtype=np.uint8), f"image {i}") for i in range(7)]
    assert draw_cells(pixels, 3, "seven", tmp_path / "seven.png") == 3  # rows
    width, height = Image.open(tmp_path / "seven.png").size
    assert height > width  # three rows of three


def test_the_page_opens_with_a_summary_in_words_then_the_evaluations_and_says_where_a_range_test_goes(
    finished_run, tmp_path, capsys
):
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run[0], run, ignore=shutil.ignore_patterns(".cifarkit.lock"))
    results = json.loads((run / "results.json").read_text())
    assert main(["evaluate", str(run), "--tta", "flip"]) == 0  # writes RUN_DIR/evaluate-flip.json
    flip = json.loads((run / "evaluate-flip.json").read_text())
    (run / "evaluate-none.json").write_text("{not json")
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert re.findall(r"<h2>(.*?)</h2>", page)[:2] == ["Summary", "Evaluations after the run"]
    lead = page[page.index("<p class='lead'>") : page.index("<h2>Summary")]
    assert f"{results['test_accuracy']:.2%} test accuracy" in lead and "s10-small on CIFAR-10" in lead
    top = page[page.index("<h2>Summary") : page.index("<h2>Evaluations")]
    for words in (
        f"Test accuracy</th><td>{results['test_accuracy']:.2%} of 100 test images",
        "Training time",
        f"{results['train_images_per_second']:,.0f} training images/s",
        "CIFAR-10: 10 classes",
        "s10-small, 412,944 parameters",
        "Preset</th><td>s10: 3 epochs",
        "Machine</th><td>device cpu",
    ):
        assert words in top, words
    assert not {"test_accuracy", "wall_time_s", "train_images_per_second"} & set(re.findall(r"\w+", top))
    evaluations = page[page.index("<h2>Evaluations") : page.index("<h2>Per epoch")]
    assert "evaluate-flip.json" in evaluations and f"{flip['test_accuracy']:.2%}" in evaluations
    assert "evaluate-none.json" in evaluations and "not valid JSON" in evaluations  # named, not fatal
    assert "Accuracy per class (10 classes)" in evaluations and "automobile" in evaluations
    epochs = page[page.index("<h2>Per epoch") : page.index("<h2>Training curves")]
    assert (
        "<th>test accuracy</th>" in epochs and f"{results['test_accuracy']:.2%}" in epochs and "test_acc" not in epochs
    )
    assert "data-file='lr_find.png'" not in page  # the run set its max lr: where a range test would be, and how
    hint = page[page.index("<h2>LR range test") :]
    assert "no LR range test" in hint[:300] and "cifarkit lr-find --config" in hint[:800]


def test_the_summary_gives_units_and_leaves_out_what_is_missing_or_mistyped():
    from cifarkit.report.summary import summary

    sentence, rows = summary(
        {"model": "s10", "preset": "s10", "epochs": 24},
        {"test_accuracy": 0.7165, "train_images_per_second": 73.8487, "wall_time_s": 336.614},
    )
    assert sentence == "s10 on CIFAR-10 reached 71.65% test accuracy after 24 epochs in 5.6 min (337 s)."
    assert rows["Test accuracy"] == "71.65%" and rows["Training time"] == "5.6 min (337 s)"
    assert rows["Speed"] == "74 training images/s"
    _, rows = summary({}, {"test_accuracy": "high", "wall_time_s": [1], "classes": {"a": 1}, "params": None})
    assert "Test accuracy" not in rows and "Training time" not in rows and rows["Dataset"] == "CIFAR-10"


def captured_figures(monkeypatch):
    """The Figure objects the report package saves (each through drawing.png_bytes), kept for the test to look at."""
    from cifarkit.report import drawing

    figures = []
    real = drawing.png_bytes
    monkeypatch.setattr(drawing, "png_bytes", lambda fig: figures.append(fig) or real(fig))
    return figures


def schedules():
    import dataclasses

    from cifarkit import preset_config
    from cifarkit.optim.schedule import planned_schedule

    s10 = preset_config("s10")
    return [
        ([5e-5, 5e-3, 2.5e-3, 5e-7], 4),  # one epoch of four steps: the start and the peak are neighbours
        (planned_schedule(preset_config("fast"), 0.05, 98), 98),  # a steep warm-up
        (
            planned_schedule(
                dataclasses.replace(s10, epochs=2, pct_start=0.45, three_phase=True, anneal_strategy="cos"), 0.05, 10
            ),
            10,
        ),
    ]  # a gentle one


@pytest.mark.parametrize("case", range(3))
def test_each_schedule_label_sits_at_its_point_clear_of_the_line_and_the_other_labels(case, tmp_path, monkeypatch):
    from matplotlib.path import Path as LinePath
    from matplotlib.text import Text

    from cifarkit.report.figures import plot_schedule

    lrs, per_epoch = schedules()[case]
    figures = captured_figures(monkeypatch)
    plot_schedule(lrs, per_epoch, tmp_path / "schedule.png")
    figures[0].draw_without_rendering()  # the labels' places at the figure's own dpi (the PNG's was another)
    ax = figures[0].axes[0]
    line = ax.lines[0]
    points = {(round(x, 9), y) for x, y in line.get_xydata()}
    found, boxes = {}, []
    for label in ax.texts:
        name, lr, epoch = re.fullmatch(r"(\w+) (\S+)\n\(epoch (\S+)\)", label.get_text()).groups()
        x, y = label.xy
        assert (round(x, 9), y) in points and x == pytest.approx(float(epoch), abs=0.005)  # at the step it names
        assert y == pytest.approx(float(lr), rel=1e-3)
        found[name] = x
        boxes.append(Text.get_window_extent(label))  # the text alone, not the line to its point
    assert set(found) == {"start", "peak", "end"}
    assert found["start"] == pytest.approx(1 / per_epoch) and found["end"] == pytest.approx(len(lrs) / per_epoch)
    drawn = LinePath(line.get_transform().transform(line.get_xydata()))
    inside = ax.get_window_extent()
    for i, box in enumerate(boxes):
        assert not drawn.intersects_bbox(box, filled=False), ax.texts[i].get_text()
        assert not any(box.overlaps(other) for other in boxes[i + 1 :]), ax.texts[i].get_text()
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1


def test_names_holding_dollar_signs_are_drawn_as_written_and_the_callers_matplotlib_is_untouched(tmp_path, monkeypatch):
    """Class and file names come from the data: `$\\badcmd$` is not mathtext (which raised inside matplotlib)."""
    import matplotlib
    import torch
    from matplotlib.figure import Figure

    from cifarkit.report import figures as report

    bad = "$\\badcmd$"
    classes = (bad, *(f"c{i}" for i in range(9)))
    images, labels = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8), torch.arange(20) % 10
    figures = captured_figures(monkeypatch)
    report.plot_samples(images, labels, classes, tmp_path / "samples.png")
    report.plot_misclassified(
        images,
        labels,
        torch.full((20, 10), 0.1).index_fill_(1, torch.tensor([1]), 0.5),
        classes,
        tmp_path / "misclassified.png",
    )
    report.plot_confusion(np.eye(10, dtype=int), classes, tmp_path / "confusion.png")
    report.plot_per_class(np.linspace(0, 1, 10), classes, tmp_path / "per_class.png")
    report.draw_cells([(np.zeros((8, 8, 3), np.uint8), f"{bad}.png")], 1, f"GradCAM {bad}", tmp_path / "cam.png")
    drawn = [t.get_text() for fig in figures for t in fig.findobj(matplotlib.text.Text)]
    assert len(figures) == 5 and sum(bad in t for t in drawn) >= 6
    assert all((tmp_path / f"{n}.png").stat().st_size for n in ("samples", "misclassified", "confusion", "cam"))
    assert matplotlib.rcParams["text.parse_math"] is True  # the caller's own figures still read $x^2$ as maths
    assert Figure().text(0, 0, "$x^2$").get_parse_math()
