"""Device, precision and allocator choices (runtime.py)."""

import platform
from pathlib import Path

import pytest
import torch

from cifarkit.errors import UserError


def test_auto_precision_on_cpu_follows_native_bf16_support(monkeypatch):
    from cifarkit.runtime import device as runtime

    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: False)
    assert runtime.resolve_precision("auto", cpu) == torch.float32
    with pytest.warns(UserWarning, match="no native bf16"):
        assert runtime.resolve_precision("bf16", cpu) == torch.bfloat16
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: True)
    assert runtime.resolve_precision("auto", cpu) == torch.bfloat16
    with pytest.raises(UserError, match="fp16: not supported for training on the CPU"):
        runtime.resolve_precision("fp16", cpu)


def test_a_trained_model_predicts_in_its_runs_precision_where_this_device_computes_it_else_autos(monkeypatch):
    import warnings

    from cifarkit.runtime import device as runtime

    cpu = torch.device("cpu")
    for native in (False, True):
        monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda native=native: native)
        auto = torch.bfloat16 if native else torch.float32
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no warning about a --precision the user cannot set here
            assert runtime.inference_precision("fp16", cpu) == auto  # a GPU's fp16 run, on a CPU
            assert runtime.inference_precision("bf16", cpu) == auto
            assert runtime.inference_precision("fp32", cpu) == torch.float32
            assert runtime.inference_precision("auto", cpu) == auto


def test_native_bf16_needs_the_cpus_bf16_units_not_only_onednns_avx512(monkeypatch):
    from cifarkit.runtime import device as runtime

    monkeypatch.setattr(runtime.platform, "machine", lambda: "x86_64")
    for onednn, units, native in [(True, True, True), (True, False, False), (False, True, False)]:
        # (True, False): a Skylake-era AVX512 Xeon, where oneDNN emulates bf16; (False, True): kernels held at AVX2
        monkeypatch.setattr(runtime, "onednn_has_bf16", lambda onednn=onednn: onednn)
        monkeypatch.setattr(runtime, "x86_has_bf16_units", lambda units=units: units)
        assert runtime.cpu_has_fast_bf16() is native
        assert runtime.resolve_precision("auto", torch.device("cpu")) == (torch.bfloat16 if native else torch.float32)


@pytest.mark.skipif(platform.machine() != "x86_64" or not Path("/proc/cpuinfo").exists(), reason="x86 Linux only")
def test_auto_precision_on_this_cpu_is_bf16_exactly_where_its_flags_say_native_bf16():
    from cifarkit.runtime import device as runtime

    units = bool({"avx512_bf16", "amx_bf16"} & runtime.cpu_info()[1])
    native = units and runtime.onednn_has_bf16()
    assert runtime.x86_has_bf16_units() is units
    assert runtime.resolve_precision("auto", torch.device("cpu")) == (torch.bfloat16 if native else torch.float32)


def test_the_allocator_setting_applies_on_glibc_and_can_be_declined(monkeypatch):
    from cifarkit.runtime.device import keep_freed_memory

    monkeypatch.setenv("CIFARKIT_MALLOC", "default")
    assert keep_freed_memory() is False
    monkeypatch.delenv("CIFARKIT_MALLOC")
    expected = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is expected


def test_the_machine_line_says_when_kernels_are_held_below_the_cpu(monkeypatch):
    from cifarkit.runtime.device import KERNEL_LIMITS, describe_machine, machine_info

    for name in KERNEL_LIMITS:
        monkeypatch.delenv(name, raising=False)
    plain = machine_info(torch.device("cpu"))
    assert "kernel_limits" not in plain and "limited" not in describe_machine(plain)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    limited = machine_info(torch.device("cpu"))
    assert limited["kernel_limits"] == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    line = describe_machine(limited)
    assert line.startswith(f"{plain['cpu']} ({plain['cpu_kind']})")
    assert line.endswith("kernels limited by ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2")
