"""How fast each convolution of a model runs on its own: time and GFLOP/s of a forward + backward pass.

    python benchmarks/conv_layers.py [--model fast] [--batch-size 1000] [--precision auto] [--repeats 5]

Finds every Conv2d of the model and the input shape it sees in a forward pass of CIFAR-sized images,
then times each one alone (channels_last, autocast as training runs it): forward, then backward with the
input's gradient (as inside the net) and without it (as for the first conv behind a frozen stem,
`--stem-bias-epochs`). GFLOP/s count 2 x multiply-adds of the forward pass and of each gradient computed
(the weight's unless frozen, as the fast net's stem is; the input's where asked). Shows where a step's
convolution time goes per FLOP.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from cifarkit.models.nets import build_model
from cifarkit.runtime.device import autocast, describe_machine, machine_info, resolve_precision


def conv_shapes(model: nn.Module, image_size: int = 32) -> list[tuple[str, nn.Conv2d, torch.Size, torch.Size]]:
    """(name, conv, input shape, output shape) of one image for every Conv2d, in the order a forward pass meets them."""
    seen: list[tuple[str, nn.Conv2d, torch.Size, torch.Size]] = []
    hooks = [
        module.register_forward_hook(
            lambda m, inputs, out, name=name: seen.append((name, m, inputs[0].shape[1:], out.shape[1:]))
        )
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d)
    ]
    with torch.no_grad():
        model.eval()(torch.zeros(2, 3, image_size, image_size))
    for hook in hooks:
        hook.remove()
    return seen


def seconds_per_pass(conv: nn.Conv2d, x: torch.Tensor, dtype: torch.dtype, repeats: int) -> float:
    def one_pass():
        with autocast(x.device, dtype):
            out = conv(x)
        out.backward(torch.ones_like(out))

    for _ in range(2):  # warm-up: oneDNN picks and caches its kernels
        one_pass()
    started = time.perf_counter()
    for _ in range(repeats):
        one_pass()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="fast")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device("cpu")
    dtype = resolve_precision(args.precision, device)
    model = build_model(args.model)
    print(
        f"machine: {describe_machine(machine_info(device))}; model {args.model}, batch {args.batch_size}, "
        f"{str(dtype).replace('torch.', '')}, forward + backward of each conv alone"
    )
    print(f"  {'conv':<14} {'in -> out @ map':<22} {'ms':>8} {'GFLOP/s':>8}   {'no input grad: ms':>18} {'GFLOP/s':>8}")
    total_seconds = total_flops = 0.0  # of the passes with the input's gradient, as inside the net
    for name, conv, (c_in, height, width), (_, out_h, out_w) in conv_shapes(model):
        conv = conv.to(memory_format=torch.channels_last)
        shape = (args.batch_size, c_in, height, width)
        forward_flops = 2 * args.batch_size * out_h * out_w * conv.weight[0].numel() * conv.out_channels
        row = []
        for input_grad in (True, False):
            x = torch.randn(shape).to(memory_format=torch.channels_last).requires_grad_(input_grad)
            seconds = seconds_per_pass(conv, x, dtype, args.repeats)
            flops = forward_flops * (1 + conv.weight.requires_grad + input_grad)
            row += [seconds * 1e3, flops / seconds / 1e9]
            if input_grad:
                total_seconds, total_flops = total_seconds + seconds, total_flops + flops
        print(
            f"  {name:<14} {f'{c_in} -> {conv.out_channels} @ {height}x{width}':<22} {row[0]:8.1f} {row[1]:8.0f}   "
            f"{row[2]:18.1f} {row[3]:8.0f}"
        )
    print(
        f"  all convs: {total_seconds * 1e3:.1f} ms a batch, {total_flops / total_seconds / 1e9:.0f} GFLOP/s, "
        f"{args.batch_size / total_seconds:.0f} img/s if the step were convolutions only"
    )


if __name__ == "__main__":
    main()
