"""`cifarkit export RUN_DIR --app DIR`: a folder that runs the app anywhere, without cifarkit (a HuggingFace
Space as it is):

    model.safetensors   the weights inference uses (the EMA when the run had one); no pickle
    meta.json           model name, class names, mean/std, image size, test accuracy, the example files
    app.py              the model definition, inference, GradCAM and the Gradio page; imports no cifarkit
    requirements.txt    torch, gradio, safetensors, captum, numpy, pillow
    README.md           what it is and the run's test accuracy, under HuggingFace Spaces front matter
    examples/*.png      10 test images; mistakes/*.png: the most confident mistakes, for the gallery

app.py is generated from cifarkit's own source at export time (`inline`): the functions below from
`load_bundle` on, and everything they use in cifarkit (the model classes, read_image, normalize, GradCAM,
the page) copied definition by definition, so the bundle runs the same code as `cifarkit app` and cannot
drift from it. `python app.py` serves the page; `python app.py --predict IMAGE...` prints JSON as
`cifarkit predict --json` does.
"""
from __future__ import annotations

import ast
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from .app import Classifier, build_demo, example_images, launch
from .errors import UserError
from .folder import read_image
from .models import build_model

PACKAGE = Path(__file__).resolve().parent
ROOTS = ("main",)  # what app.py must define; the rest follows from what these use
MISTAKES = 50  # test images kept for the bundle's gallery (the app's slider goes to 50)
REQUIREMENTS = ("torch>=2.4", "gradio>=6.31,<7", "safetensors>=0.4", "captum>=0.9", "numpy>=1.24", "pillow>=10.0")


# ---------------------------------------------------------------------------------- what app.py runs

def load_bundle(folder: str | os.PathLike | None = None, with_images: bool = True) -> tuple[Any, dict[str, Any]]:
    """(Classifier, meta) of a bundle folder (default: the folder of this file); `with_images=False`: without the
    example and mistake images (to predict, which needs none of them)."""
    from safetensors.torch import load_file

    folder = Path(folder or Path(__file__).resolve().parent)
    try:
        meta = json.loads((folder / "meta.json").read_text())
        model = build_model(meta["model_name"], num_classes=len(meta["classes"]))
        model.load_state_dict(load_file(folder / "model.safetensors"))
    except (OSError, ValueError, KeyError, RuntimeError) as e:  # a file missing, damaged or from another export
        raise UserError(f"{folder}: this bundle's meta.json or model.safetensors is missing or damaged "
                        f"({type(e).__name__}: {e}); export it again with `cifarkit export RUN --app DIR`") from None
    stored = {key: [(read_image(folder / e["file"], meta["image_size"]), e["label"]) for e in meta[key]]
              if with_images else [] for key in ("examples", "mistakes")}
    candidates = None
    if stored["mistakes"]:
        def candidates():
            return (torch.stack([image for image, _ in stored["mistakes"]]),
                    torch.tensor([label for _, label in stored["mistakes"]]))
    return Classifier(model.eval(), meta["classes"], meta["mean"], meta["std"], meta["image_size"],
                      examples=stored["examples"], candidates=candidates, precision=meta["precision"]), meta


def predict(paths: list[str], top_k: int | None = None, folder: str | os.PathLike | None = None
            ) -> list[dict[str, Any]]:
    """Top-k classes (default 3, or every class of a model with fewer) with probabilities of image files, as
    `cifarkit predict --json` prints them."""
    clf, _ = load_bundle(folder, with_images=False)
    top_k = min(3, len(clf.classes)) if top_k is None else top_k
    if not 1 <= top_k <= len(clf.classes):
        raise UserError(f"--top-k {top_k}: must lie in 1..{len(clf.classes)}")
    probs = clf.probabilities(torch.stack([read_image(p, clf.image_size) for p in paths]))
    top = probs.topk(top_k, dim=1)
    return [{"image": str(p), "top": [{"class": clf.classes[int(i)], "probability": float(v)}
                                      for v, i in zip(values, indices)]}
            for p, values, indices in zip(paths, top.values, top.indices)]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="A CIFAR classifier with GradCAM (exported by cifarkit).")
    parser.add_argument("--predict", nargs="+", metavar="IMAGE", help="print the top-k classes as JSON and exit")
    parser.add_argument("--top-k", type=int, help="how many classes (default 3, or every class when fewer)")
    parser.add_argument("--host", help="address to bind (default $GRADIO_SERVER_NAME, else 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default $GRADIO_SERVER_PORT, else 7860)")
    args = parser.parse_args(argv)
    try:
        if args.predict:
            print(json.dumps(predict(args.predict, args.top_k), indent=2))
            return 0
        clf, meta = load_bundle()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    accuracy = meta.get("test_accuracy")
    about = (f"Model `{meta['model_name']}`, {len(meta['classes'])} classes"
             + (f", test accuracy {accuracy:.2%}" if accuracy is not None else "") + ". Exported by cifarkit.")
    demo = build_demo(clf, meta.get("title", "What does the model see?"), about)
    try:
        launch(demo, args.host, args.port)
    except OSError as e:  # as `cifarkit app` says it; gradio's defaults come from its environment variables
        where = (f"{args.host or os.environ.get('GRADIO_SERVER_NAME', '127.0.0.1')}:"
                 f"{args.port or os.environ.get('GRADIO_SERVER_PORT', 7860)}")
        print(f"error: cannot serve the page on {where}: the port is in use or the address is not this machine's "
              f"({str(e).split('.')[0]}); choose another --port or --host", file=sys.stderr)
        return 2
    return 0


# ---------------------------------------------------------------------------------- writing the folder

def export_app(checkpoint: str | os.PathLike, folder: str | os.PathLike, data_dir: str | None = None
               ) -> dict[str, Any]:
    """Write the bundle for a run (or checkpoint) into `folder`: a new or empty folder, or an earlier bundle's
    (whose files are replaced)."""
    try:
        import safetensors.torch  # noqa: F401 (written in _write_bundle)
    except ImportError:
        raise UserError("the app bundle needs safetensors: pip install 'cifarkit[app]'") from None
    from .explain import test_set_or_none
    from .files import STAGING, staged_folder
    from .inference import image_size, load_model
    from .rundir import RESULTS, run_of

    checkpoint, folder = Path(checkpoint), Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--app {folder}: exists and is not a folder")
    earlier_bundle = (folder / "meta.json").is_file() and (folder / "app.py").is_file()
    # a folder of other files would have its app.py, README.md replaced (STAGING: what an export cut off left)
    if folder.is_dir() and any(p.name != STAGING for p in folder.iterdir()) and not earlier_bundle:
        raise UserError(f"--app {folder}: a folder with other files in it (not an earlier bundle); export into a new "
                        "or empty folder")
    model, ckpt = load_model(checkpoint, torch.device("cpu"))
    run = run_of(checkpoint)
    results = run.read_json(RESULTS) or {}
    source = inline(ROOTS)  # before writing anything: a bug here leaves no half bundle
    meta = {"model_name": ckpt["model_name"], "classes": list(ckpt["classes"]), "mean": list(ckpt["mean"]),
            "std": list(ckpt["std"]), "image_size": image_size(ckpt),
            "precision": ckpt["config"].get("precision", "fp32"),  # predictions as `cifarkit predict` makes them
            "test_accuracy": results.get("test_accuracy"), "run": run.path.name, "cifarkit": ckpt.get("cifarkit"),
            "title": f"What does the model see? ({ckpt['model_name']}, run {run.path.name})",
            "examples": [], "mistakes": []}
    without = ": the bundle has no examples or gallery"
    images, labels = test_set_or_none(ckpt, data_dir, "export", without) or (None, None)
    # a full disk or a Ctrl-C leaves no half bundle; a bundle exported again keeps no stale images
    with staged_folder(folder, replaced=("examples", "mistakes"), last="meta.json") as staging:
        _write_bundle(staging, model, ckpt, meta, source, images, labels)
    files = ["app.py", "model.safetensors", "meta.json", "requirements.txt", "README.md"]
    return {"folder": str(folder), "files": files + [f"{len(meta['examples'])} examples",
                                                     f"{len(meta['mistakes'])} mistakes"], "meta": meta}


def _write_bundle(folder: Path, model: torch.nn.Module, ckpt: dict[str, Any], meta: dict[str, Any], source: str,
                  images: torch.Tensor | None, labels: torch.Tensor | None) -> None:
    from PIL import Image
    from safetensors.torch import save

    from .files import write_bytes, write_json, write_text
    from .metrics import mistakes

    if images is not None:
        clf = Classifier(model, ckpt["classes"], ckpt["mean"], ckpt["std"], meta["image_size"],
                         precision=meta["precision"])
        wrong = mistakes(labels.cpu(), clf.probabilities(images))[:MISTAKES]  # as the bundle will predict
        for key, picks in (("examples", example_images(images, labels)),
                           ("mistakes", [(images[i].cpu(), int(labels[i])) for i in wrong])):
            for n, (image, label) in enumerate(picks):
                buf = io.BytesIO()
                Image.fromarray(image.permute(1, 2, 0).numpy()).save(buf, format="png")
                name = f"{key}/{n:02d}-{meta['classes'][label]}.png"
                write_bytes(folder / name, buf.getvalue())
                meta[key].append({"file": name, "label": label})
    weights = {k: v.detach().contiguous() for k, v in ckpt["model"].items()}
    write_bytes(folder / "model.safetensors", save(weights, metadata={"model_name": ckpt["model_name"]}))
    write_json(folder / "meta.json", meta)
    write_text(folder / "app.py", source)
    write_text(folder / "requirements.txt", "\n".join(REQUIREMENTS) + "\n")
    write_text(folder / "README.md", readme(meta))


def readme(meta: dict[str, Any]) -> str:
    """The bundle's README.md: HuggingFace Spaces front matter (the Gradio version exporting it), then what it is."""
    from importlib.metadata import PackageNotFoundError, version

    accuracy = meta["test_accuracy"]
    shown = f"{accuracy:.2%}" if accuracy is not None else "not recorded (the run had not finished)"
    names = ", ".join(meta["classes"][:20]) + (", ..." if len(meta["classes"]) > 20 else "")
    try:
        sdk_version = f"sdk_version: {version('gradio')}\n"
    except PackageNotFoundError:
        sdk_version = ""
    return f"""---
title: {meta['model_name']} with GradCAM
emoji: 🔍
colorFrom: blue
colorTo: red
sdk: gradio
{sdk_version}app_file: app.py
pinned: false
---

# What does the model see?

A `{meta['model_name']}` image classifier ({len(meta['classes'])} classes: {names}) trained with cifarkit
(run `{meta['run']}`). **Test accuracy: {shown}.**

Upload an image or pick one of the test images: the page shows the top-k classes with their probabilities
and a GradCAM heat map of where the model looked for the top class (choose the layer and the opacity), and a
gallery of the test images it got most confidently wrong.

- `python app.py` serves the page on http://127.0.0.1:7860 (`--host 0.0.0.0` to share it on a network)
- `python app.py --predict IMAGE...` prints the top-3 classes of image files as JSON
- On HuggingFace: `hf repos create USER/NAME --type space --sdk gradio`, then `hf upload USER/NAME . --type space`
  from this folder (the Space installs `requirements.txt` and runs `app.py`)

`model.safetensors` holds the weights (no pickle), `meta.json` the class names and normalisation, `app.py`
the model definition, inference and the page; it imports nothing of cifarkit.
"""


# ---------------------------------------------------------------------------------- generating app.py

class _Names(ast.NodeVisitor):
    """The global names a definition uses, annotations left out (app.py never evaluates them)."""

    def __init__(self):
        self.names: set[str] = set()
        self.relative: list[str] = []

    def visit_Name(self, node: ast.Name) -> None:
        self.names.add(node.id)

    def visit_arg(self, node: ast.arg) -> None:
        pass  # its annotation

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        for child in (*node.decorator_list, node.args, *node.body):
            self.visit(child)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        for child in (node.target, node.value):
            if child is not None:
                self.visit(child)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.relative.append(node.module or "")


def _module(name: str) -> tuple[str, dict[str, ast.stmt], dict[str, tuple[str, str]], dict[str, ast.stmt]]:
    """(source, top-level definitions by name, relative imports: name -> (module, name), absolute imports)."""
    source = (PACKAGE / f"{name}.py").read_text()
    defs, relative, imports = {}, {}, {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defs[node.name] = node
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            defs.update({t.id: node for t in node.targets})
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defs[node.target.id] = node
        elif isinstance(node, ast.ImportFrom) and node.level:
            for alias in node.names:
                if alias.asname and alias.asname != alias.name:
                    raise UserError(f"bundle: {name}.py imports {alias.name} as {alias.asname}; app.py cannot")
                relative[alias.name] = (node.module, alias.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and getattr(node, "module", "") != "__future__":
            imports.update({(a.asname or a.name).split(".")[0]: node for a in node.names})
    return source, defs, relative, imports


def inline(roots: tuple[str, ...] = ROOTS, module: str = "bundle") -> str:
    """app.py: `roots` of `module` and, transitively, every cifarkit definition they use, each copied from its
    module's source, modules in dependency order; a definition that imports cifarkit in its body is refused."""
    modules: dict[str, tuple] = {}
    wanted: dict[str, set[str]] = {}
    imports: dict[str, set[int]] = {}
    after: dict[str, set[str]] = {}  # module -> the modules whose definitions it uses
    todo = [(module, name) for name in roots]
    while todo:
        mod, name = todo.pop()
        if name in wanted.setdefault(mod, set()):
            continue
        source, defs, relative, absolute = modules.setdefault(mod, _module(mod))
        if name in relative:
            target, original = relative[name]
            after.setdefault(mod, set()).add(target)
            todo.append((target, original))
            continue
        if name not in defs:
            raise UserError(f"bundle: {mod}.py has no top-level {name}")
        wanted[mod].add(name)
        visitor = _Names()
        visitor.visit(defs[name])
        if visitor.relative:
            raise UserError(f"bundle: {mod}.{name} imports .{visitor.relative[0]} in its body; app.py cannot")
        for used in visitor.names:
            if used in defs or used in relative:
                todo.append((mod, used))
            elif used in absolute:
                imports.setdefault(mod, set()).add(id(absolute[used]))
    order: list[str] = []

    def place(mod: str) -> None:
        if mod not in order:
            for dep in sorted(after.get(mod, ())):
                place(dep)
            order.append(mod)

    for mod in sorted(modules):
        place(mod)
    head, body, seen = [], [], {}
    for mod in order:
        source, defs, relative, absolute = modules[mod]
        lines = source.splitlines()
        nodes = {id(n): n for n in (*[defs[name] for name in wanted.get(mod, ())],
                                    *[n for n in absolute.values() if id(n) in imports.get(mod, ())])}
        for node in sorted(nodes.values(), key=lambda n: n.lineno):
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            text = "\n".join(lines[start - 1:node.end_lineno])
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                if text not in head:
                    head.append(text)
                continue
            for name in [n for n, d in defs.items() if d is node]:
                if seen.setdefault(name, text) != text:
                    raise UserError(f"bundle: two different definitions of {name} ({mod}.py and another)")
            body.append(f"# from cifarkit/{mod}.py\n{text}")
    return ('"""A CIFAR classifier with GradCAM and a Gradio page, exported by cifarkit: the model definition,\n'
            'inference and the page only. Generated from cifarkit\'s source; imports no cifarkit.\n\n'
            '    python app.py                      serve the page (127.0.0.1:7860 unless told otherwise)\n'
            '    python app.py --predict IMAGE...   top-k classes as JSON\n"""\n'
            "from __future__ import annotations\n\n" + "\n".join(sorted(set(head))) + "\n\n\n"
            + "\n\n\n".join(body) + '\n\n\nif __name__ == "__main__":\n    sys.exit(main())\n')
