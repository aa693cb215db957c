"""The one device resolver: ``auto`` (or unset) means CUDA where there is a GPU, else the CPU."""
from __future__ import annotations

import os
from contextlib import contextmanager


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


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16): without it, bf16 on
    the CPU is emulated and slower than float32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"avx512_bf16", "amx_bf16"} & flags)
    except OSError:
        pass
    return False


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
