"""`cifarkit compare`: the table of what differs, the overlaid curves page, folders of runs, bad input."""

import base64
import json
import re
import shutil

import pytest

from cifarkit.cli.main import main


@pytest.fixture(scope="module")
def two_runs(trained_run, tmp_path_factory):
    """(folder, [run a, run b]): the shared finished run and a 1-epoch one with another max lr and seed."""
    from cifarkit import TrainConfig, train

    root, _ = trained_run
    runs = tmp_path_factory.mktemp("compare")
    shutil.copytree(root / "run", runs / "a")
    config = TrainConfig(
        model="s10-small",
        epochs=1,
        batch_size=50,
        max_lr=2e-3,
        seed=1,
        data_dir=str(root / "data"),
        threads=1,
        precision="fp32",
    )
    train(config, runs / "b", progress=False)
    return runs, [runs / "a", runs / "b"]


def test_table_shows_only_the_settings_that_differ_and_the_results(two_runs, capsys):
    runs, (a, b) = two_runs
    assert main(["compare", str(a), str(b)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert header[:3] == ["run", "preset", "dataset"]
    assert {"epochs", "max_lr", "seed"} <= set(header)
    assert not {"batch_size", "model", "data_dir", "weight_decay"} & set(header)  # equal, or where not what
    results = json.loads((a / "results.json").read_text())
    assert lines[1].split()[0] == "a" and f"{results['test_accuracy']:.2%}" in lines[1]
    assert "finished" in lines[1] and "finished" in lines[2]


def test_html_page_overlays_the_runs_and_is_self_contained(two_runs, tmp_path, capsys):
    runs, (a, b) = two_runs
    odd = runs.parent / "odd" / "<i>x&"  # a name read from disk is escaped
    shutil.copytree(b, odd)
    out = tmp_path / "compare.html"
    assert main(["compare", str(a), str(odd), "--out", str(out)]) == 0
    page = out.read_text()
    assert "<i>x&" not in page and "&lt;i&gt;x&amp;" in page
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == 1 and base64.b64decode(images[0])[:4] == b"\x89PNG"
    text = re.sub(r"data:image/png;base64,[^']+", "", page)  # the page's own text, not its image bytes
    assert "src='http" not in text and "note" not in text.lower()


def test_a_folder_of_run_folders_expands_in_natural_order_and_unfinished_runs_are_shown(two_runs, tmp_path, capsys):
    _, (a, b) = two_runs
    bench = tmp_path / "bench"  # as benchmarks/time_to_accuracy.py --out leaves it
    for seed in (0, 2, 10):
        shutil.copytree(b, bench / f"seed{seed}")
    (bench / "summary.txt").write_text("not a run")
    (bench / "seed10" / "results.json").unlink()  # interrupted before its ending
    shutil.copytree(a, bench / "baseline" / "seed0")  # --baseline's seed, one level down
    assert main(["compare", str(bench)]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows == ["bench/seed0", "seed2", "seed10", "baseline/seed0"]
    from cifarkit.report.compare import format_table, load_runs

    text = format_table(load_runs([bench]))
    assert "unfinished (1/1 epochs)" in text.splitlines()[3]


def test_runs_of_different_datasets_are_listed_but_their_accuracy_is_not_overlaid(two_runs, tmp_path, monkeypatch):
    _, (a, b) = two_runs
    other = tmp_path / "c100"
    shutil.copytree(b, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "dataset": "cifar100"}))
    from cifarkit.report import compare as compare_module

    panels = []
    real = compare_module.plot_compare

    def spy(runs):
        panels.append(compare_module.mixed_datasets_note(runs) is None)
        return real(runs)

    monkeypatch.setattr(compare_module, "plot_compare", spy)
    text, _ = compare_module.compare([a, other], tmp_path / "c.html")
    assert "different datasets (cifar10, cifar100" in text and "not overlaid" in text
    assert "not overlaid" in (tmp_path / "c.html").read_text()
    assert panels == [False]
    fig_runs = compare_module.load_runs([a, b])
    assert compare_module.mixed_datasets_note(fig_runs) is None


def test_bad_input_is_a_user_error_naming_it(two_runs, tmp_path, capsys):
    _, (a, b) = two_runs
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty")]) == 2
    assert "not a cifarkit run folder" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["compare", str(a), "--out", str(b / "report.html")]) == 2  # never onto a run's file
    assert "a file of the run" in capsys.readouterr().err
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "study.db").write_bytes(b"SQLite format 3\0")
    for name in ("study.db", "best_config.json"):  # nor onto a sweep's study or its best settings
        assert main(["compare", str(a), "--out", str(sweep / name)]) == 2
        assert f"{sweep / name}: a file of the sweep in {sweep}" in capsys.readouterr().err
    assert (sweep / "study.db").read_bytes() == b"SQLite format 3\0"
    assert main(["compare", str(a), "--out", str(sweep / "compare.html")]) == 0  # a page of its own beside them
    loose = tmp_path / "copy.pt"  # a checkpoint outside any run folder is not replaced either
    shutil.copy(a / "checkpoints" / "last.pt", loose)
    assert main(["compare", str(a), "--out", str(loose)]) == 2
    assert "an existing model file (.pt)" in capsys.readouterr().err
    assert loose.read_bytes() == (a / "checkpoints" / "last.pt").read_bytes()
    broken = tmp_path / "broken"
    shutil.copytree(b, broken)
    (broken / "results.json").write_text("{not json")
    assert main(["compare", str(a), str(broken)]) == 2
    assert "results.json: not valid JSON" in capsys.readouterr().err


def test_a_run_named_twice_is_one_row_and_relative_paths_get_their_folder_in_the_label(
    two_runs, tmp_path, monkeypatch, capsys
):
    root, (a, b) = two_runs
    assert main(["compare", str(a), str(root), str(a)]) == 0  # a, then root's a and b: a once
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["a", "b"]
    shutil.copytree(a, tmp_path / "other" / "a")
    monkeypatch.chdir(tmp_path / "other")
    assert main(["compare", "a", str(a)]) == 0  # two runs named a: each labelled with its folder
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["other/a", f"{root.name}/a"]
    for bench in ("bench1", "bench2"):  # the benchmark layout twice: BENCH/base/seed0
        shutil.copytree(a, tmp_path / bench / "base" / "seed0")
    assert main(["compare", str(tmp_path / "bench1"), str(tmp_path / "bench2")]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == [
        "bench1/base/seed0",
        "bench2/base/seed0",
    ]


def test_a_max_lr_found_by_the_range_test_is_shown_as_the_value_used(two_runs, tmp_path, capsys):
    _, (a, b) = two_runs
    found = tmp_path / "found"
    shutil.copytree(a, found)
    for name, change in (("config.json", {"max_lr": "find"}), ("results.json", {"max_lr": 0.01234})):
        values = json.loads((found / name).read_text())
        (found / name).write_text(json.dumps({**values, **change}))
    assert main(["compare", str(found), str(b)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "max_lr" in lines[0] and "0.01234 (find)" in lines[1]


def test_every_panel_names_every_run_in_a_colour_and_marker_of_its_own(two_runs, tmp_path, monkeypatch):
    """Twelve runs (past tab10's ten colours), among them `_a` and `_b` (names matplotlib's legend would hide) and
    `$\\badcmd$` (mathtext that raised inside matplotlib); the 1-epoch runs' single points are markers."""
    from matplotlib.colors import to_hex

    from cifarkit.report import compare as compare_module
    from cifarkit.report import drawing as report

    _, (a, b) = two_runs
    many = tmp_path / "many"
    for i, name in enumerate(["_a", "_b", "$\\badcmd$", *(f"run{i}" for i in range(9))]):
        shutil.copytree(b if i % 2 else a, many / name, ignore=shutil.ignore_patterns("*.pt", ".cifarkit.lock"))
    figures = []
    real = report.png_bytes
    monkeypatch.setattr(report, "png_bytes", lambda fig: figures.append(fig) or real(fig))
    _, loaded = compare_module.compare([many], tmp_path / "many.html")
    names = [run.name for run in loaded]
    assert len(figures) == 1 and {"_a", "_b", "$\\badcmd$"} <= set(names) and len(names) == 12
    panels = figures[0].axes
    assert len(panels) == 3  # accuracy, loss, lr
    for ax in panels:
        legend = ax.get_legend()
        labels = [t.get_text() for t in legend.get_texts()]
        assert labels[:12] == names, ax.get_ylabel()
        styles = [(to_hex(h.get_color()), h.get_marker()) for h in legend.legend_handles[:12]]
        assert len(set(styles)) == 12 and len({colour for colour, _ in styles[:10]}) == 10
        for line in ax.lines:  # every line carries markers, so a run of one epoch is drawn too
            assert line.get_marker() not in (None, "", "None")
    assert labels == names  # the lr panel: the runs alone
    assert [t.get_text() for t in panels[0].get_legend().get_texts()][12:] == ["train", "test"]
    one_epoch = [line for line in panels[0].lines if len(line.get_xdata()) == 1]
    assert len(one_epoch) == 2 * 6  # the six 1-epoch runs: a train and a test point each
    page = (tmp_path / "many.html").read_text()
    assert "A split evaluated once" in page and "solid: test" not in page
