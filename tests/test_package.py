"""`import cifarkit` is light and has no side effects on the caller's matplotlib."""
import subprocess
import sys
import textwrap


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    import os

    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_import_cifarkit_loads_no_plotting_lr_finder_or_torch():
    run_python("""
        import sys
        import cifarkit
        heavy = [m for m in sys.modules if m.split(".")[0] in ("matplotlib", "torch_lr_finder", "torch")
                 or m in ("cifarkit.report", "cifarkit.run", "cifarkit.lr_finder")]
        assert not heavy, heavy
        assert callable(cifarkit.train)  # loaded on first use
    """)


def test_the_callers_matplotlib_backend_survives_import_and_training(tiny_py, tmp_path):
    # svg stands for any backend that is not Agg (a notebook's inline one, a desktop window's)
    run_python(f"""
        import matplotlib
        assert matplotlib.get_backend() == "svg"
        import cifarkit
        cifarkit.train(cifarkit.TrainConfig(model="s10-small", epochs=1, batch_size=50, data_dir={str(tiny_py)!r},
                                            threads=1, precision="fp32", max_lr="find", lr_find_start=1e-4,
                                            lr_find_end=1.0, lr_find_iters=20),
                       {str(tmp_path / "run")!r}, progress=False)
        import matplotlib.pyplot as plt
        assert matplotlib.get_backend() == "svg" and plt.get_backend() == "svg", matplotlib.get_backend()
    """, MPLBACKEND="svg")
    assert (tmp_path / "run" / "plots" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "run" / "lr_find.png").exists()
