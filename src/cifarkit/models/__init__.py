"""The networks, by name (S10 ResNet, FastNet), and the layers GradCAM can look at.
"""
from .nets import MODELS, build_model, count_parameters, has_whitening_stem, summary
from .layers import default_layer, feature_layers

__all__ = ["MODELS", "build_model", "count_parameters", "default_layer", "feature_layers", "has_whitening_stem", "summary"]
