"""`cifarkit app RUN_DIR`: the page served from a run folder on this machine. Loads the run's model and test
images, builds the page (app/page.py, which the exported bundle serves without cifarkit) and, where the run folder
holds a finished audit, a second tab to browse it (audit_tab.py).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from ..errors import UserError
from .audit_tab import AuditBrowser, audit_tab, browse_audit
from .page import Classifier, build_demo, launch

TITLE = "cifarkit: what does the model see?"


def with_audit_tab(demo: Any, browser: AuditBrowser) -> Any:
    """A page of two tabs: `demo` (the model) and the audit's browser."""
    import gradio as gr

    with gr.Blocks(title=TITLE, analytics_enabled=False) as page:
        with gr.Tab("Model", elem_id="model-tab"):
            demo.render()
        with gr.Tab("Data audit", elem_id="audit-tab"):
            audit_tab(browser)
    return page


def serve(
    checkpoint: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 7860,
    data_dir: str | None = None,
    block: bool = True,
    progress: bool = True,
) -> Any:
    """`cifarkit app`: load the checkpoint once, offer 10 test images, and serve the page; `progress`: a bar on
    stderr over the start's steps (importing gradio alone takes seconds)."""
    from ..evaluate.explain import test_set_or_none
    from ..evaluate.inference import image_size, load_model
    from ..rundir.run_dir import run_of
    from ..runtime.device import resolve_device
    from ..runtime.progress import progress_bar

    with progress_bar(4, "starting the app: loading gradio", progress, unit="step") as bar:
        try:
            import captum.attr  # noqa: F401 (only whether it imports)
            import gradio  # noqa: F401 (only whether it imports)
        except ImportError as e:
            raise UserError(
                f"the app needs gradio and captum ({e.name} is missing): pip install 'cifarkit[app]'"
            ) from None
        bar.update()
        bar.set_description("starting the app: loading the model")  # drawn at once: each step said as it starts
        model, ckpt = load_model(checkpoint, resolve_device("auto"))
        bar.update()
        bar.set_description("starting the app: reading the test images")
        images, labels = test_set_or_none(ckpt, data_dir, "app", "; upload only") or (None, None)
        bar.update()
        bar.set_description("starting the app: preparing the examples and the page")
        clf = Classifier(
            model,
            ckpt["classes"],
            ckpt["mean"],
            ckpt["std"],
            image_size(ckpt),
            examples=example_images(images, labels) if images is not None else [],
            candidates=(lambda: (images, labels)) if images is not None else None,
            precision=ckpt["config"].get("precision", "fp32"),
        )
        run = run_of(checkpoint)
        results = run.read_results() or {}
        accuracy = f"; test accuracy {results['test_accuracy']:.2%}" if "test_accuracy" in results else ""
        about = f"Model `{ckpt['model_name']}` from run `{run.path.name}`{accuracy}. {len(ckpt['classes'])} classes."
        demo = build_demo(clf, TITLE, about)
        browser = browse_audit(run.path, ckpt, data_dir)
        if browser is not None:  # a finished audit: the page gets a tab for it
            demo = with_audit_tab(demo, browser)
        bar.update()
    try:
        return launch(demo, host, port, block)
    except OSError as e:  # gradio's own words name launch()'s server_port and an environment variable
        raise UserError(
            f"--port {port}: cannot serve on {host}:{port}, the port is in use or the address is not "
            f"this machine's ({str(e).split('.')[0]}); choose another --port or --host"
        ) from None


def example_images(images: torch.Tensor, labels: torch.Tensor, count: int = 10) -> list[tuple[torch.Tensor, int]]:
    """The first test image of each class, in class order, up to `count` (then the next ones in order)."""
    labels = labels.cpu()
    picks = [int(torch.nonzero(labels == c).flatten()[0]) for c in labels.unique().tolist()][:count]
    picks += [i for i in range(len(labels)) if i not in picks][: count - len(picks)]
    return [(images[i].cpu(), int(labels[i])) for i in picks]
