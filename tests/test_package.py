"""`import cifarkit` is light and has no side effects on the caller's matplotlib."""

import subprocess
import sys
import textwrap


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    import os

    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_import_cifarkit_loads_no_plotting_lr_finder_or_torch():
    run_python("""
        import sys
        import cifarkit
        heavy = [m for m in sys.modules if m.split(".")[0] in ("matplotlib", "torch_lr_finder", "torch")
                 or m in ("cifarkit.report.figures", "cifarkit.training.run", "cifarkit.training.lr_finder")]
        assert not heavy, heavy
        assert callable(cifarkit.train)  # loaded on first use
    """)


def test_the_callers_matplotlib_backend_survives_import_and_training(tiny_py, tmp_path):
    # svg stands for any backend that is not Agg (a notebook's inline one, a desktop window's)
    run_python(
        f"""
        import matplotlib
        assert matplotlib.get_backend() == "svg"
        import cifarkit
        cifarkit.train(cifarkit.TrainConfig(model="s10-small", epochs=1, batch_size=50, data_dir={str(tiny_py)!r},
                                            threads=1, precision="fp32", max_lr="find", lr_find_start=1e-4,
                                            lr_find_end=1.0, lr_find_iters=20),
                       {str(tmp_path / "run")!r}, progress=False)
        import matplotlib.pyplot as plt
        assert matplotlib.get_backend() == "svg" and plt.get_backend() == "svg", matplotlib.get_backend()
    """,
        MPLBACKEND="svg",
    )
    assert (tmp_path / "run" / "plots" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "run" / "lr_find.png").exists()


# The packages, lowest first: a module imports only from its own package, a lower one, or the base modules
# (errors, version); `cifarkit/__init__.py` and `__main__.py` stand above them all.
PACKAGE_ORDER = (
    "files",
    "models",
    "config",
    "runtime",
    "optim",
    "data",
    "rundir",
    "evaluate",
    "report",
    "training",
    "tune",
    "audit",
    "app",
    "cli",
)
BASE_MODULES = ("errors", "version")


def internal_imports() -> dict[str, set[str]]:
    """module (dotted, below cifarkit: "training.trainer", a package's __init__ as "training") -> the cifarkit
    modules it imports, anywhere in its body (late imports count too)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "src" / "cifarkit"
    names = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        names[path] = ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)
    modules = set(names.values())
    graph = {}
    for path, module in names.items():
        package = (
            module.split(".")
            if path.name == "__init__.py" and "." not in module and module != "__init__"
            else module.split(".")[:-1]
        )
        edges = set()
        tree = ast.parse(path.read_text())
        typing_only = {
            id(n)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
            for n in ast.walk(block)
        }  # annotations only: never imported when the code runs
        for node in ast.walk(tree):
            if not (isinstance(node, ast.ImportFrom) and node.level) or id(node) in typing_only:
                continue
            base = package[: len(package) - (node.level - 1)]
            if node.module:  # from .x import y: module x (or the package x's __init__)
                edges.add(".".join(base + node.module.split(".")))
            else:  # from . import x, y: submodules (names of the package's __init__ otherwise)
                for alias in node.names:
                    target = ".".join(base + [alias.name])
                    edges.add(target if target in modules else (".".join(base) or "__init__"))
        graph[module] = edges - {module}
    return graph


def package_of(module: str) -> str:
    return module.split(".")[0] if module.split(".")[0] in PACKAGE_ORDER else module


def test_the_import_graph_has_no_cycle():
    graph = internal_imports()
    done, on_path = set(), []

    def visit(module: str) -> None:
        if module in on_path:
            raise AssertionError("import cycle: " + " -> ".join(on_path[on_path.index(module) :] + [module]))
        if module in done:
            return
        on_path.append(module)
        for target in sorted(graph.get(module, ())):
            visit(target)
        on_path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_the_packages_import_only_downwards_in_one_declared_order():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "src" / "cifarkit"
    assert {p.name for p in root.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(PACKAGE_ORDER)
    assert {p.stem for p in root.glob("*.py")} == {"__init__", "__main__", *BASE_MODULES}
    rank = {package: i for i, package in enumerate(PACKAGE_ORDER)}
    rank.update({module: -1 for module in BASE_MODULES} | {"__init__": len(rank), "__main__": len(rank)})
    upward = [
        f"{module} -> {target}"
        for module, targets in internal_imports().items()
        for target in targets
        if rank[package_of(target)] > rank[package_of(module)]
    ]
    assert not upward, upward


# config/train_config.py declares every setting, one TrainConfig field each (over 200 lines of declarations, which
# stay together in the one dataclass): its bound is its own
LONGER_MODULES = {"config/train_config.py": 400}


def test_no_module_is_over_300_lines_and_the_trainer_writes_no_files_itself():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "src" / "cifarkit"
    sizes = {str(p.relative_to(root)): len(p.read_text().splitlines()) for p in root.rglob("*.py")}
    # lines as ruff formats them (one argument a line where a call does not fit in 120 columns)
    over = {name: size for name, size in sizes.items() if size > LONGER_MODULES.get(name, 300)}
    assert not over, over
    # the loop and its state only: files are written through its RunDir, plots and reports elsewhere
    assert not {package_of(m) for m in internal_imports()["training.trainer"]} & {"files", "report", "cli"}
    assert not internal_imports()["training.trainer"] & {"training.run", "training.lr_finder", "evaluate.inference"}
    trainer = (root / "training" / "trainer.py").read_text()
    assert not [name for name in ('"checkpoints', '"metrics.csv"', '"results.json"', "matplotlib") if name in trainer]


def test_no_package_names_a_function_after_one_of_its_modules():
    # `from cifarkit.cli import main` must give the module main.py, not a function its __init__ re-exports
    import importlib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "src" / "cifarkit"
    for package in PACKAGE_ORDER:
        modules = {p.stem for p in (root / package).glob("*.py")}
        exported = set(getattr(importlib.import_module(f"cifarkit.{package}"), "__all__", ()))
        assert not exported & modules, (package, exported & modules)
