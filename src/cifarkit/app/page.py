"""`cifarkit app`: a Gradio page for a trained model. Upload an image or pick a test image; the top-k classes
with probabilities; the GradCAM heat map of the top class over the image, at a chosen layer and opacity; a
gallery of the most confidently misclassified test images with theirs.

`Classifier` and `build_demo` use nothing of cifarkit beyond what the exported bundle carries (bundle_source.py
copies them into its app.py): the page is the same here and in a HuggingFace Space. Everything runs locally: no
analytics, no fonts or scripts from the internet; the server binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import normalize
from ..data.folder import read_image
from ..errors import UserError
from ..evaluate.explain import cam_model, gradcam_maps, overlay
from ..evaluate.metrics import mistakes, predict_logits
from ..models.layers import default_layer, feature_layers, layer_problem
from ..runtime.device import inference_precision

DISPLAY = 256  # pixels a side of the images the page shows (the model sees 32x32)
MAX_UPLOAD = "25mb"  # Gradio refuses larger uploads; read_image refuses images over 50 megapixels
# Gradio's galleries float their label over the first row of thumbnails, keep at least 450 pixels of height
# however few the images, hold 5 columns of at least 100 pixels however narrow the page (it then scrolls sideways),
# and cut captions to 80% of a thumbnail with an ellipsis ("automob..."). Here the label has a line of its own, the
# test images' box is as tall as its thumbnails, as many columns as fit, each row as tall as its own captions, and
# each caption sits under its image, wrapped where it must be (CIFAR-100 or folder class names can be long); only
# a caption over 3 lines is cut (the page's top-k names the class whole).
PAGE_CSS = """
#examples > label[data-testid="block-label"], #mistakes > label[data-testid="block-label"],
#audit-gallery > label[data-testid="block-label"] { position: static; margin: var(--block-label-margin); }
#examples .grid-wrap { overflow-y: auto; }
#examples .grid-container { grid-template-columns: repeat(auto-fill, minmax(96px, 1fr)); grid-auto-rows: auto; }
#mistakes .grid-container, #audit-gallery .grid-container {
  grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); grid-auto-rows: auto; }
#examples .thumbnail-item, #mistakes .thumbnail-item, #audit-gallery .thumbnail-item {
  aspect-ratio: auto; height: auto; display: flex; flex-direction: column; }
#examples .thumbnail-item > img, #mistakes .thumbnail-item > img { aspect-ratio: 1; height: auto; }
#audit-gallery .thumbnail-item > img { aspect-ratio: auto; height: auto; object-fit: contain; }
#examples .caption-label, #mistakes .caption-label, #audit-gallery .caption-label {
  position: static; max-width: none; white-space: normal;
  overflow-wrap: anywhere; text-align: center; border: none; border-radius: 0; display: -webkit-box;
  -webkit-box-orient: vertical; -webkit-line-clamp: 3; overflow: hidden; padding: 0 var(--spacing-sm);
  margin: var(--spacing-xs) 0; }
"""


class Classifier:
    """A trained model with its class names and normalisation: probabilities (under inference_mode, in the
    run's `precision` as `cifarkit predict` computes them) and GradCAM overlays (on an fp32 copy, one at a
    time) of uint8 images (3, H, W).

    `examples`: [(image, class index)] to offer; `candidates`: a function returning (images, labels) among
    which to look for mistakes (called once, when first needed).
    """

    def __init__(
        self,
        model: nn.Module,
        classes: list[str],
        mean: list[float],
        std: list[float],
        image_size: int = 32,
        examples: list[tuple[torch.Tensor, int]] = (),
        candidates: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None,
        precision: str = "fp32",
    ):
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.device = next(model.parameters()).device
        self.dtype = inference_precision(precision, self.device)  # e.g. fp32 on a CPU for a GPU's fp16 run
        self.classes, self.mean, self.std, self.image_size = list(classes), mean, std, image_size
        self.cam = cam_model(model)
        self.layers = feature_layers(model, image_size)
        self.default_layer = default_layer(model, self.layers)
        self.examples, self.candidates = list(examples), candidates
        self.lock = threading.Lock()  # Captum hooks the shared copy: one GradCAM at a time
        self.found: tuple[torch.Tensor, ...] | None = None  # candidates' mistakes: image, label, predicted, confidence

    def probabilities(self, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
        """(N, classes) float32 on the CPU for uint8 images (N, 3, H, W): one view each, as `cifarkit predict`."""
        if not len(images):
            return torch.empty(0, len(self.classes))
        logits = predict_logits(
            self.model, images.to(self.device), batch, self.dtype, tta="none", mean=self.mean, std=self.std
        )
        return logits.softmax(1).cpu()

    def heat(self, images: torch.Tensor, targets: torch.Tensor, layer: str) -> torch.Tensor:
        """GradCAM maps (N, H, W) in [0, 1] of `targets` at `layer`, on the CPU."""
        with self.lock:
            x = normalize(images.to(self.device), self.mean, self.std)
            return gradcam_maps(self.cam, x, layer, targets.to(self.device)).cpu()

    def layer(self, name: str | None) -> tuple[str, str | None]:
        """(a valid layer, a warning or None): unknown names fall back to the default, with a message."""
        valid, message = layer_problem(name or self.default_layer, self.layers)
        return (name or self.default_layer, message) if valid else (self.default_layer, message)

    def picture(self, image: torch.Tensor, heat: torch.Tensor | None, opacity: float) -> np.ndarray:
        """uint8 (DISPLAY, DISPLAY, 3): the image enlarged (nearest), the heat map smoothly, coloured over it."""
        scale = max(1, DISPLAY // image.shape[-1])
        pixels = image.repeat_interleave(scale, 1).repeat_interleave(scale, 2).permute(1, 2, 0).numpy()
        if heat is None:
            return pixels
        big = F.interpolate(heat[None, None].float(), size=pixels.shape[:2], mode="bilinear")[0, 0]
        return overlay(pixels, big.clamp(0, 1).numpy(), opacity)

    def analyse(
        self, image: torch.Tensor, top_k: int, layer: str | None, opacity: float
    ) -> tuple[dict[str, float], np.ndarray, str]:
        """Top-k {class: probability}, the GradCAM picture of the top class, and a note (warnings, else '')."""
        layer, note = self.layer(layer)
        probs = self.probabilities(image[None])[0]
        top = probs.topk(max(1, min(int(top_k), len(self.classes))))
        heat = self.heat(image[None], top.indices[:1], layer)[0]
        scores = {self.classes[int(i)]: float(v) for v, i in zip(top.values, top.indices)}
        return scores, self.picture(image, heat, opacity), note or ""

    def mistakes(self, count: int, layer: str | None, opacity: float) -> list[tuple[np.ndarray, str]]:
        """The `count` most confident mistakes among the candidates, each as (GradCAM picture, caption)."""
        if self.candidates is None:
            return []
        with self.lock:
            if self.found is None:
                images, labels = self.candidates()
                probs = self.probabilities(images)
                confidence, predicted = probs.max(1)
                order = mistakes(labels.cpu(), probs)  # the most confident first
                self.found = images.cpu()[order], labels.cpu()[order], predicted[order], confidence[order]
        images, labels, predicted, confidence = (t[: int(count)] for t in self.found)
        layer, _ = self.layer(layer)
        maps = self.heat(images, predicted, layer) if len(images) else []
        return [
            (
                self.picture(images[i], maps[i], opacity),
                f"{self.classes[int(labels[i])]} → {self.classes[int(predicted[i])]} {float(confidence[i]):.0%}",
            )
            for i in range(len(images))
        ]

    # -- what the page's events call: (image kept for the next event, message, top-k, GradCAM picture) --------

    def answer(self, image: np.ndarray | None, top_k: int, layer: str | None, opacity: float) -> tuple:
        """The page's answer for a uint8 image (3, H, W) as a numpy array (None: nothing to show)."""
        if image is None:
            return None, "", None, None
        scores, picture, note = self.analyse(torch.from_numpy(image), top_k, layer, opacity)
        return image, note and f"**Note:** {note}", scores, picture

    def answer_file(self, path: str | None, top_k: int, layer: str | None, opacity: float) -> tuple:
        """The answer for an uploaded file; a file read_image refuses (not an image, corrupt, too large) gets
        its message in the page, naming the file as uploaded (the server's temporary path means nothing)."""
        if path is None:
            return None, "", None, None
        try:
            image = read_image(path, self.image_size).numpy()
        except UserError as e:
            return None, f"**Refused:** {str(e).replace(str(path), Path(path).name)}", None, None
        return self.answer(image, top_k, layer, opacity)


def build_demo(clf: Classifier, title: str, about: str = "") -> Any:
    """The Gradio page (a gr.Blocks) for `clf`."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no telemetry or version check: nothing leaves the machine
    import gradio as gr

    def example(top_k, layer, opacity, evt):
        return clf.answer(clf.examples[evt.index][0].numpy(), top_k, layer, opacity)

    example.__annotations__ = {"evt": gr.SelectData}  # how Gradio knows to pass the selection

    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(f"# {title}\n{about}")
        state = gr.State(None)
        with gr.Row():
            with gr.Column():
                file = gr.File(
                    label="Upload an image (PNG, JPEG, ...; any size up to 50 megapixels)",
                    file_types=["image"],
                    type="filepath",
                    elem_id="upload",
                )
                shown = [(clf.picture(img, None, 0)[::2, ::2], clf.classes[label]) for img, label in clf.examples]
                examples = gr.Gallery(
                    shown,
                    label="... or pick a test image",
                    columns=5,
                    height="fit-content",
                    allow_preview=False,
                    format="png",
                    buttons=[],
                    visible=bool(shown),
                    elem_id="examples",
                )
                top_k = gr.Slider(
                    1, len(clf.classes), value=min(3, len(clf.classes)), step=1, label="top-k classes", elem_id="top-k"
                )
                layer = gr.Dropdown(
                    [(f"{n}  ({h}x{w})", n) for n, (_, h, w) in clf.layers.items()],
                    value=clf.default_layer,
                    label="GradCAM layer",
                    elem_id="layer",
                )
                opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="heat map opacity", elem_id="opacity")
            with gr.Column():
                message = gr.Markdown(elem_id="message")
                label = gr.Label(label="Top classes", elem_id="prediction")
                picture = gr.Image(
                    label="GradCAM of the top class",
                    type="numpy",
                    interactive=False,
                    format="png",
                    buttons=["download", "fullscreen"],
                    elem_id="gradcam",
                )
        outputs = [state, message, label, picture]
        file.upload(clf.answer_file, [file, top_k, layer, opacity], outputs, api_name="upload")
        examples.select(example, [top_k, layer, opacity], outputs, api_name="example")
        for control in (top_k, opacity):
            control.release(clf.answer, [state, top_k, layer, opacity], outputs, api_name=False)
        layer.input(clf.answer, [state, top_k, layer, opacity], outputs, api_name=False)
        with gr.Accordion(
            "Misclassified test images with their GradCAM",
            open=False,
            visible=clf.candidates is not None,
            elem_id="mistakes-panel",
        ):
            count = gr.Slider(1, 50, value=10, step=1, label="how many (most confident mistakes first)")
            show = gr.Button("Show", elem_id="show-mistakes")
            mistakes = gr.Gallery(
                label="true → predicted class (confidence); the heat map is the predicted class's",
                columns=5,
                height="auto",
                format="png",
                buttons=["fullscreen"],
                elem_id="mistakes",
            )
        show.click(clf.mistakes, [count, layer, opacity], mistakes, api_name="mistakes")
    return demo


def launch(demo: Any, host: str | None, port: int | None, block: bool = True) -> Any:
    """Serve the page (queued: one request at a time per event), never sharing it through Gradio's servers; the
    theme's fonts are the system's (the default theme would fetch them from Google). Says where the page is in
    one line: Gradio's own lines advise setting `share=True` in `launch()`, which a command-line user cannot do.
    Returns `demo` once the server stops, or at once (still serving) when not `block`."""
    import gradio as gr

    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
    demo.queue(default_concurrency_limit=1).launch(
        server_name=host,
        server_port=port,
        share=False,
        max_file_size=MAX_UPLOAD,
        ssr_mode=False,
        quiet=True,
        prevent_thread_lock=True,
        theme=theme,
        css=PAGE_CSS,
        footer_links=["api", "settings"],
    )
    print(f"The page is at {demo.local_url} (Ctrl-C stops it)", flush=True)
    if block:
        demo.block_thread()
    return demo
