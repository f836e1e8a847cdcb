"""Where and how a run computes: device, autocast precision, threads, the CPU allocator, machine info."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from ..config.train_config import TrainConfig
from ..config.validation import DEVICES
from ..errors import UserError
from ..version import __version__
from . import distributed


def resolve_device(name: str) -> torch.device:
    """The torch.device for a --device value; under torchrun, "auto"/"cuda" mean this rank's own GPU."""
    if name in ("auto", "cuda") and torch.cuda.is_available() and distributed.current().enabled:
        return torch.device("cuda", distributed.current().local_rank)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not (name in ("cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", name)):
        raise UserError(f"--device {name!r}: unknown device; choose one of {', '.join(DEVICES)} (or cuda:N)")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(
                f"--device {name}: no CUDA GPU is visible to PyTorch (torch {torch.__version__}, "
                f"CUDA build: {torch.version.cuda or 'no'}); use --device cpu or auto"
            )
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) visible")
        return device
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("--device mps: Apple's MPS backend is not available here; use --device cpu or auto")
    return torch.device(name)


def cpu_info() -> tuple[str | None, set[str]]:
    """The first processor's model name and flags in /proc/cpuinfo (None and empty where there is no such file)."""
    model, flags = None, set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model is None:
                model = line.split(":", 1)[1].strip()
            elif line.startswith(("flags", "Features")) and not flags:  # x86, ARM
                flags = set(line.split(":", 1)[1].split())
    return model, flags


def onednn_has_bf16() -> bool:
    """Whether oneDNN will run bf16 kernels here: any AVX512 (natively or emulated) or ARM BF16, and not
    held below that by ONEDNN_MAX_CPU_ISA."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private probe; absent -> the CPU's own flags (x86, ARM)
        return bool({"avx512_bf16", "amx_bf16", "bf16"} & cpu_info()[1])


def x86_has_bf16_units() -> bool:
    """Whether an x86 CPU computes bf16 in hardware (AVX512-BF16 or AMX), not only with AVX512's fp32 units."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(probes):
        return any(probe() for probe in probes)
    return bool({"avx512_bf16", "amx_bf16"} & cpu_info()[1])


def cpu_has_fast_bf16() -> bool:
    """Whether bf16 runs natively here (AVX512-BF16, AMX or ARM BF16).

    Without it bf16 is emulated and far slower than fp32 (measured 20x slower on an AVX2-only EPYC). oneDNN's
    own probe says yes on any AVX512 CPU (a Skylake Xeon emulates bf16 with fp32 units), so on x86 the CPU's
    bf16 units are asked for too.
    """
    if not onednn_has_bf16():
        return False
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        return x86_has_bf16_units()
    return True


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The autocast dtype (float32 = no autocast).

    auto: on CPU, bf16 where the CPU computes it natively, else fp32; on CUDA, bf16 where supported,
    else fp16 (with loss scaling).
    """
    if precision == "fp32":
        return torch.float32
    if precision == "fp16":
        if device.type == "cpu":
            raise UserError("--precision fp16: not supported for training on the CPU; use bf16 or fp32")
        return torch.float16
    if precision == "bf16":
        if device.type == "cpu" and not cpu_has_fast_bf16():
            warnings.warn(
                "--precision bf16: this CPU has no native bf16 (AVX512-BF16/AMX), so it is emulated and "
                "typically much slower than fp32; --precision auto picks fp32 here",
                stacklevel=2,
            )
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


def inference_precision(precision: str, device: torch.device) -> torch.dtype:
    """The autocast dtype in which a trained model predicts on `device`: the run's own `precision` where this
    device computes it well, else what `auto` picks here. A model trained in fp16 on a GPU still predicts on a
    CPU, and one trained in bf16 on a CPU without bf16 units: nobody asked for their precision on this device."""
    if device.type == "cpu" and (precision == "fp16" or precision == "bf16" and not cpu_has_fast_bf16()):
        precision = "auto"
    return resolve_precision(precision, device)


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse rather than hand it back to the kernel.

    A CPU training step allocates and frees the same large activation buffers every time. By default
    glibc serves those with fresh mmap()s and unmaps them on free, so the kernel zero-fills every
    page again on first touch, each step: 10-35% of the fast net's step on a 2-core EPYC. Raising the
    mmap and trim thresholds keeps the pages mapped (the process holds on to its peak memory instead).
    Returns whether it applied: glibc only, and not with CIFARKIT_MALLOC=default in the environment.
    """
    if os.environ.get("CIFARKIT_MALLOC", "tuned") == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt() parameters, from glibc's malloc.h
        return bool(libc.mallopt(m_trim_threshold, 2**31 - 1) and libc.mallopt(m_mmap_threshold, 2**31 - 1))
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        return False


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def setup_runtime(config: TrainConfig) -> tuple[torch.device, torch.dtype]:
    """Apply the thread count (and, on CPU, the allocator setting); resolve the device and autocast dtype."""
    if config.threads:
        threads = min(config.threads, available_cpus())
        if threads < config.threads:  # more threads than CPUs only makes them wait for each other (500x measured)
            warnings.warn(
                f"--threads {config.threads}: this process may use {threads} CPU(s); using {threads}", stacklevel=2
            )
        torch.set_num_threads(threads)
    device = resolve_device(config.device)
    if device.type == "cpu":
        keep_freed_memory()
    return device, resolve_precision(config.precision, device)


def restored_on_exit() -> contextlib.ExitStack:
    """Give back torch's thread count and random state as the caller had them once a run (train, find_lr) is
    over: the run sets both (--threads, --seed), and a notebook's own work goes on after it."""
    kept = contextlib.ExitStack()
    kept.callback(torch.set_num_threads, torch.get_num_threads())
    # the CPU generator, and the current GPU's where the caller has used CUDA (forking others would start them)
    kept.enter_context(
        torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_initialized() else [])
    )
    return kept


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# The widest vector/matrix extension that sets a CPU's training speed, best first: /proc/cpuinfo flag -> name.
CPU_KINDS = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512-BF16", "avx512f": "AVX512", "avx2": "AVX2"}


# Environment variables that cap the instruction set of torch's CPU kernels: ATen's, oneDNN's (convolutions), MKL's.
KERNEL_LIMITS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def machine_info(device: torch.device) -> dict[str, Any]:
    """The machine beside every number: CPU model and kind (e.g. AVX512-BF16), threads, versions, device."""
    model, flags = cpu_info()
    cpu = model or platform.processor() or platform.machine()
    kind = next((name for flag, name in CPU_KINDS.items() if flag in flags), "unknown")
    info = {
        "cpu": cpu,
        "cpu_kind": kind,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cifarkit": __version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    # kernels held below what the CPU has (e.g. to time an AVX2-only machine's code paths on a newer one)
    limits = {name: os.environ[name] for name in KERNEL_LIMITS if os.environ.get(name)}
    if limits:
        info["kernel_limits"] = limits
    return info


def describe_machine(info: dict[str, Any]) -> str:
    """machine_info as the one line that the benchmarks print beside their numbers."""
    limits = info.get("kernel_limits", {})
    return (
        f"{info['cpu']} ({info['cpu_kind']}), {info['cpu_count']} CPUs, {info['torch_threads']} torch threads, "
        f"torch {info['torch']}, device {info['device']}"
        + (f", {info['gpu']}" if "gpu" in info else "")
        + (f", kernels limited by {' '.join(f'{k}={v}' for k, v in limits.items())}" if limits else "")
    )
