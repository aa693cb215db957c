"""The one device resolver: ``auto`` (or unset) means CUDA where there is a GPU, else the CPU."""
from __future__ import annotations

import os
from contextlib import contextmanager
from functools import lru_cache


def resolve_device(requested: str | None, fallback: str | None = None) -> str:
    """``requested`` as a concrete torch device name; ``None`` takes ``fallback`` (a section's
    device falls back to the run's ``device``), and ``auto`` picks cuda when available, else cpu."""
    device = requested if requested is not None else fallback
    if device in (None, "auto"):
        try:
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:  # pragma: no cover - torch is a hard dependency
            return "cpu"
    return str(device)


@contextmanager
def torch_state():
    """Restore torch's process-wide settings that a run may change (thread count, TF32 flags) when
    the block ends, so a run inside a longer process (tests, a sweep worker) leaves nothing behind."""
    import torch

    threads = torch.get_num_threads()
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def parse_cpuinfo(text: str) -> dict[str, str]:
    """The first processor's fields of a ``/proc/cpuinfo`` text."""
    info: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, str]:
    """This machine's first processor in ``/proc/cpuinfo`` (``model name``, ``cpu family``,
    ``flags``, ...); empty where the file is missing."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return parse_cpuinfo(handle.read())
    except OSError:
        return {}


# the instruction sets that decide how fast this harness trains on a CPU (run records list them)
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def speed_flags(info: dict[str, str]) -> list[str]:
    """The :data:`SPEED_FLAGS` among a processor's ``flags`` (a :func:`parse_cpuinfo` result)."""
    flags = set(info.get("flags", "").split())
    return [flag for flag in SPEED_FLAGS if flag in flags]


def cpu_speed_flags() -> list[str]:
    return speed_flags(cpu_info())


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16): without it, bf16 on
    the CPU is emulated and slower than float32."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_speed_flags()))


CORE_SHARE_ENV = "BENCH_CORE_SHARE"  # the cores a scheduler gave this process (set by a sweep trial)


def available_cores() -> int:
    """The CPU cores this process may run on: its affinity mask, capped by the share a scheduler gave
    it (``$BENCH_CORE_SHARE``; Ray reserves CPUs for a trial but does not pin the process)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = max(1, os.cpu_count() or 1)
    share = os.environ.get(CORE_SHARE_ENV, "")
    return min(cores, max(1, int(float(share)))) if share.strip() else cores


def resolve_threads(requested) -> int | None:
    """``train.num_threads``: None = torch's default, ``auto`` = the cores this process may use."""
    if requested is None:
        return None
    if requested == "auto":
        return available_cores()
    return int(requested)
