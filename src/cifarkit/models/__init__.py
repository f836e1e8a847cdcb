"""The networks, by name (S10 ResNet, FastNet), and the layers GradCAM can look at."""

from .layers import default_layer, feature_layers
from .nets import MODELS, build_model, count_parameters, has_whitening_stem, summary

__all__ = [
    "MODELS",
    "build_model",
    "count_parameters",
    "default_layer",
    "feature_layers",
    "has_whitening_stem",
    "summary",
]
