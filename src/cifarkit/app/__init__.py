"""The Gradio page for a trained model, and the bundle that runs it without cifarkit."""

from .bundle import export_app
from .local import serve
from .page import build_demo

__all__ = ["build_demo", "export_app", "serve"]
