"""Where a training step's time goes, by kind of operator: the torch profiler over cifarkit's real loop.

    python benchmarks/profile_step.py [--preset s10] [--steps 4] [--batch-size B] [--top 12]

Runs Trainer.train_epoch (batch building and augmentation, forward, backward, optimiser, EMA/Lookahead
as the preset has them) on random images of CIFAR's shape under torch.profiler, after one untimed warm-up
epoch, and prints the self time of every operator summed into kinds (convolution, batch norm, pooling,
activation, casts and copies, optimiser, augmentation and batch building, other), then the top operators.
Random pixels: speed does not depend on content.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from cifarkit.config.train_config import preset_config
from cifarkit.data.dataset import Dataset
from cifarkit.runtime.device import describe_machine, machine_info
from cifarkit.training.trainer import Trainer

# Operator name fragments -> kind, first match wins (aten names as the CPU profiler shows them).
KINDS = [
    ("convolution", ("convolution", "conv2d", "mkldnn_conv")),
    ("batch norm", ("batch_norm",)),
    ("pooling", ("pool",)),
    ("activation", ("relu", "gelu", "silu", "threshold", "clamp_min")),
    ("matmul", ("aten::mm", "aten::addmm", "aten::linear", "aten::bmm", "aten::matmul")),
    ("optimiser", ("optimizer", "_fused_", "_foreach_", "sgd", "adam", "lerp")),
    ("loss", ("cross_entropy", "log_softmax", "nll_loss")),
    ("casts and copies", ("_to_copy", "aten::copy_", "aten::to", "contiguous", "clone")),
    ("zeroing and allocation", ("fill_", "zero_", "aten::empty", "resize_")),
]


BATCH_LABEL = "augmentation and batch building"


def kind_of(name: str) -> str:
    lowered = name.lower()
    return next((kind for kind, parts in KINDS if any(p.lower() in lowered for p in parts)), "other")


def enclosing_kind(event) -> str | None:  # a torch.autograd.profiler_util.FunctionEvent
    """The kind of the range an operator runs inside: batch building (our label) or an optimiser step."""
    while event is not None:
        if event.name == BATCH_LABEL:
            return BATCH_LABEL
        if event.name.startswith("Optimizer."):
            return "optimiser"
        event = event.cpu_parent
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="s10")
    parser.add_argument("--steps", type=int, default=4, help="profiled steps (after a warm-up epoch of as many)")
    parser.add_argument("--batch-size", type=int, help="default: the preset's")
    parser.add_argument("--model", help="default: the preset's")
    parser.add_argument("--precision", help="default: the preset's (auto: bf16 where the CPU has it)")
    parser.add_argument("--top", type=int, default=12, help="operators listed after the kinds")
    args = parser.parse_args()
    overrides = {
        name: value for name in ("batch_size", "model", "precision") if (value := getattr(args, name)) is not None
    }
    config = preset_config(args.preset, epochs=2, eval_every=0, **overrides)
    n = args.steps * config.batch_size
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    data = Dataset(images, labels, images[:64], labels[:64])
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, run_dir, data=data, progress=False)
        build = trainer.global_batch

        def labelled_batch(order, epoch, step):  # batch building and augmentation, under one label
            with record_function(BATCH_LABEL):
                return build(order, epoch, step)

        trainer.global_batch = labelled_batch
        trainer.train_epoch({"signal": 0})  # warm-up: allocator, oneDNN primitive caches
        trainer.state.epoch, trainer.state.step_in_epoch = 1, 0
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            trainer.train_epoch({"signal": 0})
    by_kind: dict[str, float] = defaultdict(float)
    for e in prof.events():  # every call; an operator inside a labelled range counts for the range's kind
        by_kind[enclosing_kind(e) or kind_of(e.name)] += e.self_cpu_time_total
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    info = machine_info(trainer.device)
    print(
        f"machine: {describe_machine(info)}; preset {args.preset}, model {config.model}, batch {config.batch_size}, "
        f"{str(trainer.dtype).replace('torch.', '')}, {args.steps} steps: {n / (total / 1e6):.0f} img/s of "
        "profiled self time"
    )
    for kind, us in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<34} {us / 1e3 / args.steps:9.1f} ms/step  {100 * us / total:5.1f} %")
    print("top operators (self time):")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]:
        print(
            f"  {e.key[:60]:<62} {e.self_cpu_time_total / 1e3 / args.steps:9.1f} ms/step  "
            f"{100 * e.self_cpu_time_total / total:5.1f} %  [{kind_of(e.key)}]"
        )


if __name__ == "__main__":
    main()
