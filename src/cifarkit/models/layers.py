"""The layers GradCAM can look at: every convolution and conv block of a model by its dotted name (as
`model.get_submodule` takes it), with the size of the map it outputs, and the default choice.

torch only and no other cifarkit module: `cifarkit summary` lists these names, and the exported app bundle
carries this code (bundle.py copies it).
"""

from __future__ import annotations

import torch
from torch import nn

MIN_DEFAULT_SIZE = 8  # the default layer's map is at least 8x8 ...
MIN_USEFUL_SIZE = 5  # ... and under 5x5 a heat map is too coarse to say where the model looked


def feature_layers(model: nn.Module, image_size: int = 32) -> dict[str, tuple[int, int, int]]:
    """{dotted name: (channels, height, width) of its output} for every Conv2d and every module holding one
    whose output is a map, in the order a forward pass finishes them (one pass on a blank image, in eval
    mode: BatchNorm statistics are untouched, and the model's mode is restored)."""
    holders = {
        name: module
        for name, module in model.named_modules()
        if name and any(isinstance(m, nn.Conv2d) for m in module.modules())
    }
    shapes: dict[str, tuple[int, int, int]] = {}

    def record(name: str):
        def hook(_module, _inputs, output):
            if isinstance(output, torch.Tensor) and output.dim() == 4:
                shapes[name] = tuple(int(s) for s in output.shape[1:])

        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in holders.items()]
    training = model.training
    try:
        model.eval()
        parameter = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=parameter.device, dtype=parameter.dtype))
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return shapes


def default_layer(model: nn.Module, layers: dict[str, tuple[int, int, int]]) -> str:
    """The last conv block (a module with a Conv2d among its direct children: conv [-> pool] -> norm ->
    activation) whose output is at least 8x8; Conv2d layers themselves when the model has no such block.

    Block outputs, not raw convolutions: the S10 ResNet's layer3 convolves 8x8 maps but outputs 4x4 ones,
    so its last block of at least 8x8 is layer2 (256 x 8 x 8)."""
    blocks = [
        name for name in layers if any(isinstance(child, nn.Conv2d) for child in model.get_submodule(name).children())
    ]
    candidates = blocks or [name for name in layers if isinstance(model.get_submodule(name), nn.Conv2d)]
    if not candidates:
        raise ValueError("the model has no convolution for GradCAM to look at")
    large = [name for name in candidates if min(layers[name][1:]) >= MIN_DEFAULT_SIZE]
    return large[-1] if large else candidates[0]


def layer_problem(name: str, layers: dict[str, tuple[int, int, int]]) -> tuple[bool, str | None]:
    """(valid, message) for a layer a user named: unknown names are invalid (the message lists the valid
    ones); maps under 5x5 are valid with a warning; else (True, None)."""
    if name not in layers:
        return False, (
            f"no layer {name!r} to explain; choose one of: "
            + ", ".join(f"{n} ({h}x{w})" for n, (_, h, w) in layers.items())
        )
    _, h, w = layers[name]
    if min(h, w) < MIN_USEFUL_SIZE:
        return True, (
            f"layer {name} outputs {h}x{w} maps: under {MIN_USEFUL_SIZE}x{MIN_USEFUL_SIZE} a GradCAM "
            "heat map is too coarse to show where the model looked; prefer a layer with a larger map"
        )
    return True, None


def describe_layers(model: nn.Module, image_size: int = 32) -> str:
    """The table `cifarkit summary` prints: each layer's dotted name, type and output size, the default marked."""
    layers = feature_layers(model, image_size)
    default = default_layer(model, layers)
    lines = [f"GradCAM layers (cifarkit gradcam --layer NAME), in forward order; default {default}:"]
    for name, (c, h, w) in layers.items():
        note = (
            "  <- default" if name == default else ("  (under 5x5: too coarse)" if min(h, w) < MIN_USEFUL_SIZE else "")
        )
        kind = type(model.get_submodule(name)).__name__
        lines.append(f"  {name:<28}{kind:<12}{c:>5} x {h:>2} x {w:<2}{note}")
    return "\n".join(lines)
