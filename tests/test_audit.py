"""`cifarkit audit`: planted label flips and duplicates found (within and between the splits), the K fold runs
resumed after an interruption, `train --exclude` honoured and checked, and every bad input refused with nothing
written."""

from __future__ import annotations

import csv
import json
import re
import shutil
import sys

import numpy as np
import pytest
import torch
from conftest import synthetic_cifar, write_py_layout

from cifarkit.cli.main import main
from cifarkit.errors import UserError

TEST_FLIPS = (3, 17, 40, 61)  # test images whose label is planted wrong
TRAIN_FLIPS = (11, 50, 120)  # training images whose label is planted wrong
EXACT = (5, 7)  # test image 5 is training image 7, pixel for pixel
NEAR = (6, 9)  # test image 6 is training image 9 with a pixel changed
# A recipe that learns the synthetic colours to 100% in seconds (80 steps: BatchNorm's statistics settle)
RECIPE = {"model": "s10-small", "epochs": 4, "batch_size": 10, "max_lr": 3e-3, "threads": 1, "precision": "fp32"}


def planted() -> tuple[tuple, tuple]:
    (x, y), (tx, ty) = synthetic_cifar(20, 1), synthetic_cifar(10, 2)
    y, ty, tx = y.copy(), ty.copy(), tx.copy()
    for i in TRAIN_FLIPS:
        y[i] = (y[i] + 3) % 10
    for i in TEST_FLIPS:
        ty[i] = (ty[i] + 3) % 10
    tx[EXACT[0]], ty[EXACT[0]] = x[EXACT[1]], y[EXACT[1]]
    tx[NEAR[0]], ty[NEAR[0]] = x[NEAR[1]], y[NEAR[1]]
    tx[NEAR[0], 0, 0, 0] ^= 1
    return (x, y), (tx, ty)


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """(root, run folder): a finished run on data with planted label flips and train/test duplicates."""
    from cifarkit import TrainConfig, train

    root = tmp_path_factory.mktemp("audit")
    write_py_layout(root / "data", *planted())
    train(TrainConfig(**RECIPE, data_dir=str(root / "data")), root / "run", progress=False)
    return root, root / "run"


@pytest.fixture(scope="module")
def audited(planted_run):
    """The summary and rows of an audit of both splits with 2 folds."""
    from cifarkit import audit

    _, run = planted_run
    # each fold trains on half the images: twice the epochs give it the run's 80 steps
    summary = audit(run, split="all", folds=2, progress=False, fold_overrides={"epochs": 8})
    with open(run / "audit" / "audit.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return summary, rows


def flagged(rows, split, issue):
    return {int(r["image"]) for r in rows if r["split"] == split and r["issue"] == issue}


def test_planted_label_flips_are_found_in_both_splits(audited):
    summary, rows = audited
    assert set(TEST_FLIPS) <= flagged(rows, "test", "label")
    # the fold models learn from half the images, and less surely: most of the planted flips, not every one
    assert len(set(TRAIN_FLIPS) & flagged(rows, "train", "label")) >= 2
    # a well-separated set: what is flagged is mostly what was planted
    assert len(flagged(rows, "test", "label") - set(TEST_FLIPS)) <= 2
    assert len(flagged(rows, "train", "label") - set(TRAIN_FLIPS)) <= 2
    row = next(r for r in rows if r["split"] == "test" and r["image"] == str(TEST_FLIPS[0]))
    assert row["given_label"] != row["suggested_label"] and float(row["confidence"]) > 0.5
    assert summary["counts"]["per_issue"]["test"]["label"] == len(flagged(rows, "test", "label"))


def test_planted_duplicates_between_the_splits_are_found_exact_and_near(audited, planted_run):
    summary, rows = audited
    pairs = {
        (r["image"], r["duplicate_image"]): float(r["score"])
        for r in rows
        if r["issue"] == "train_test_duplicate" and r["split"] == "test"
    }
    assert pairs[str(EXACT[0]), str(EXACT[1])] == 0.0
    assert pairs[str(NEAR[0]), str(NEAR[1])] < summary["train_test_duplicates"]["threshold_distance"]
    assert summary["train_test_duplicates"]["exact"] == 1  # the near pair is found by its embedding
    _, run = planted_run
    excluded = (run / "audit" / "exclude.txt").read_text()
    entries = [line.split("#")[0].strip() for line in excluded.splitlines() if not line.startswith("#")]
    assert {str(EXACT[1]), str(NEAR[1])} | {str(i) for i in flagged(rows, "train", "label")} == set(entries)


def test_the_page_is_self_contained_and_the_json_holds_counts_settings_and_timing(audited, planted_run):
    _, run = planted_run
    page = (run / "audit" / "audit.html").read_text()
    assert "<script" not in page and not re.search(r"src='(?!data:image/png;base64,)", page)
    assert page.count("data:image/png;base64,") >= 2 * len(TEST_FLIPS)
    saved = json.loads((run / "audit" / "audit.json").read_text())
    assert saved["settings"]["folds"] == 2 and saved["settings"]["fold_recipe"]["epochs"] == 8
    assert set(saved["timing"]) >= {"embeddings_s", "folds_s", "cleanlab_s", "page_s", "total_s"}
    peaks = list(saved["memory_peak_mib"].values())  # the process's peak when each part ended: never falls
    assert list(saved["memory_peak_mib"]) == ["data", "embeddings", "folds", "cleanlab", "page"]
    assert peaks[0] > 0 and peaks == sorted(peaks)
    assert saved["images"] == {"train": 200, "test": 100}
    assert sum(saved["counts"]["per_class"]["test"]["label"].values()) == saved["counts"]["per_issue"]["test"]["label"]
    folds = [json.loads((run / "audit" / fold / "results.json").read_text()) for fold in ("fold-1", "fold-2")]
    assert sum(r["n_train"] for r in folds) == sum(r["n_test"] for r in folds) == 200  # run folders compare reads


def test_names_from_the_data_are_escaped_on_the_page():
    from cifarkit.audit.page import write_page

    summary = {
        "run": "<b>run</b>",
        "settings_line": "x",
        "images": {"test": 1},
        "counts": {"per_issue": {"test": {"label": 1}}, "per_class": {"test": {"label": {"<i>c&": 1}}}},
        "images_per_class": {"test": {"<i>c&": 1}},
    }
    row = {
        "split": "test",
        "image": "train/<i>c&/a'b.png",
        "issue": "label",
        "score": 0.1,
        "given_label": "<i>c&",
        "suggested_label": "d",
        "confidence": 0.9,
        "duplicate_split": "",
        "duplicate_image": "",
    }
    page = write_page([row], summary, lambda s, n: torch.zeros(3, 4, 4, dtype=torch.uint8), ("<i>c&", "d"))
    assert "<i>" not in page and "<b>" not in page and "&lt;i&gt;c&amp;" in page and "a&#x27;b.png" in page


def test_an_interrupted_audit_reuses_the_finished_fold_and_resumes_the_other(
    planted_run, tmp_path, crash_at_step, capsys
):
    from cifarkit import audit

    _, run = planted_run
    out = tmp_path / "audit"
    crash_at_step(40 + 15)  # fold 1: 40 steps; fold 2 checkpointed after its first epoch (10 steps), then cut
    with pytest.raises(RuntimeError, match="simulated crash"):
        audit(run, split="train", folds=2, out=out)
    assert (out / "fold-1" / "results.json").exists() and not (out / "fold-2" / "results.json").exists()
    assert (out / "fold-2" / "checkpoints" / "last.pt").exists() and not (out / "audit.json").exists()
    crash_at_step(None)
    capsys.readouterr()
    audit(run, split="train", folds=2, out=out)
    err = capsys.readouterr().err
    assert re.search(r"fold 1/2: reused", err) and re.search(r"fold 2/2: resumed", err)
    assert len((out / "fold-2" / "metrics.csv").read_text().splitlines()) == 1 + RECIPE["epochs"]
    with open(out / "audit.csv", newline="") as f:
        assert len(set(TRAIN_FLIPS) & flagged(list(csv.DictReader(f)), "train", "label")) >= 1
    with pytest.raises(UserError, match="folds 2 .now 3"):  # other folds into the same folder: refused
        audit(run, split="train", folds=3, out=out, progress=False)


def test_the_cli_audits_the_test_split_into_the_run_folder(planted_run, tmp_path, capsys):
    _, run = planted_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("audit"))
    assert main(["audit", str(copy), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"test \(100 images\): \d+ label", out) and "exclude.txt" in out
    assert {p.name for p in (copy / "audit").iterdir()} >= {"audit.csv", "audit.json", "audit.html", "exclude.txt"}
    assert main(["audit", str(copy), "--quiet"]) == 0  # an earlier audit's folder is written again


def test_the_images_are_named_once_a_split(planted_run, tmp_path, monkeypatch):
    from cifarkit.audit import prepare

    listed = []

    def counted(data, split):
        listed.append(split)
        return image_names(data, split)

    image_names = prepare.image_names
    monkeypatch.setattr(prepare, "image_names", counted)
    _, run = planted_run
    from cifarkit import audit

    audit(run, split="test", out=tmp_path / "audit", progress=False)
    assert sorted(listed) == ["test", "train"]  # not once an image: 50,000 listings of CIFAR-10's names took minutes


def test_the_run_report_links_a_finished_audit_and_says_how_to_begin_or_continue_one(planted_run, tmp_path, capsys):
    from cifarkit.report import write_report

    _, run = planted_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("audit"))
    assert "No audit of this run's data yet" in write_report(copy).read_text()
    (copy / "audit").mkdir()  # begun, not finished: no audit.json
    assert "has not finished" in write_report(copy).read_text()
    assert main(["audit", str(copy), "--quiet"]) == 0  # rebuilds the run's report.html
    assert f"report: {copy / 'report.html'}" in capsys.readouterr().out
    page = (copy / "report.html").read_text()
    saved = json.loads((copy / "audit" / "audit.json").read_text())
    assert "href='audit/audit.html'" in page and "href='audit/exclude.txt'" in page
    label = saved["counts"]["per_issue"]["test"]["label"]
    assert re.search(rf"<tr><td>test</td><td class='num'>100</td>.*?<td class='num'>{label}</td>", page)
    # a test-split audit leaves out the training images that duplicate test images: the exact and the near one
    assert (
        saved["excluded"] == 2 and f"--exclude {copy / 'audit' / 'exclude.txt'}</code> retrains without the 2 " in page
    )
    assert "earlier model" not in page
    ckpt = torch.load(copy / "checkpoints" / "last.pt", weights_only=True)
    ckpt["state"]["epoch"] += 1  # the run trained on (a resume): another checkpoint
    torch.save(ckpt, copy / "checkpoints" / "last.pt")
    assert "This audit was made with an earlier model of this run" in write_report(copy).read_text()
    from cifarkit.app.audit_tab import AuditBrowser

    assert AuditBrowser.of_run(copy, None).about().startswith("**Made with an earlier model of this run**")
    (copy / "audit" / "audit.json").write_text("{not json")
    assert "Not shown: " in write_report(copy).read_text()  # the rest of the report is still built


# -- --exclude ------------------------------------------------------------------------------------------------------


def test_exclude_leaves_the_listed_images_out_and_is_recorded_in_the_config(planted_run, tmp_path, capsys):
    root, _ = planted_run
    listed = tmp_path / "exclude.txt"
    listed.write_text("# planted flips\n11  # label issue\n50\n\n120 # another\n11\n")
    out = tmp_path / "cleaned"
    assert (
        main(
            [
                "train",
                "--model",
                "s10-small",
                "--epochs",
                "1",
                "--batch-size",
                "50",
                "--max-lr",
                "0.003",
                "--threads",
                "1",
                "--precision",
                "fp32",
                "--data-dir",
                str(root / "data"),
                "--exclude",
                str(listed),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads((out / "config.json").read_text())["exclude"] == ["11", "50", "120"]
    assert json.loads((out / "results.json").read_text())["n_train"] == 197
    capsys.readouterr()
    assert main(["compare", str(planted_run[1]), str(out)]) == 0  # the cleaned run beside the first: how many left out
    table = capsys.readouterr().out.splitlines()
    assert "exclude" in table[0].split() and "images" not in table[1] and "3 images" in table[2]


def test_a_resumed_run_leaves_out_the_same_images(planted_run, tmp_path, crash_at_step):
    from cifarkit import TrainConfig, train

    root, _ = planted_run
    config = TrainConfig(
        **{**RECIPE, "epochs": 2, "batch_size": 50}, data_dir=str(root / "data"), exclude=["11", "50", "120", "0"]
    )
    crash_at_step(6)  # in the second epoch, after the first one's checkpoint
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config, tmp_path / "r", progress=False)
    crash_at_step(None)
    assert main(["train", "--resume", str(tmp_path / "r"), "--quiet"]) == 0
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["n_train"] == 196 and results["steps"] == 8


def test_exclude_applies_within_limit_train_and_names_unknown_entries(tiny_py):
    from cifarkit import TrainConfig
    from cifarkit.data.loading import load_dataset, run_view

    data = load_dataset("cifar10", tiny_py)
    shaped = run_view(data, TrainConfig(exclude=["0", "3", "150"], limit_train=100))
    assert len(shaped.train_labels) == 98  # 150 lies beyond the first 100: nothing to leave out there
    assert torch.equal(shaped.train_images[0], data.train_images[1])
    with pytest.raises(UserError, match=r"2 entries name no training image .*'200', 'x'.*indices 0 to 199"):
        run_view(data, TrainConfig(exclude=["1", "200", "x"]))
    with pytest.raises(UserError, match="every one of the 2 training images"):
        run_view(data, TrainConfig(exclude=["0", "1"], limit_train=2))


def test_an_exclude_file_that_names_nothing_or_is_missing_is_refused(tiny_py, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here\n\n   # still nothing\n")
    for path, message in ((empty, "names no image"), (tmp_path / "absent.txt", "no such exclude list")):
        with pytest.raises(SystemExit) as e:
            main(["train", "--data-dir", str(tiny_py), "--exclude", str(path), "--out", str(tmp_path / "r")])
        assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_exclude_names_folder_images_by_their_path(tmp_path, monkeypatch):
    from PIL import Image

    from cifarkit import TrainConfig
    from cifarkit.data.loading import load_dataset, run_view

    monkeypatch.setenv("CIFARKIT_CACHE", str(tmp_path / "cache"))
    for split, n in (("train", 3), ("test", 1)):
        for c, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            (tmp_path / "d" / split / c).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (32, 32), colour).save(tmp_path / "d" / split / c / f"{i}.png")
    data = load_dataset("folder", tmp_path / "d", progress=False)
    shaped = run_view(data, TrainConfig(dataset="folder", exclude=["train/dog/1.png", "train/cat/0.png"]))
    assert shaped.train_labels.tolist() == [0, 0, 1, 1]
    with pytest.raises(UserError, match=r"'dog/1.png'.*e.g. 'train/cat/0.png'"):
        run_view(data, TrainConfig(dataset="folder", exclude=["dog/1.png"]))


# -- bad input: a clear error, nothing written -------------------------------------------------------------------


def test_a_run_without_a_checkpoint_is_refused(planted_run, tmp_path):
    from cifarkit import audit

    _, run = planted_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("audit", "checkpoints"))
    with pytest.raises(UserError, match="no checkpoint"):
        audit(copy)
    assert not (copy / "audit").exists()


@pytest.mark.parametrize(
    "folds, message",
    [
        (1, "must be a whole number >= 2"),
        (21, "more than the 19 training images of class"),
        (True, "must be a whole number >= 2"),
    ],
)
def test_folds_below_two_or_above_the_smallest_class_are_refused(planted_run, tmp_path, folds, message):
    from cifarkit import audit

    _, run = planted_run
    with pytest.raises(UserError, match=message):
        audit(run, split="train", folds=folds, out=tmp_path / "a", progress=False)
    assert not (tmp_path / "a").exists()


def test_a_moved_image_folder_is_refused(planted_run, tmp_path):
    from cifarkit import audit
    from cifarkit.files.atomic import save_torch
    from cifarkit.rundir.checkpoint import load_checkpoint

    _, run = planted_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("audit"))
    ckpt = load_checkpoint(copy / "checkpoints" / "last.pt")
    ckpt["config"] = {**ckpt["config"], "dataset": "folder", "data_dir": str(tmp_path / "moved-away")}
    save_torch(copy / "checkpoints" / "last.pt", ckpt)
    with pytest.raises(UserError, match="moved-away is not here"):
        audit(copy, out=tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_data_of_one_class_and_a_folder_of_other_files_are_refused(planted_run, tmp_path, monkeypatch):
    from cifarkit import audit

    _, run = planted_run
    (x, y), (tx, ty) = synthetic_cifar(20, 1), synthetic_cifar(10, 2)
    write_py_layout(tmp_path / "one", (x, y), (tx, np.zeros_like(ty)))
    with pytest.raises(UserError, match="all of one class .airplane."):
        audit(run, data_dir=tmp_path / "one", out=tmp_path / "a")
    assert not (tmp_path / "a").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="a folder of other files .notes.txt."):
        audit(run, out=tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    with pytest.raises(UserError, match="--split 'val'"):
        audit(run, split="val")


def test_import_cifarkit_stays_light():
    import subprocess

    code = "import sys, cifarkit, cifarkit.audit; print('torch' in sys.modules, 'cleanlab' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == [
        "False",
        "False",
    ]


def test_a_folder_dataset_is_audited_by_file_path(tmp_path, monkeypatch):
    from PIL import Image

    from cifarkit import TrainConfig, audit, train

    monkeypatch.setenv("CIFARKIT_CACHE", str(tmp_path / "cache"))
    (x, y), (tx, ty) = synthetic_cifar(6, 1), synthetic_cifar(3, 2)
    for split, images, labels in (("train", x, y), ("test", tx, ty)):
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = tmp_path / "d" / split / f"<{label}>"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{i:03d}.png")
    shutil.copy(tmp_path / "d" / "train" / f"<{y[4]}>" / "004.png", tmp_path / "d" / "test" / f"<{y[4]}>" / "x.png")
    train(
        TrainConfig(**{**RECIPE, "epochs": 1}, dataset="folder", data_dir=str(tmp_path / "d")),
        tmp_path / "run",
        progress=False,
    )
    summary = audit(tmp_path / "run", progress=False)
    with open(tmp_path / "run" / "audit" / "audit.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    pair = next(
        r for r in rows if r["issue"] == "train_test_duplicate" and r["score"] == "0.0" and r["split"] == "test"
    )
    assert (pair["image"], pair["duplicate_image"]) == (f"test/<{y[4]}>/x.png", f"train/<{y[4]}>/004.png")
    assert all("/" in r["image"] for r in rows)
    assert f"train/&lt;{y[4]}&gt;/004.png" in (tmp_path / "run" / "audit" / "audit.html").read_text()
    entries = (tmp_path / "run" / "audit" / "exclude.txt").read_text()
    assert f"train/<{y[4]}>/004.png  # duplicates test image test/<{y[4]}>/x.png" in entries
    assert summary["images"] == {"train": 60, "test": 31}


def test_the_page_shows_its_images_in_chromium_without_sideways_scrolling(audited, planted_run, tmp_path):
    import os
    from pathlib import Path

    chromium, driver = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
    missing = [str(p) for p in (chromium, driver) if not p.exists()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
    except ImportError:
        missing.append("selenium (pip install 'cifarkit[test]')")
    if missing:
        reason = (
            f"no browser to open the page in: {', '.join(missing)} absent (apt-get install chromium chromium-driver)"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--window-size=1000,800",
        f"--user-data-dir={tmp_path / 'p'}",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(executable_path=str(driver)), options=options)
    try:
        _, run = planted_run
        browser.get((run / "audit" / "audit.html").as_uri())
        headings = [h.text for h in browser.find_elements(By.TAG_NAME, "h2")]
        assert [h.split(" (")[0] for h in headings] == ["Probable label errors", "Duplicates", "Outliers", "Per class"]
        images = browser.find_elements(By.TAG_NAME, "img")
        assert images and all(
            browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
            for img in images
        )
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        assert "given: " in browser.find_element(By.CSS_SELECTOR, ".cell").text
    finally:
        browser.quit()


# -- the app's audit tab --------------------------------------------------------------------------------------------


def audit_browser(run, data):
    from cifarkit.app.audit_tab import AuditBrowser, audit_images

    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    return AuditBrowser.of_run(run, audit_images(ckpt, str(data)))


def test_the_app_browses_the_audit_by_issue_and_class_with_each_duplicate_beside_its_twin(audited, planted_run):
    from cifarkit.app.audit_tab import ALL_CLASSES, ZOOM, AuditBrowser

    _, rows = audited
    root, run = planted_run
    browser = audit_browser(run, root / "data")
    labels = [r for r in rows if r["issue"] == "label"]
    assert browser.issues()[0] == (f"probable label errors ({len(labels)})", "label")
    gallery, table, line = browser.show("label", ALL_CLASSES, 100)
    assert len(gallery) == len(table) == len(labels) and line.startswith(f"{len(labels)} of {len(labels)} probable")
    captions = {caption.split(":")[0]: caption for _, caption in gallery}
    for i in TEST_FLIPS:
        row = next(r for r in labels if r["split"] == "test" and r["image"] == str(i))
        assert captions[f"test {i}"].startswith(f"test {i}: given {row['given_label']} → {row['suggested_label']} ")
    assert all(picture.shape == (32 * ZOOM, 32 * ZOOM, 3) for picture, _ in gallery)
    given = labels[0]["given_label"]
    _, table, _ = browser.show("label", given, 100)
    assert table and all(r[4] == given for r in table)  # given_label is the table's fifth column

    gallery, _, _ = browser.show("train_test_duplicate", ALL_CLASSES, 100)
    pairs = {caption.split(" (")[0]: picture for picture, caption in gallery}
    exact = pairs[f"test {EXACT[0]}"]  # the pair side by side: identical pixels left and right of the gap
    assert exact.shape == (32 * ZOOM, (64 + 2) * ZOOM, 3)
    assert (exact[:, : 32 * ZOOM] == exact[:, 34 * ZOOM :]).all() and f"test {NEAR[0]}" in pairs

    without = AuditBrowser.of_run(run, None)  # the run's data not readable here: the rows alone
    gallery, table, line = without.show("label", ALL_CLASSES, 5)
    assert gallery == [] and len(table) == 5 and "images not shown" in line


def test_an_audit_the_app_cannot_read_leaves_the_page_without_its_tab(audited, planted_run, tmp_path, capsys):
    from cifarkit.app.audit_tab import browse_audit

    root, run = planted_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    ckpt = torch.load(copy / "checkpoints" / "last.pt", weights_only=True)
    assert browse_audit(copy, ckpt, str(root / "data")) is not None
    (copy / "audit" / "audit.json").write_text("[1, 2")
    assert browse_audit(copy, ckpt, str(root / "data")) is None
    assert f"cifarkit app: the audit is not shown ({copy / 'audit' / 'audit.json'}" in capsys.readouterr().err


def test_the_app_shows_the_audit_in_a_tab_in_chromium(audited, planted_run, tmp_path, monkeypatch):
    import gradio
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from test_app import check_gallery_layout, chromium, free_port, need_browser

    from cifarkit.app.local import serve

    need_browser()
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager downloads nothing
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    root, run = planted_run
    _, rows = audited
    port = free_port()
    driver = None
    try:
        serve(run, "127.0.0.1", port, str(root / "data"), block=False, progress=False)
        driver = chromium(tmp_path / "profile", logging=False)
        wait = WebDriverWait(driver, 60)
        driver.get(f"http://127.0.0.1:{port}/")
        tab = wait.until(
            lambda d: [b for b in d.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text == "Data audit"]
        )
        tab[0].click()
        labels = [r for r in rows if r["issue"] == "label"]
        captions = check_gallery_layout(driver, "audit-gallery", min(20, len(labels)), snug=False)
        assert (
            captions[0]
            == next(f"{r['split']} {r['image']}: given {r['given_label']} → {r['suggested_label']}" for r in labels)
            + f" {float(labels[0]['confidence']):.0%}"
        )
        assert f"{run / 'audit' / 'audit.html'}" in driver.find_element(By.ID, "audit-about").text
        grid = driver.find_element(By.CSS_SELECTOR, "#audit-rows [role=grid]")
        assert grid.get_attribute("aria-rowcount") == str(1 + len(captions))  # the heading row, then one a row shown
        driver.find_element(By.CSS_SELECTOR, "#audit-issue input").click()  # another issue: the duplicates
        wait.until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=dropdown-option][aria-label^='test images']")
        )[0].click()
        wait.until(lambda d: "= train" in d.find_element(By.ID, "audit-gallery").text)
        pairs = [c for c in driver.find_element(By.ID, "audit-gallery").text.splitlines() if " = train " in c]
        assert f"test {EXACT[0]} " in " ".join(pairs) and f"test {NEAR[0]} " in " ".join(pairs)
        shape = driver.execute_script(  # a pair is drawn whole, twice as wide as high: not squeezed into a square
            "const i = document.querySelector('#audit-gallery .thumbnail-item img'); return [i.width, i.height]"
        )
        assert shape[0] > 1.8 * shape[1], shape
        driver.save_screenshot("/tmp/audit-tab.png")
    finally:
        if driver is not None:
            driver.quit()
        gradio.close_all()


def test_a_near_duplicate_pair_within_a_split_is_shown_once():
    from cifarkit.app.audit_tab import ALL_CLASSES, AuditBrowser
    from cifarkit.audit.page import write_page

    def row(image, twin):
        return {
            "split": "test",
            "image": image,
            "issue": "near_duplicate",
            "score": 0.1,
            "given_label": "cat",
            "suggested_label": "cat",
            "confidence": 0.9,
            "duplicate_split": "test",
            "duplicate_image": twin,
        }

    rows = [row("4", "9"), row("9", "4"), row("5", "6")]  # cleanlab lists a pair from both of its images
    summary = {
        "run": "r",
        "settings_line": "x",
        "images": {"test": 10},
        "counts": {"per_issue": {"test": {"near_duplicate": 3}}, "per_class": {"test": {"near_duplicate": {"cat": 3}}}},
        "images_per_class": {"test": {"cat": 10}},
    }
    page = write_page(rows, summary, lambda s, n: torch.zeros(3, 4, 4, dtype=torch.uint8), ("cat", "dog"))
    assert "Duplicates (2)" in page and page.count("distance 0.1") == 2
    browser = AuditBrowser(None, rows, summary, lambda s, n: torch.zeros(3, 32, 32, dtype=torch.uint8))
    _, table, line = browser.show("near_duplicate", ALL_CLASSES, 10)
    assert [r[1] for r in table] == ["4", "5"] and line.startswith("2 of 2 near duplicates")


def test_the_probabilities_average_the_runs_views_and_the_features_are_the_plain_images(planted_run):
    from cifarkit.audit.predict import APPEARANCE_GRID, predict_for_audit
    from cifarkit.evaluate.inference import load_model
    from cifarkit.evaluate.metrics import predict_logits

    root, run = planted_run
    model, ckpt = load_model(run / "checkpoints" / "last.pt", torch.device("cpu"))
    images = torch.from_numpy(synthetic_cifar(2, 5)[0])  # 20 uint8 images, 3 x 32 x 32
    args = (model, images, ckpt["mean"], ckpt["std"], 8, torch.float32, False)
    plain = predict_for_audit(*args)
    viewed = predict_for_audit(*args, tta="flip")
    flipped = predict_logits(model, images, 8, torch.float32, False, "flip", ckpt["mean"], ckpt["std"]).softmax(1)
    assert np.array_equal(viewed.embeddings, plain.embeddings) and np.array_equal(viewed.appearance, plain.appearance)
    assert np.allclose(viewed.probabilities, flipped.numpy(), atol=1e-6)
    assert not np.allclose(viewed.probabilities, plain.probabilities, atol=1e-6)
    # s10-small: the head reads the pooled features; layer2 (8 x 8 of 32) gives its channels on a 2 x 2 grid
    assert plain.embeddings.shape == (20, model.fc.in_features)
    assert plain.appearance.shape == (20, model.layer2[0].out_channels * APPEARANCE_GRID**2)


@pytest.mark.parametrize(
    ("name", "side", "block"),
    [("fast", 32, "group2"), ("s10", 32, "layer2"), ("fast-small", 64, "group2"), ("s10-small", 96, "layer2")],
)
def test_the_appearance_is_the_first_block_a_quarter_of_the_image_or_smaller(name, side, block):
    from cifarkit.audit.predict import appearance_layer
    from cifarkit.models import build_model

    model = build_model(name, 10)
    assert appearance_layer(model, (3, side, side)) is getattr(model, block)


def test_a_model_without_feature_maps_has_its_head_input_for_appearance():
    from cifarkit.audit.predict import appearance_layer, predict_for_audit

    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
    )
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    assert appearance_layer(model, (3, 8, 8)) is model[3]
    seen = predict_for_audit(model, images, (0.5,) * 3, (0.25,) * 3, channels_last=False)
    assert np.array_equal(seen.appearance, seen.embeddings) and seen.embeddings.shape == (5, 16)


def test_only_the_probabilities_the_audit_uses_are_predicted_with_the_runs_views(planted_run, tmp_path, monkeypatch):
    from cifarkit import audit
    from cifarkit.audit import predict

    _, run = planted_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("audit"))
    ckpt = torch.load(copy / "checkpoints" / "last.pt", weights_only=True)
    ckpt["config"]["tta"] = "flip"  # a run whose final test averaged the flipped view
    torch.save(ckpt, copy / "checkpoints" / "last.pt")
    passes, predict_logits = [], predict.predict_logits

    def recorded(model, images, *args, **kwargs):
        passes.append((len(images), args[3]))  # (images, views)
        return predict_logits(model, images, *args, **kwargs)

    monkeypatch.setattr(predict, "predict_logits", recorded)
    audit(copy, split="test", progress=False)
    # the test images plain (embeddings) and with their views (probabilities); the training images plain alone
    assert passes == [(100, "none"), (100, "flip"), (200, "none")]


def test_a_fold_model_predicts_its_held_out_images_once_with_the_runs_views(planted_run, tmp_path, monkeypatch):
    from cifarkit import audit
    from cifarkit.audit import predict

    _, run = planted_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("audit"))
    ckpt = torch.load(copy / "checkpoints" / "last.pt", weights_only=True)
    ckpt["config"]["tta"] = "flip"  # the fold runs take the run's recipe, its views too
    torch.save(ckpt, copy / "checkpoints" / "last.pt")
    passes, predict_logits = [], predict.predict_logits

    def recorded(model, images, *args, **kwargs):
        passes.append((len(images), args[3]))  # (images, views)
        return predict_logits(model, images, *args, **kwargs)

    monkeypatch.setattr(predict, "predict_logits", recorded)
    audit(copy, split="train", folds=2, progress=False, fold_overrides={"epochs": 1})
    # the run's model: the test images plain and with views, the training images plain; then each fold's held-out
    # half with the views alone (no plain pass for features nobody reads)
    assert passes[:3] == [(100, "none"), (100, "flip"), (200, "none")]
    assert [views for _, views in passes[3:]] == ["flip", "flip"] and sum(n for n, _ in passes[3:]) == 200
