"""The benchmark scripts run and print what they promise (on tiny data; no timing is asserted)."""
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_time_to_accuracy_reports_each_seed_and_the_spread(tiny_py, tmp_path):
    done = subprocess.run([sys.executable, str(BENCH / "time_to_accuracy.py"), "--seeds", "2", "--data-dir",
                           str(tiny_py), "--model", "s10-small", "--epochs", "2", "--batch-size", "50",
                           "--max-lr", "5e-3", "--threads", "1", "--out", str(tmp_path / "bench")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "seed 0: test accuracy" in out and "seed 1: test accuracy" in out
    assert "±" in out and "machine:" in out and "torch" in out
    assert (tmp_path / "bench" / "seed1" / "results.json").exists()


def test_throughput_prints_both_sides_and_the_ratio():
    done = subprocess.run([sys.executable, str(BENCH / "throughput.py"), "--model", "s10-small", "--steps", "1",
                           "--batch-size", "16"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("notebook-style") and line.endswith("1.00x") for line in lines)
    assert sum(line.startswith("cifarkit:") and "img/s" in line for line in lines) >= 2
