"""Training throughput of the S10 ResNet: cifarkit's pipeline vs a notebook-style loop, in one run.

    python benchmarks/throughput.py [--steps 5] [--batch-size 512] [--device auto] [--workers 0] [--model s10]
        [--compile]

The notebook-style side is written the way the assignment's public notebooks do it: a Dataset that
augments one image at a time (pad+crop, flip, cutout, normalise, in numpy), a DataLoader, and an fp32
NCHW eager training step. The cifarkit side is the real Trainer.train_epoch: the dataset as uint8 on
the device, batched augmentation, autocast where the hardware has a fast low precision, channels_last,
and on CPU malloc kept from returning freed memory (runtime.keep_freed_memory); rows without some of
these show what each brings. Every row runs in a fresh process (so no row inherits another's warm
allocator), trains the same model with Adam on the same number of random images (speed does not
depend on content). Prints images/s of each and the ratio to the notebook-style loop; with --compile, a
last row with the model torch.compile'd (inductor), its compiling first step timed apart.

Each row also says how much of the device's arithmetic it uses: the model's FLOPs per training image
(forward + backward, as torch.utils.flop_counter counts convolutions and matrix products) times its
images/s, against what a large convolution reaches in the row's precision on the same device in the same
run (the measured peak: the VM hides the CPU's model and clock, so no datasheet number applies).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cifarkit.config.train_config import TrainConfig
from cifarkit.data.dataset import MEAN, STD, Dataset
from cifarkit.models.nets import build_model
from cifarkit.runtime.device import describe_machine, machine_info, resolve_device, resolve_precision
from cifarkit.training.trainer import Trainer


class PerImageDataset(torch.utils.data.Dataset):
    """The notebooks' way: each __getitem__ augments one HWC image in numpy."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels
        self.mean, self.std = np.array(MEAN, dtype=np.float32), np.array(STD, dtype=np.float32)
        self.rng = np.random.default_rng(0)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = self.images[i].transpose(1, 2, 0)  # HWC like PIL/albumentations
        img = np.pad(img, ((4, 4), (4, 4), (0, 0)), mode="reflect")
        y, x = self.rng.integers(0, 9, size=2)
        img = img[y : y + 32, x : x + 32]
        if self.rng.random() < 0.5:
            img = img[:, ::-1]
        img = (img.astype(np.float32) / 255 - self.mean) / self.std
        if self.rng.random() < 0.5:
            cy, cx = self.rng.integers(0, 25, size=2)
            img[cy : cy + 8, cx : cx + 8] = 0
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))), int(self.labels[i])


def notebook_style(
    images: np.ndarray, labels: np.ndarray, batch_size: int, device: torch.device, workers: int, model_name: str
) -> float:
    torch.manual_seed(0)
    model = build_model(model_name).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loader = torch.utils.data.DataLoader(
        PerImageDataset(images, labels), batch_size=batch_size, shuffle=True, num_workers=workers
    )

    def step(x, y):
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()  # the notebooks read the loss every batch for their tqdm bar

    warm_x, warm_y = next(iter(loader))
    step(warm_x, warm_y)
    started, seen = time.perf_counter(), 0
    for x, y in loader:
        step(x, y)
        seen += len(y)
    return seen / (time.perf_counter() - started)


def cifarkit_pipeline(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    device: str,
    precision: str,
    channels_last: bool,
    model_name: str,
    compiled: bool = False,
) -> tuple[float, float]:
    """(images/s of the timed epoch, seconds of the untimed warm-up step, which compiles where `compiled`)."""
    data = Dataset(images, labels, images[:batch_size], labels[:batch_size])
    # two epochs of schedule: the warm-up step takes one step of the first
    config = TrainConfig(
        model=model_name,
        batch_size=batch_size,
        epochs=2,
        device=device,
        precision=precision,
        channels_last=channels_last,
        compile=compiled,
    )  # the first step compiles, where compiled
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, run_dir, data=data, progress=False)
        started = time.perf_counter()  # a batch as the epoch makes them (strides included: no recompiling later)
        trainer.train_step(*trainer.global_batch(trainer.images_of_epoch(0), 0, 0))
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        warm_up = time.perf_counter() - started
        started = time.perf_counter()
        trainer.train_epoch({"signal": 0})
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        return len(labels) / (time.perf_counter() - started), warm_up


def training_flops_per_image(model: nn.Module, image_size: int = 32) -> float:
    """FLOPs of one training step per image: forward and backward of every convolution and matrix product."""
    images = torch.randn(2, 3, image_size, image_size)
    with FlopCounterMode(display=False) as counter:
        model.train()(images).float().sum().backward()
    return counter.get_total_flops() / len(images)


def conv_tflops(device: torch.device, dtype: torch.dtype, seconds: float = 1.0) -> float:
    """TFLOP/s of a large 3x3 convolution (256 images of 512 channels at 8x8, channels_last) in dtype, repeated for
    about `seconds` after one warm-up: the most this device does through torch's convolutions, the reference for
    a training step's share. (Not a matrix product: on AMD CPUs torch's fp32 matmul goes to MKL, which runs
    at under half the speed of oneDNN's fp32 convolutions there.)"""
    images = torch.randn(256, 512, 8, 8, device=device, dtype=dtype).to(memory_format=torch.channels_last)
    weight = torch.randn(512, 512, 3, 3, device=device, dtype=dtype).to(memory_format=torch.channels_last)

    def convolve(times: int) -> None:  # one wait at the end, so a GPU is never idle between them
        for _ in range(times):
            F.conv2d(images, weight, padding=1)
        if device.type == "cuda":
            torch.cuda.synchronize()

    convolve(1)
    started, done = time.perf_counter(), 0
    while done == 0 or time.perf_counter() - started < seconds:
        convolve(10)
        done += 10
    return 2 * images.numel() * 512 * 9 * done / (time.perf_counter() - started) / 1e12


# row key -> (label, precision, channels_last, malloc); the notebook-style row has no cifarkit settings
ROWS = {
    "notebook": ("notebook-style: DataLoader + per-image numpy aug, fp32, NCHW", None, None, "default"),
    "nchw": ("cifarkit: on-device batch aug, fp32, NCHW, default malloc", "fp32", False, "default"),
    "channels-last": ("cifarkit: on-device batch aug, fp32, channels_last, default malloc", "fp32", True, "default"),
    "tuned": ("cifarkit: on-device batch aug, fp32, channels_last, kept malloc", "fp32", True, "tuned"),
    "auto": ("cifarkit: on-device batch aug, auto precision, channels_last, kept malloc", "auto", True, "tuned"),
    "compiled": ("cifarkit: as the row above, the model torch.compile'd (--compile)", "auto", True, "tuned"),
}


def measure(key: str, args: argparse.Namespace) -> tuple[float, float]:
    """(images/s, seconds of the untimed first step) of one row, in this process."""
    n = args.steps * args.batch_size
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n)
    if key == "notebook":
        return notebook_style(
            images, labels, args.batch_size, resolve_device(args.device), args.workers, args.model
        ), 0.0
    _, precision, channels_last, _ = ROWS[key]
    return cifarkit_pipeline(
        torch.from_numpy(images),
        torch.from_numpy(labels),
        args.batch_size,
        args.device,
        precision,
        channels_last,
        args.model,
        compiled=key == "compiled",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row (after one warm-up step)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of the notebook-style side")
    parser.add_argument("--model", default="s10")
    parser.add_argument("--compile", action="store_true", help="add a row with the model torch.compile'd")
    parser.add_argument("--row", choices=ROWS, help=argparse.SUPPRESS)  # internal: measure one row, print JSON
    args = parser.parse_args()
    if args.row:
        speed, first_step = measure(args.row, args)
        print(json.dumps({"images_per_s": speed, "first_step_s": first_step}))
        return

    device = resolve_device(args.device)
    info = machine_info(device)
    print(f"machine: {describe_machine(info)}")
    print(f"model {args.model}, batch {args.batch_size}, {args.steps} timed steps per row, one process per row")
    flops = training_flops_per_image(build_model(args.model))
    low = resolve_precision("auto", device)
    peaks = {dtype: conv_tflops(device, dtype) for dtype in dict.fromkeys([torch.float32, low])}
    print(
        f"{flops / 1e9:.3f} GFLOP per training image (forward + backward, torch.utils.flop_counter); "
        "peak = a 512-channel 3x3 convolution: "
        + ", ".join(f"{str(dtype).removeprefix('torch.')} {tflops:.3f} TFLOP/s" for dtype, tflops in peaks.items())
        + "\n"
    )
    keys = ["notebook", "nchw", "channels-last", "tuned"]
    if device.type != "cpu":  # the allocator setting is a CPU matter
        keys = ["notebook", "nchw", "channels-last"]
    if resolve_precision("auto", device) != torch.float32:  # only where the hardware has a fast low precision
        keys.append("auto")
    if args.compile:
        keys.append("compiled")
    base = None
    for key in keys:
        env = {**os.environ, "CIFARKIT_MALLOC": ROWS[key][3]}
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--row",
                key,
                "--steps",
                str(args.steps),
                "--batch-size",
                str(args.batch_size),
                "--device",
                args.device,
                "--workers",
                str(args.workers),
                "--model",
                args.model,
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            sys.exit(f"row {key!r} failed:\n{done.stderr}")
        measured = json.loads(done.stdout.strip().splitlines()[-1])
        speed = measured["images_per_s"]
        base = base or speed
        dtype = low if ROWS[key][1] == "auto" else torch.float32
        tflops = speed * flops / 1e12
        compiling = f"  (first step {measured['first_step_s']:.1f}s: compiling)" if key == "compiled" else ""
        print(
            f"{ROWS[key][0]:<74} {speed:8.1f} img/s  {speed / base:5.2f}x  {tflops:.3f} TFLOP/s = "
            f"{tflops / peaks[dtype]:4.0%} of {str(dtype).removeprefix('torch.')} peak{compiling}",
            flush=True,
        )


if __name__ == "__main__":
    main()
