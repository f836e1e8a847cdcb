"""A trained model at work: logits with test-time augmentation, metrics, evaluation of a checkpoint,
prediction of image files, ONNX export, GradCAM maps.
"""

from .explain import gradcam_maps, overlay
from .inference import evaluate_checkpoint, export_onnx, load_model, predict_files
from .metrics import confusion_matrix, mistakes, per_class_accuracy, predict_logits

__all__ = [
    "confusion_matrix",
    "evaluate_checkpoint",
    "export_onnx",
    "gradcam_maps",
    "load_model",
    "mistakes",
    "overlay",
    "per_class_accuracy",
    "predict_files",
    "predict_logits",
]
