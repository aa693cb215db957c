"""Facts about how a number was obtained: git commit, package versions, hardware."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

from bench.device import cpu_info, cpu_speed_flags
from bench.identity import package_versions_of

PACKAGES = (
    "genrec-bench", "torch", "numpy", "pandas", "scipy", "recbole", "ray", "optuna",
    "sentence-transformers", "transformers", "k-means-constrained", "tabulate",
)


# what decides the numbers: the packages' code and the install metadata (configs live inside bench/)
CODE_PATHS = ("bench", "tokenizers_zoo", "recommenders", "baselines", "sweeps", "pyproject.toml")


def git_commit(repo: Path | None = None) -> dict:
    """The commit of the code that ran and whether the code differed from it: ``dirty`` counts
    modified tracked files and untracked files (``*.pyc`` and ignored files aside) under
    ``CODE_PATHS``; changes elsewhere (README, results) do not make a run's code dirty."""
    repo = repo or Path(__file__).resolve().parent.parent
    unknown = {"commit": None, "dirty": None, "modified_files": None, "untracked_files": None}
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=all", "--", *CODE_PATHS],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return unknown
    if commit.returncode != 0 or status.returncode != 0:
        return unknown
    lines = [line for line in status.stdout.splitlines() if line.strip()]
    untracked = sum(1 for line in lines if line.startswith("??"))
    modified = len(lines) - untracked
    return {"commit": commit.stdout.strip(), "dirty": bool(lines), "modified_files": modified,
            "untracked_files": untracked}


def package_versions() -> dict:
    return {"python": sys.version.split()[0], **package_versions_of(PACKAGES)}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    return cpu_info().get("model name") or platform.processor() or platform.machine()


def cpu_generation() -> str | None:
    """Family, model and stepping from ``/proc/cpuinfo``: a model name like "AMD EPYC" can name
    CPUs of different generations (one with AVX-512 BF16, one without), which train at different speeds."""
    info = cpu_info()
    parts = [f"{name} {info[key]}" for key, name in (("cpu family", "family"), ("model", "model"), ("stepping", "stepping"))
             if info.get(key)]
    return ", ".join(parts) or None


def hardware() -> dict:
    info = {
        "cpu_model": cpu_model(),
        "cpu_generation": cpu_generation(),
        "cpu_flags": cpu_speed_flags(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "hostname": platform.node(),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.is_available()
        if info["cuda"]:
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        info["cuda"] = False
    return info
