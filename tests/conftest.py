"""Shared fixtures: locate the real Amazon data, isolate caches from the user's home."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def amazon_data_dir() -> Path | None:
    """$BENCH_DATA_DIR, then ../shared/data/amazon2014 beside the checkout; None where neither has beauty."""
    candidates = []
    if os.environ.get("BENCH_DATA_DIR"):
        candidates.append(Path(os.environ["BENCH_DATA_DIR"]))
    candidates.append(REPO.parent / "shared" / "data" / "amazon2014")
    for folder in candidates:
        if (folder / "beauty" / "sequences.txt").is_file():
            return folder
    return None


@pytest.fixture
def amazon_dir() -> Path:
    folder = amazon_data_dir()
    if folder is None:
        pytest.skip("Amazon 2014 data not found in $BENCH_DATA_DIR or ../shared/data/amazon2014")
    return folder


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache folder, so nothing leaks into ~/.cache or between tests."""
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module: fast and reproducible on a shared 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
