"""`cifarkit export --app` on hostile or careless input: class names that are paths or too long for a file name,
a folder of the user's own or an earlier bundle with the user's files in it; and the bundle's app.py (without
cifarkit) on a damaged meta.json or model.safetensors and on ports out of range."""

from __future__ import annotations

import json
import shutil

import pytest
from test_bundle import bundle, run_isolated  # noqa: F401 (a fixture)
from test_explain import half_trained, save_test_images  # noqa: F401 (a fixture)

from cifarkit.cli.main import main

pytest.importorskip("captum")
pytest.importorskip("gradio")
pytest.importorskip("safetensors")


# ------------------------------------------------------------------------ names from the data, folders of others

# class names from a batches.meta: paths out of the folder, separators, dots, a CJK name
PATH_NAMES = ["../../../../escaped", "cat/dog", ".hidden", "..", "a b;c", "猫", "-rf", "x\\y", "/abs", "truck"]


@pytest.fixture(scope="module")
def run_named(tmp_path_factory, tiny_arrays):
    """run_named(names) -> root: a one-epoch run in root/run on the tiny data in root/data, whose batches.meta
    names the classes `names`."""
    import pickle

    from conftest import write_py_layout

    from cifarkit import TrainConfig, train

    def make(names: list[str]):
        root = tmp_path_factory.mktemp("named") / "inside"
        batches = write_py_layout(root / "data", *tiny_arrays)
        (batches / "batches.meta").write_bytes(pickle.dumps({"label_names": names, "num_cases_per_batch": 10000}))
        train(
            TrainConfig(
                model="s10-small",
                epochs=1,
                batch_size=50,
                max_lr=5e-3,
                data_dir=str(root / "data"),
                threads=1,
                precision="fp32",
            ),
            root / "run",
            progress=False,
        )
        return root

    return make


def test_class_names_never_become_paths_out_of_the_bundle(run_named):
    root = run_named(PATH_NAMES)
    before = set(root.parent.rglob("*"))
    assert main(["export", str(root / "run"), "--app", str(root / "app")]) == 0
    assert set(root.parent.rglob("*")) - before <= {root / "app", *(root / "app").rglob("*")}
    meta = json.loads((root / "app" / "meta.json").read_text())
    files = [e["file"] for key in ("examples", "mistakes") for e in meta[key]]
    assert len(meta["examples"]) == 10 and all((root / "app" / f).is_file() for f in files)
    assert {p.relative_to(root / "app").as_posix() for p in (root / "app").glob("*/*")} == set(files)
    assert [e["file"] for e in meta["examples"]] == [
        "examples/00-escaped.png",
        "examples/01-cat_dog.png",
        "examples/02-hidden.png",
        "examples/03-class.png",
        "examples/04-a_b_c.png",
        "examples/05-猫.png",
        "examples/06--rf.png",
        "examples/07-x_y.png",
        "examples/08-abs.png",
        "examples/09-truck.png",
    ]
    assert meta["classes"] == PATH_NAMES  # the names themselves are kept, whole, for the page


def test_a_250_character_class_name_exports_with_a_short_file_name(run_named, tmp_path):
    from cifarkit.app.bundle_app import load_bundle
    from cifarkit.data.dataset import CLASSES

    names = ["b" * 250, *CLASSES[1:]]
    root = run_named(names)
    assert main(["export", str(root / "run"), "--app", str(tmp_path / "app")]) == 0
    meta = json.loads((tmp_path / "app" / "meta.json").read_text())
    assert meta["classes"] == names and meta["examples"][0]["file"] == f"examples/00-{'b' * 40}.png"
    clf, _ = load_bundle(tmp_path / "app")
    assert [clf.classes[label] for _, label in clf.examples] == names


def snapshot(folder) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else b"/" for p in sorted(folder.rglob("*"))
    }


def test_export_refuses_a_project_holding_app_py_and_meta_json(half_trained, tmp_path, capsys):
    root, _ = half_trained
    project = tmp_path / "project"
    (project / "examples").mkdir(parents=True)
    for name, text in (
        ("app.py", "print('my app')\n"),
        ("meta.json", '{"name": "my project"}\n'),
        ("README.md", "# mine\n"),
        ("requirements.txt", "flask\n"),
        ("notes.txt", "keep\n"),
        ("examples/photo.png", "my photo"),
    ):
        (project / name).write_text(text)
    mine = snapshot(project)
    assert main(["export", str(root / "run"), "--app", str(project)]) == 2
    err = capsys.readouterr().err
    assert f"--app {project}: a folder with other files in it (not an earlier bundle)" in err
    assert '"format": "cifarkit-app-bundle"' in err and snapshot(project) == mine


def test_export_over_an_earlier_bundle_replaces_only_the_bundles_files(half_trained, tmp_path, capsys):
    root, _ = half_trained
    app = tmp_path / "app"
    assert main(["export", str(root / "run"), "--app", str(app), "--data-dir", str(root / "data")]) == 0
    (app / "examples" / "my-photo.png").write_text("mine")  # a user's files beside the bundle's
    (app / "mistakes" / "notes.txt").write_text("mine")
    (app / ".git").mkdir()
    (app / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    meta = json.loads((app / "meta.json").read_text())
    meta["examples"].append({"file": "examples/10-old.png", "label": 0})  # an image the new export will not have
    (app / "examples" / "10-old.png").write_bytes((app / meta["examples"][0]["file"]).read_bytes())
    (app / "meta.json").write_text(json.dumps(meta))
    (app / "app.py").write_text("stale")
    assert main(["export", str(root / "run"), "--app", str(app), "--data-dir", str(root / "data")]) == 0
    assert (app / "examples" / "my-photo.png").read_text() == "mine" and (app / "mistakes" / "notes.txt").exists()
    assert (app / ".git" / "HEAD").exists() and not (app / "examples" / "10-old.png").exists()
    assert (app / "app.py").read_text() != "stale"
    assert len(json.loads((app / "meta.json").read_text())["examples"]) == 10
    (app / "examples" / "00-airplane.png").unlink()  # a user's file where the next export puts its image
    shutil.copy(app / "examples" / "01-automobile.png", app / "examples" / "00-airplane.png")
    meta = json.loads((app / "meta.json").read_text())
    (app / "meta.json").write_text(json.dumps({**meta, "examples": meta["examples"][1:]}))
    kept = snapshot(app)
    assert main(["export", str(root / "run"), "--app", str(app), "--data-dir", str(root / "data")]) == 2
    assert "examples/00-airplane.png there is not an image of the earlier bundle" in capsys.readouterr().err
    assert snapshot(app) == kept
    shutil.rmtree(app / "examples")
    (app / "examples").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert main(["export", str(root / "run"), "--app", str(app), "--data-dir", str(root / "data")]) == 2
    assert "examples there is a link" in capsys.readouterr().err and not (tmp_path / "elsewhere").exists()


# ------------------------------------------------------------------------ the bundle's own checks


def damage(folder, what: str) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    broken = {
        "meta-list": "[]",
        "meta-null": "null",
        "meta-types": json.dumps({**meta, "classes": "cat dog"}),
        "meta-size": json.dumps({**meta, "image_size": 200000}),
        "meta-deep": "[" * 100000 + "]" * 100000,
        "meta-file": json.dumps({**meta, "examples": [{"file": "../../etc/passwd", "label": 0}]}),
    }
    if what in broken:
        (folder / "meta.json").write_text(broken[what])
    elif what == "weights-empty":
        (folder / "model.safetensors").write_bytes(b"")
    elif what == "weights-garbage":
        (folder / "model.safetensors").write_bytes(bytes(range(256)) * 40)


@pytest.mark.parametrize(
    "what, args, message",
    [
        ("meta-list", ["--predict"], "meta.json: not a bundle's meta.json this app.py can use: the file holds list"),
        ("meta-null", ["--predict"], "the file holds NoneType, not an object"),
        ("meta-types", ["--predict"], "classes must be a list of at least 2 class names"),
        ("meta-size", ["--predict"], "image_size must be a whole number of pixels in 16..512"),
        ("meta-deep", ["--predict"], "meta.json: not readable as JSON (RecursionError"),
        ("meta-file", [], 'examples must list images as {"file": "examples/NAME.png"'),
        ("weights-empty", ["--predict"], "model.safetensors: not this bundle's model weights"),
        ("weights-garbage", ["--predict"], "model.safetensors: not this bundle's model weights"),
        (None, ["--port", "70000"], "--port 70000: a TCP port is a whole number in 1..65535"),
        (None, ["--port", "0"], "--port 0: a TCP port is a whole number in 1..65535"),
    ],
)
def test_the_bundle_refuses_damaged_files_and_bad_ports_in_one_line(
    bundle,
    half_trained,
    tmp_path,
    what,
    args,
    message,
):
    root, _ = half_trained
    copy = tmp_path / "app"
    shutil.copytree(bundle, copy)
    damage(copy, what)
    if args == ["--predict"]:
        args = ["--predict", save_test_images(root / "data", tmp_path, 1)[0]]
    done = run_isolated(copy, *args)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr and (what is None or "export the bundle again" in done.stderr)
