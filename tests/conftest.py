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


class _LongTestWatch:
    """Names every test still running after ``after`` seconds (then every ``every``), so a quiet
    suite shows what it is doing; with pytest-xdist the controller sees each worker's start."""

    def __init__(self, after: float = 60.0, every: float = 120.0):
        import threading

        self.after, self.every = after, every
        self.running: dict[str, float] = {}
        self.told: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        threading.Thread(target=self._watch, daemon=True, name="long-test-watch").start()

    def pytest_runtest_logstart(self, nodeid, location):
        import time

        with self.lock:
            self.running[nodeid] = time.monotonic()

    def pytest_runtest_logfinish(self, nodeid, location):
        with self.lock:
            self.running.pop(nodeid, None)
            self.told.pop(nodeid, None)

    def pytest_sessionfinish(self):
        self.stop.set()

    def _watch(self):
        import sys
        import time

        while not self.stop.wait(5.0):
            now = time.monotonic()
            with self.lock:
                due = [(n, now - t) for n, t in self.running.items()
                       if now - t >= self.after and now - self.told.get(n, 0.0) >= self.every]
                for name, _ in due:
                    self.told[name] = now
            for name, seconds in due:
                sys.stderr.write(f"\n[still running after {seconds:.0f} s] {name}\n")
                sys.stderr.flush()


def pytest_configure(config):
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        config.pluginmanager.register(_LongTestWatch(), "long-test-watch")
        return
    # an xdist worker: share the cores with the other workers instead of each taking them all
    import torch

    workers = int(config.workerinput.get("workercount", 1))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
