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


def internal_imports() -> dict[str, set[str]]:
    """module -> the cifarkit modules it imports, anywhere in its body (late imports count too)."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "src" / "cifarkit"
    modules = {p.stem for p in package.glob("*.py")}
    graph = {}
    for path in package.glob("*.py"):
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:  # from .x import y
                    edges.add(node.module.split(".")[0])
                else:  # from . import x, y: submodules (a name of __init__ otherwise)
                    edges |= {alias.name for alias in node.names if alias.name in modules} or {"__init__"}
        graph[path.stem] = edges - {path.stem}
    return graph


def test_the_import_graph_has_no_cycle():
    graph = internal_imports()
    assert "engine" not in graph  # split into runtime, batches, build, metrics, checkpoint, rundir, trainer
    done, on_path = set(), []

    def visit(module: str) -> None:
        if module in on_path:
            raise AssertionError("import cycle: " + " -> ".join(on_path[on_path.index(module):] + [module]))
        if module in done:
            return
        on_path.append(module)
        for target in sorted(graph.get(module, ())):
            visit(target)
        on_path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_no_module_is_over_350_lines_and_the_trainer_writes_no_files_itself():
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "src" / "cifarkit"
    sizes = {p.name: len(p.read_text().splitlines()) for p in package.glob("*.py")}
    assert max(sizes.values()) <= 350, sizes
    # the loop and its state only: files are written through its RunDir, plots and reports elsewhere
    assert not internal_imports()["trainer"] & {"files", "report", "run", "cli", "lr_finder", "inference"}
    trainer = (package / "trainer.py").read_text()
    assert not [name for name in ('"checkpoints', '"metrics.csv"', '"results.json"', "matplotlib") if name in trainer]
