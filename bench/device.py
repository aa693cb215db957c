"""The one device resolver: ``auto`` (or unset) means CUDA where there is a GPU, else the CPU."""
from __future__ import annotations

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
