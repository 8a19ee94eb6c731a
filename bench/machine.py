"""Which machine trained a unit: processor model, device, threads and library versions, in one line.

Floating-point results are bit for bit reproducible only on the same processor kind and software: oneDNN
(CPU) and cuDNN (GPU) choose kernels by the instruction sets they find (AVX-512, AMX, …), and a different
rounding in the first step grows over an epoch. A unit therefore records this line in its ``DONE.json``
(:mod:`bench.unit`), and a report lists the lines of its units (:mod:`bench.report`), so that two reports
whose shared arms differ can be told apart from a code change.
"""

from __future__ import annotations

import platform
from pathlib import Path

__all__ = ["cpu_model", "describe_hardware", "processor"]


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux, else what :mod:`platform` knows)."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or "unknown processor"  # the architecture follows in describe_hardware


def processor(device: str = "cpu") -> str:
    """What computes on ``device``: the GPU's name on CUDA, else the CPU's model name. Efficiency and lever
    tables name it, since the same spec runs at different speeds on different processors."""
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return cpu_model()


def describe_hardware(device: str = "cpu") -> str:
    """E.g. ``AMD EPYC (x86_64), cpu, 1 thread, torch 2.13.0+cpu, Python 3.11.7``; on CUDA the GPU's name
    comes first. Imports torch (a training process has it already)."""
    import torch

    parts = [f"{cpu_model()} ({platform.machine()})"]
    if str(device).startswith("cuda"):
        parts.insert(0, processor(device))
    threads = torch.get_num_threads()
    parts += [str(device), f"{threads} thread{'s' if threads != 1 else ''}", f"torch {torch.__version__}",
              f"Python {platform.python_version()}"]
    return ", ".join(parts)
