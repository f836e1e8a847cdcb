"""`cifarkit export --app`: the bundle's files, and its app.py run where cifarkit cannot be imported, agreeing
with `cifarkit predict`; its page served from there too."""

from __future__ import annotations

import ast
import inspect
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

import pytest
from test_app import free_port, wait_for_page
from test_explain import half_trained, save_test_images  # noqa: F401 (a fixture)

from cifarkit.cli.main import main
from cifarkit.models import nets as models

pytest.importorskip("captum")
pytest.importorskip("gradio")
pytest.importorskip("safetensors")

# The bundle's process sees the installed packages (torch, gradio, ...) and nothing else: -I -S leave out the
# current folder, PYTHONPATH, user site-packages and the .pth files (the editable cifarkit install is one).
ISOLATED = textwrap.dedent("""
    import importlib.util, runpy, sys
    sys.path[:] = [p for p in sys.path if p.endswith(".zip") or "site-packages" not in p] + {paths!r}
    assert importlib.util.find_spec("cifarkit") is None, "cifarkit is importable"
    sys.argv = ["app.py", *sys.argv[1:]]
    try:
        runpy.run_path("app.py", run_name="__main__")
    finally:
        assert not [m for m in sys.modules if m.split(".")[0] == "cifarkit"]
""")


def isolated(*args: str) -> list[str]:
    """The command running app.py (of the current folder) with `args` where cifarkit is not importable."""
    paths = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    return [sys.executable, "-I", "-S", "-c", ISOLATED.format(paths=paths), *args]


def run_isolated(bundle, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(isolated(*args), cwd=bundle, capture_output=True, text=True, env=env, timeout=300)


def test_cifarkit_is_not_importable_in_the_isolated_process(tmp_path):
    (tmp_path / "app.py").write_text("import cifarkit\n")
    done = run_isolated(tmp_path)
    assert done.returncode != 0 and "cifarkit is importable" not in done.stderr
    assert "No module named 'cifarkit'" in done.stderr


@pytest.fixture(scope="module")
def bundle(half_trained, tmp_path_factory):
    root, _ = half_trained
    out = tmp_path_factory.mktemp("bundle") / "app"
    assert main(["export", str(root / "run"), "--app", str(out), "--data-dir", str(root / "data")]) == 0
    return out


def test_the_bundle_holds_weights_meta_app_requirements_and_a_space_readme(bundle, half_trained):
    from safetensors.torch import load_file

    root, results = half_trained
    assert {p.name for p in bundle.iterdir()} == {
        "app.py",
        "model.safetensors",
        "meta.json",
        "requirements.txt",
        "README.md",
        "examples",
        "mistakes",
    }
    meta = json.loads((bundle / "meta.json").read_text())
    assert meta["model_name"] == "s10-small" and len(meta["classes"]) == 10 and meta["image_size"] == 32
    assert meta["test_accuracy"] == results["test_accuracy"] and len(meta["mean"]) == len(meta["std"]) == 3
    assert len(meta["examples"]) == 10 and all((bundle / e["file"]).exists() for e in meta["examples"])
    assert 0 < len(meta["mistakes"]) <= 50
    weights = load_file(bundle / "model.safetensors")  # safetensors: no pickle
    from cifarkit.evaluate.inference import load_model

    model, _ = load_model(root / "run", "cpu")
    assert weights.keys() == model.state_dict().keys()
    requirements = (bundle / "requirements.txt").read_text().split()
    assert [r.split(">")[0].split("=")[0] for r in requirements] == [
        "torch",
        "gradio",
        "safetensors",
        "captum",
        "numpy",
        "pillow",
    ]
    readme = (bundle / "README.md").read_text()
    front = readme.split("---")[1]
    assert "sdk: gradio" in front and "app_file: app.py" in front
    assert f"Test accuracy: {results['test_accuracy']:.2%}" in readme


def test_app_py_is_inference_only_and_carries_the_current_model_source(bundle):
    source = (bundle / "app.py").read_text()
    tree = ast.parse(source)
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "cifarkit" not in imported and not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]
    assert not {"torch_lr_finder", "matplotlib", "torchinfo", "tqdm"} & imported
    for word in ("optim", "Trainer", "lr_scheduler", "backward(", "def train"):
        assert word not in source, word
    for cls in (models.S10ResNet, models.FastNet, models.ConvGroup, models.Residual):
        assert inspect.getsource(cls) in source  # copied at export time: never stale


def test_app_py_refuses_what_it_cannot_copy(tmp_path, monkeypatch):
    from cifarkit.app import bundle_source
    from cifarkit.errors import UserError

    app = tmp_path / "app"  # a package like cifarkit's: the bundle's module in app/, what it uses beside it
    app.mkdir()
    (app / "bundle_app.py").write_text("from .helpers import helper\n\ndef main():\n    return helper()\n")
    (app / "helpers.py").write_text("def helper():\n    from .models import build_model\n    return 1\n")
    monkeypatch.setattr(bundle_source, "PACKAGE", tmp_path)
    with pytest.raises(UserError, match="helpers.helper imports .models in its body"):
        bundle_source.inline()
    (app / "helpers.py").write_text("import math\n\nSCALE = 2\n\ndef helper():\n    return math.pi * SCALE\n")
    source = bundle_source.inline()
    namespace = {}
    exec(compile(source.replace('if __name__ == "__main__"', "if False"), "app.py", "exec"), namespace)
    assert namespace["main"]() == pytest.approx(2 * 3.14159, rel=1e-5)


def agreement(bundle, run, paths, capsys) -> int:
    """Compare the bundle's --predict with `cifarkit predict --json` on `paths`; returns how many compared."""
    capsys.readouterr()
    done = run_isolated(bundle, "--predict", *paths, "--top-k", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout)
    assert main(["predict", str(run), *paths, "--json", "--top-k", "3"]) == 0
    expected = json.loads(capsys.readouterr().out)
    assert [g["image"] for g in got] == [e["image"] for e in expected] == list(paths)
    for g, e in zip(got, expected):
        assert [t["class"] for t in g["top"]] == [t["class"] for t in e["top"]], (g, e)
        assert [t["probability"] for t in g["top"]] == pytest.approx([t["probability"] for t in e["top"]], abs=1e-4)
    return len(got)


def test_the_bundle_predicts_as_cifarkit_does_without_cifarkit(bundle, half_trained, tmp_path, capsys):
    root, _ = half_trained
    paths = save_test_images(root / "data", tmp_path, 24)
    assert agreement(bundle, root / "run", paths, capsys) == 24


def test_a_damaged_bundle_or_a_busy_port_is_an_error_message_not_a_traceback(bundle, half_trained, tmp_path):
    import shutil
    import socket

    root, _ = half_trained
    copy = tmp_path / "app"
    shutil.copytree(bundle, copy)
    image = save_test_images(root / "data", tmp_path, 1)[0]
    for example in (copy / "examples").glob("*.png"):  # to predict, the gallery's images are not needed
        example.unlink()
    done = run_isolated(copy, "--predict", image)
    assert done.returncode == 0, done.stderr[-2000:]
    with socket.socket() as taken:  # the page's port is in use
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        shutil.copytree(bundle, tmp_path / "served")
        done = run_isolated(tmp_path / "served", "--port", str(taken.getsockname()[1]))
    assert done.returncode == 2 and "Traceback" not in done.stderr and "the port is in use" in done.stderr
    (copy / "model.safetensors").unlink()
    done = run_isolated(copy, "--predict", image)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "model.safetensors: missing; export the bundle again" in done.stderr


def test_a_fast_net_bundle_predicts_as_cifarkit_does(tiny_py, tmp_path, capsys):
    from test_train import FAST_TINY, tiny_config

    from cifarkit import train

    train(tiny_config(tiny_py, epochs=1, **FAST_TINY), tmp_path / "run", progress=False)
    assert main(["export", str(tmp_path / "run"), "--app", str(tmp_path / "app"), "--data-dir", str(tiny_py)]) == 0
    capsys.readouterr()
    paths = save_test_images(tiny_py, tmp_path / "images", 20)
    assert agreement(tmp_path / "app", tmp_path / "run", paths, capsys) == 20


def test_the_bundle_serves_its_page_without_cifarkit(bundle, half_trained, tmp_path):
    from gradio_client import Client, handle_file

    root, _ = half_trained
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "GRADIO_TEMP_DIR": str(tmp_path / "tmp")}
    started = time.perf_counter()
    process = subprocess.Popen(
        isolated("--port", str(port)), cwd=bundle, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_for_page(f"http://127.0.0.1:{port}/", process)
        print(f"bundle page up in {time.perf_counter() - started:.1f}s")
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        image = save_test_images(root / "data", tmp_path, 1)[0]
        message, label, picture = client.predict(handle_file(image), 3, "layer2", 0.5, api_name="/upload")  # no State
        assert message == "" and label["label"] in json.loads((bundle / "meta.json").read_text())["classes"]
        assert len(label["confidences"]) == 3 and os.path.exists(picture)
        gallery = client.predict(5, "layer2", 0.5, api_name="/mistakes")
        assert len(gallery) == 5 and " → " in gallery[0]["caption"]
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_export_needs_onnx_or_app(half_trained, capsys):
    root, _ = half_trained
    assert main(["export", str(root / "run")]) == 2
    assert "--onnx FILE, --app DIR or both" in capsys.readouterr().err


def test_export_never_writes_into_a_folder_of_other_files(half_trained, tmp_path, capsys):
    root, _ = half_trained
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("my project")
    assert main(["export", str(root / "run"), "--app", str(project)]) == 2
    assert "a folder with other files in it (not an earlier bundle)" in capsys.readouterr().err
    assert [p.name for p in project.iterdir()] == ["README.md"] and (project / "README.md").read_text() == "my project"
    assert (
        main(
            [
                "export",
                str(root / "run"),
                "--app",
                str(tmp_path / "app"),
                "--onnx",
                str(tmp_path / "app" / "model.onnx"),
            ]
        )
        == 2
    )
    assert "inside the --app folder" in capsys.readouterr().err and not (tmp_path / "app").exists()
    assert (
        main(["export", str(root / "run"), "--app", str(tmp_path / "app"), "--data-dir", str(tmp_path / "typo")]) == 2
    )
    assert f"--data-dir {tmp_path / 'typo'}: no such folder" in capsys.readouterr().err  # not a bundle without images
    assert not (tmp_path / "app").exists()


def test_an_export_cut_off_half_way_leaves_nothing_and_the_next_one_works(
    half_trained,
    tmp_path,
    monkeypatch,
    capsys,
):
    from cifarkit.errors import UserError
    from cifarkit.files import atomic as files

    root, _ = half_trained
    real_write = files.write_bytes
    written = []

    def full_disk(path, data):  # the disk fills after a few images (or Ctrl-C comes)
        written.append(path)
        if len(written) > 3:
            raise UserError(f"{path}: could not write it (No space left on device)")
        real_write(path, data)

    monkeypatch.setattr(files, "write_bytes", full_disk)
    assert main(["export", str(root / "run"), "--app", str(tmp_path / "app")]) == 2
    assert "No space left" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither a half bundle nor its staging folder
    monkeypatch.setattr(files, "write_bytes", real_write)
    assert main(["export", str(root / "run"), "--app", str(tmp_path / "app")]) == 0
    (tmp_path / "app" / ".git").mkdir()  # the bundle made a Space's repository, then exported again into it
    assert main(["export", str(root / "run"), "--app", str(tmp_path / "app")]) == 0
    assert {"app.py", "meta.json", "model.safetensors", ".git"} <= {p.name for p in (tmp_path / "app").iterdir()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app"]
    (tmp_path / "here").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "here")
    monkeypatch.chdir(tmp_path / "here")  # `--app .`, and a link to a folder: staged inside where it leads
    moves = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: moves.append((src, dst)) or real_replace(src, dst))
    for target in (".", str(tmp_path / "link")):
        moves.clear()
        assert main(["export", str(root / "run"), "--app", target]) == 0
    # the second export moved each file from a staging folder inside the target (one disk), meta.json last
    staging = tmp_path / "here" / ".cifarkit-partial"
    staged = [
        os.path.relpath(os.path.realpath(dst), tmp_path / "here") for src, dst in moves if staging in Path(src).parents
    ]  # not the files' own atomic writes
    assert {"app.py", "meta.json", "examples/00-airplane.png"} <= set(staged) and staged[-1] == "meta.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app", "here", "link"]
    assert ".cifarkit-partial" not in {p.name for p in (tmp_path / "here").iterdir()}


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--app", "APP", "--raw-input"], "--raw-input shapes the ONNX model's input: it goes with --onnx FILE"),
        (["--onnx", "m.onnx", "--data-dir", "."], "--data-dir is where the app bundle's example images come from"),
    ],
)
def test_export_refuses_a_flag_without_the_output_it_shapes(half_trained, tmp_path, capsys, flags, message):
    root, _ = half_trained
    flags = [str(tmp_path / f) if f in ("APP", "m.onnx") else f for f in flags]
    assert main(["export", str(root / "run"), *flags]) == 2
    assert message in capsys.readouterr().err and not list(tmp_path.iterdir())


@pytest.mark.realdata
def test_the_bundle_agrees_with_predict_on_real_test_images(real_data_dir, tmp_path, capsys):
    """On 120 real CIFAR-10 test images (PNG files, some resized) and a briefly trained fast net."""
    from cifarkit import TrainConfig, train

    config = TrainConfig(
        model="fast-small",
        epochs=1,
        batch_size=500,
        max_lr=0.2,
        optimizer="sgd",
        nesterov=True,
        momentum=0.85,
        norm_lr_scale=64.0,
        label_smoothing=0.2,
        data_dir=str(real_data_dir),
        limit_train=5000,
        limit_test=1000,
        threads=2,
        precision="fp32",
        eval_every=0,
    )
    results = train(config, tmp_path / "run", progress=False)
    assert (
        main(["export", str(tmp_path / "run"), "--app", str(tmp_path / "app"), "--data-dir", str(real_data_dir)]) == 0
    )
    capsys.readouterr()
    paths = save_test_images(real_data_dir, tmp_path / "images", 120)
    assert agreement(tmp_path / "app", tmp_path / "run", paths, capsys) == 120
    assert results["test_accuracy"] > 0.2
