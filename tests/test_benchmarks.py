"""The benchmark scripts run and print what they promise (on tiny data; no timing is asserted)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from torch import nn

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load_records():
    """benchmarks/records.py as a module."""
    spec = importlib.util.spec_from_file_location("records", BENCH / "records.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_results_records_hold_per_seed_numbers_and_the_tables_compute_their_spread():
    records = load_records()
    every = records.load()
    assert len(every) >= 20 and all(r["date"] and r["commit"] and r["machine"] and r["command"] for r in every)
    fast = next(r for r in every if r["file"] == "2026-11-26-fast-cpu.json")
    assert [r["test_accuracy"] for r in fast["runs"]] == [93.91, 94.16, 94.11, 93.87, 94.06]
    assert records.spread([r["test_accuracy"] for r in fast["runs"]]) == "94.02 ± 0.13"  # as measured
    for question in records.QUESTIONS:
        assert records.markdown_table(every, question)  # each question has its table
    assert "94.02 ± 0.13" in records.markdown_table(every, "accuracy")
    assert "**0.70×**" in records.markdown_table(every, "time_to_94")  # fast against fast-v1 in one sitting


def test_a_record_without_its_date_commit_or_machine_is_refused_by_name(tmp_path):
    records = load_records()
    (tmp_path / "r.json").write_text(
        json.dumps(
            {"title": "t", "questions": ["accuracy"], "command": "c", "runs": [{"seed": 0, "test_accuracy": 90.0}]}
        )
    )
    try:
        records.load(tmp_path)
    except ValueError as e:
        assert "r.json" in str(e) and "date" in str(e) and "machine" in str(e)
    else:
        raise AssertionError("a record without date, commit and machine was accepted")


def time_to_accuracy(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / "time_to_accuracy.py"), *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_time_to_accuracy_reports_each_seed_and_the_spread(tiny_py, tmp_path):
    common = [
        "--data-dir",
        str(tiny_py),
        "--model",
        "s10-small",
        "--epochs",
        "2",
        "--batch-size",
        "50",
        "--max-lr",
        "5e-3",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "bench"),
    ]
    out = time_to_accuracy("--seeds", "2", *common)
    assert "s10 seed 0: test accuracy" in out and "s10 seed 1: test accuracy" in out
    assert "train steps" in out and "evaluation" in out and "ending" in out  # where the seconds went
    assert "±" in out and "machine:" in out and "torch" in out
    assert (tmp_path / "bench" / "seed1" / "results.json").exists()
    first = [line for line in out.splitlines() if line.startswith("s10 seed 0:")]

    # --reuse reads back the finished seeds of the same configuration and trains only the new one
    out = time_to_accuracy("--seeds", "3", "--reuse", *common)
    lines = out.splitlines()
    assert [line for line in lines if line.startswith("s10 seed 0:")] == [first[0] + "  (reused)"]
    assert any(line.startswith("s10 seed 1:") and line.endswith("(reused)") for line in lines)
    assert any(line.startswith("s10 seed 2:") and not line.endswith("(reused)") for line in lines)
    assert "3 seed(s)" in out

    # a different configuration in the same folder is trained again, not mixed in
    out = time_to_accuracy("--seeds", "1", "--reuse", *common, "--epochs", "1")  # the last --epochs wins
    assert "(reused)" not in out


def test_time_to_accuracy_takes_train_flags_on_top_of_the_preset(tiny_py, tmp_path):
    out = time_to_accuracy(
        "--seeds",
        "1",
        "--seed",
        "5",
        "--data-dir",
        str(tiny_py),
        "--model",
        "s10-small",
        "--epochs",
        "1",
        "--batch-size",
        "50",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "bench"),
        "--lookahead-decay",
        "0.5",
        "--alternate-flip",
        "--label-smoothing",
        "0.1",
        "--optimizer",
        "sgd",
        "--nesterov",
        "--tta",
        "flip",
    )
    assert "s10 seed 5: test accuracy" in out
    config = json.loads((tmp_path / "bench" / "seed5" / "benchmark.json").read_text())["config"]
    assert config["preset"] == "s10" and config["seed"] == 5
    assert config["lookahead_decay"] == 0.5 and config["alternate_flip"] is True
    assert config["label_smoothing"] == 0.1 and config["optimizer"] == "sgd" and config["nesterov"] is True
    assert config["tta"] == "flip"


def test_time_to_accuracy_runs_a_baseline_seed_by_seed_and_prints_the_ratio(tiny_py, tmp_path):
    out = time_to_accuracy(
        "--seeds",
        "2",
        "--baseline",
        "fast-v1",
        "--data-dir",
        str(tiny_py),
        "--model",
        "s10-small",
        "--epochs",
        "1",
        "--batch-size",
        "50",
        "--threads",
        "1",
        "--limit-train",
        "200",
        "--precision",
        "fp32",
        "--out",
        str(tmp_path / "bench"),
        "--record",
        str(tmp_path / "results" / "2026-01-01-tiny.json"),
    )
    lines = out.splitlines()
    # the baseline's seed 0 runs just before the recipe's seed 0; one baseline seed by default
    assert [line.split(":")[0] for line in lines if ": test accuracy" in line and "seed(s)" not in line] == [
        "fast-v1 seed 0",
        "s10 seed 0",
        "s10 seed 1",
    ]
    assert any(line.startswith("baseline fast-v1 (fast, 12 epochs") for line in lines)
    assert "x the baseline's" in out and "machine:" in out
    record = json.loads((tmp_path / "bench" / "baseline" / "seed0" / "benchmark.json").read_text())
    assert record["config"]["preset"] == "fast-v1" and record["config"]["limit_train"] == 200
    assert record["config"]["threads"] == 1 and record["config"]["epochs"] == 12  # the preset's, not the flags'

    # --record: the sitting as a benchmark record, which the docs' tables read back
    records = load_records()
    (sitting,) = records.load(tmp_path / "results")
    assert sitting["questions"] == ["accuracy", "time_to_94"] and sitting["precision"] == "float32"
    assert sitting["command"].startswith("python benchmarks/time_to_accuracy.py --seeds 2 --baseline fast-v1")
    assert "torch" in sitting["machine"] and sitting["date"] and sitting["commit"]
    given = {
        "preset": "s10",
        "model": "s10-small",
        "epochs": 1,
        "batch_size": 50,
        "limit_train": 200,
        "precision": "fp32",
    }
    assert given.items() <= sitting["config"].items()  # what differs from the preset (and what follows it)
    assert "threads" not in sitting["config"] and "data_dir" not in sitting["config"]  # the machine's, not the run's
    assert [r["seed"] for r in sitting["runs"]] == [0, 1] and len(sitting["baseline"]["runs"]) == 1
    accuracy = [r["test_accuracy"] for r in sitting["runs"]]
    assert all(0 <= a <= 100 for a in accuracy)
    table = records.markdown_table([sitting], "time_to_94")
    assert f"{sum(accuracy) / 2:.2f} ± " in table and "`fast-v1`" in table and "×" in table


def test_time_to_accuracy_rejects_bad_input_by_name(tiny_py, tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"epoch": 3}))
    for args, named in (
        (["--seeds", "0"], "--seeds 0"),
        (["--preset", "nope"], "nope"),
        (["--pct-start", "2"], "--pct-start 2.0"),
        (["--config", str(bad)], f"{bad}: unknown setting(s) epoch"),
    ):
        done = subprocess.run(
            [sys.executable, str(BENCH / "time_to_accuracy.py"), *args, "--out", str(tmp_path / "bench")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2 and named in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "bench").exists()
    # found only when a seed starts training: 4 steps x --pct-start 0.25 peak on the first step
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "time_to_accuracy.py"),
            "--seeds",
            "1",
            "--data-dir",
            str(tiny_py),
            "--model",
            "s10-small",
            "--epochs",
            "1",
            "--batch-size",
            "50",
            "--limit-train",
            "200",
            "--pct-start",
            "0.25",
            "--threads",
            "1",
            "--precision",
            "fp32",
            "--out",
            str(tmp_path / "bench"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "error: seed 0: --pct-start 0.25 of 4 steps" in done.stderr


def variants(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCH / "variants.py"), *args], capture_output=True, text=True, timeout=300
    )


def test_variants_pairs_every_variant_with_the_base_seed_by_seed_on_the_validation_split(tiny_py, tmp_path):
    common = [
        "--data-dir",
        str(tiny_py),
        "--model",
        "s10-small",
        "--epochs",
        "1",
        "--batch-size",
        "50",
        "--max-lr",
        "5e-3",
        "--threads",
        "1",
        "--precision",
        "fp32",
        "--val-split",
        "40",
        "--out",
        str(tmp_path / "v"),
        "--variant",
        "ls=--label-smoothing 0.1",
        "--variant",
        "e2=--epochs 2",
    ]
    done = variants("--seeds", "2", *common)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for name in ("base", "ls", "e2"):
        for seed in (0, 1):
            assert f"{name} seed {seed}: validation accuracy" in out
    records = {
        (name, seed): json.loads((tmp_path / "v" / name / f"seed{seed}" / "variant.json").read_text())
        for name in ("base", "ls", "e2")
        for seed in (0, 1)
    }
    base, e2 = records["base", 1]["config"], records["e2", 1]["config"]
    assert (e2["epochs"], base["epochs"], e2["seed"], e2["val_split"]) == (2, 1, 1, 40)
    assert e2["label_smoothing"] == base["label_smoothing"] and records["ls", 0]["config"]["label_smoothing"] == 0.1
    # the summary's paired difference is the mean of the per-seed differences
    row = next(line for line in out.splitlines() if line.startswith("e2 ") and "--epochs 2" in line)
    diffs = [records["e2", s]["row"]["val"] * 100 - records["base", s]["row"]["val"] * 100 for s in (0, 1)]
    assert f"{sum(diffs) / 2:+.2f} ± " in row and row.split()[1] == "2"
    assert "machine:" in out

    # --reuse trains only what is new: a third seed, here in two processes at once
    done = variants("--seeds", "3", "--reuse", "--processes", "2", *common)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(line.endswith("(reused)") for line in lines if " seed 0: " in line or " seed 1: " in line)
    assert sum(" seed 2: validation accuracy" in line and "(reused)" not in line for line in lines) == 3
    assert next(line for line in lines if line.startswith("base ") and " seed " not in line).split()[1] == "3"


def test_variants_rejects_bad_input_by_name(tiny_py, tmp_path):
    common = ["--data-dir", str(tiny_py), "--out", str(tmp_path / "v")]
    for args, named in (
        (["--variant", "x=--epochs 2"], "--val-split N is required"),
        (["--val-split", "40", "--variant", "base=--epochs 2"], "--variant 'base=--epochs 2'"),
        (["--val-split", "40", "--variant", "x"], "write NAME=FLAGS"),
        (["--val-split", "40", "--variant", "x=--seed 3"], "'x=--seed 3': --seed: the base's to set"),
        (["--val-split", "40", "--variant", "x=--limit-train 100 --epochs 2"], "--limit-train: the base's"),
        (["--val-split", "40", "--variant", "x=--epochz 2"], "--epochz"),
        (["--val-split", "40", "--variant", "x=--epochs 0"], "--epochs 0"),
    ):
        done = variants(*args, *common)
        assert done.returncode == 2 and named in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
    assert not (tmp_path / "v").exists()


def test_throughput_prints_both_sides_and_the_ratio():
    done = subprocess.run(
        [sys.executable, str(BENCH / "throughput.py"), "--model", "s10-small", "--steps", "1", "--batch-size", "16"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(
        line.startswith("notebook-style") and "1.00x" in line and line.endswith("% of float32 peak") for line in lines
    )
    assert sum(line.startswith("cifarkit:") and "img/s" in line and "TFLOP/s =" in line for line in lines) >= 2
    # the model's work per image and the device's measured peak, the reference for each row's share
    assert any("GFLOP per training image" in line and "float32" in line and "TFLOP/s" in line for line in lines)


def test_training_flops_count_the_forward_and_the_backward_per_image():
    spec = importlib.util.spec_from_file_location("throughput", BENCH / "throughput.py")
    throughput = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(throughput)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10, bias=False))
    # forward: one multiply-add per weight and image; backward: the weight's gradient, the same again
    # (the images need none)
    assert throughput.training_flops_per_image(model) == 2 * (2 * 3 * 32 * 32 * 10)
    # frozen, as the fast net's whitening stem: forward only, and the layer above it needs no input gradient
    model[1].weight.requires_grad_(False)
    model = nn.Sequential(model, nn.Linear(10, 10, bias=False))
    assert throughput.training_flops_per_image(model) == 2 * 3 * 32 * 32 * 10 + 2 * (2 * 10 * 10)


def test_profile_step_sums_the_step_by_kind_of_operator():
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "profile_step.py"),
            "--preset",
            "fast",
            "--steps",
            "1",
            "--batch-size",
            "16",
            "--top",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("machine:") and "preset fast" in lines[0]
    kinds = {line.split("  ")[1].strip() for line in lines[1:] if line.startswith("  ") and "%" in line}
    assert {"convolution", "optimiser", "augmentation and batch building"} <= kinds
    shares = [float(line.split()[-2]) for line in lines[1 : lines.index("top operators (self time):")]]
    assert abs(sum(shares) - 100) < 1  # the kinds add up to the whole step


def test_throughput_compile_row_times_the_compiling_step_apart():
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "throughput.py"),
            "--model",
            "s10-small",
            "--steps",
            "1",
            "--batch-size",
            "16",
            "--compile",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    compiled = [line for line in done.stdout.splitlines() if "torch.compile" in line]
    assert len(compiled) == 1 and "img/s" in compiled[0] and "(first step" in compiled[0]


def test_conv_layers_times_every_conv_of_the_model_with_and_without_its_input_gradient():
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "conv_layers.py"),
            "--model",
            "fast-small",
            "--batch-size",
            "8",
            "--precision",
            "fp32",
            "--repeats",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("machine:") and "model fast-small" in lines[0] and "float32" in lines[0]
    rows = {line.split()[0]: line for line in lines[2:-1]}
    # the stem, then both convs of each of the three groups, with the maps they see
    assert list(rows) == ["stem", "group1.0", "group1.4", "group2.0", "group2.4", "group3.0", "group3.4"]
    assert "3 -> 24 @ 32x32" in rows["stem"] and "24 -> 32 @ 31x31" in rows["group1.0"]
    assert "128 -> 128 @ 3x3" in rows["group3.4"]
    assert all(float(value) >= 0 for line in rows.values() for value in line.split()[-4:])  # 8 images: may round to 0
    assert lines[-1].startswith("  all convs:") and "img/s" in lines[-1]


def test_plots_times_each_run_grid_both_ways_and_prints_the_ratio():
    done = subprocess.run(
        [sys.executable, str(BENCH / "plots.py"), "--repeats", "1"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("machine:") and "median of 1 draw(s)" in lines[0]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert list(rows) == ["samples", "augmented", "misclassified", "gradcam", "all"]
    assert rows["augmented"][1] == "36" and all(row[-1].endswith("x") for row in rows.values())
    done = subprocess.run(
        [sys.executable, str(BENCH / "plots.py"), "--repeats", "0"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "--repeats 0: must be >= 1" in done.stderr


def test_label_noise_flips_audits_and_retrains_then_continues_and_audit_views_scores_each_set_of_views(tmp_path):
    from conftest import synthetic_cifar, write_py_layout

    from cifarkit.audit.issues import LABEL_RULE

    write_py_layout(tmp_path / "data", synthetic_cifar(20, 1), synthetic_cifar(10, 2))
    out = tmp_path / "out"
    sitting = [
        sys.executable,
        str(BENCH / "label_noise.py"),
        "--preset",
        "s10",
        "--epochs",
        "1",
        "--folds",
        "2",
        "--noise",
        "0.1",
        "--data-dir",
        str(tmp_path / "data"),
        "--threads",
        "1",
        "--out",
        str(out),
        "--record",
        str(tmp_path / "record.json"),
    ]
    first = subprocess.run(sitting, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "flipped 20 of 200 training labels" in first.stderr and "test accuracy, clean labels" in first.stdout
    row = json.loads((tmp_path / "record.json").read_text())["rows"][0]
    assert row["flipped"] == len((out / "flipped.txt").read_text().split()) == 20
    assert set(row["audit_memory_peak_mib"]) >= {"folds", "cleanlab"}
    finished = (out / "clean" / "results.json").stat().st_mtime_ns
    again = subprocess.run(sitting, capture_output=True, text=True, timeout=600)  # continues: nothing left to train
    assert again.returncode == 0 and "fold 1/2: reused" in again.stderr and "fold 2/2: reused" in again.stderr
    assert (out / "clean" / "results.json").stat().st_mtime_ns == finished
    config = json.loads((out / "cleaned" / "config.json").read_text())
    config["exclude"] = config["exclude"][1:]  # a cleaned run that left out other images than the audit flags now
    (out / "cleaned" / "config.json").write_text(json.dumps(config))
    cleaned = (out / "cleaned" / "results.json").stat().st_mtime_ns
    third = subprocess.run(sitting, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stderr[-3000:]
    assert (out / "cleaned" / "results.json").stat().st_mtime_ns != cleaned  # trained again
    assert json.loads((out / "cleaned" / "config.json").read_text())["exclude"] != config["exclude"]
    assert (out / "clean" / "results.json").stat().st_mtime_ns == finished

    views = subprocess.run(
        [sys.executable, str(BENCH / "audit_views.py"), str(out)], capture_output=True, text=True, timeout=600
    )
    assert views.returncode == 0, views.stderr[-3000:]
    lines = {line.split(":")[0].strip(): line for line in views.stdout.splitlines()}
    rule = f"none, {LABEL_RULE}"
    assert set(lines) == {"none", "flip", "flip-translate"} | {
        f"{v}, {LABEL_RULE}" for v in ("none", "flip", "flip-translate")
    }
    assert f"flagged {row['flagged']}," in lines[rule]  # s10 predicts without views: the audit's own flags
    rules = subprocess.run(
        [
            sys.executable,
            str(BENCH / "audit_views.py"),
            str(out),
            "--views",
            "none",
            "--rules",
            "both",
            "low_self_confidence",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert rules.returncode == 0, rules.stderr[-3000:]
    named = [line.split(":")[0].strip() for line in rules.stdout.splitlines()]
    assert named == ["none", "none, both", "none, low_self_confidence"]


def test_duplicates_scores_both_kinds_of_features_against_a_judged_list(tmp_path):
    from conftest import synthetic_cifar, write_py_layout

    from cifarkit import TrainConfig, train

    (x, y), (tx, ty) = synthetic_cifar(20, 1), synthetic_cifar(10, 2)
    tx, ty = tx.copy(), ty.copy()
    tx[4], ty[4] = x[7], y[7]  # identical
    tx[6], ty[6] = x[9], y[9]
    tx[6, 0, 0, 0] ^= 1  # the same photograph, a pixel changed
    write_py_layout(tmp_path / "data", (x, y), (tx, ty))
    recipe = {"model": "s10-small", "epochs": 2, "batch_size": 20, "threads": 1, "precision": "fp32"}
    train(TrainConfig(**recipe, data_dir=str(tmp_path / "data")), tmp_path / "run", progress=False)
    reference = tmp_path / "duplicates.csv"
    reference.write_text("TestID,TrainID,Distance,Judgment\n4,7,0.0,0\n6,9,0.01,1\n31,40,0.2,2\n")
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "duplicates.py"),
            str(tmp_path / "run"),
            "--reference",
            str(reference),
            "--threads",
            "1",
            "--record",
            str(tmp_path / "record.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "reference: 2 test images with a training duplicate (judgments 0-1), 3 listed" in done.stdout
    row = json.loads((tmp_path / "record.json").read_text())["rows"][0]
    for kind in ("embeddings", "appearance"):
        strict = row[kind]["rows"][0]  # the smallest threshold finds both planted copies
        assert (strict["found"], strict["paired"], strict["recall"]) == (2, 2, 1.0)
        assert f"{kind:>10} x0.1 : flagged" in done.stdout
        assert row[kind]["chosen"]["odd_indices"]["found"] == 0  # both copies are even test indices
        flagged = [r["flagged"] for r in row[kind]["rows"]]
        assert flagged == sorted(flagged) and f"{kind:>10}: chosen on the even indices" in done.stdout

    bad = reference.with_name("bad.csv")
    bad.write_text("a,b\n1,2\n")
    refused = subprocess.run(
        [sys.executable, str(BENCH / "duplicates.py"), str(tmp_path / "run"), "--reference", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 1 and "expected a CSV with TestID, TrainID and Judgment columns" in refused.stderr
