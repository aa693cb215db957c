"""No cached artifact of a generative run executes code when read (issue 29): a crafted pickle planted
in place of the text-embedding cache, the CF-embedding cache or a cached tokenizer fit (its codes
and its state) is refused, the artifact is rebuilt, and the run completes as before."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.cli import main

RUN = ["run", "--tokenizer", "letter", "--dataset", "synthetic", "--profile", "smoke",
       "--set", "train.max_steps=10", "train.eval_every=10", "train.progress=false"]


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(path: Path, marker: Path) -> None:
    """Overwrite ``path`` with a file that runs ``touch marker`` when read by an unsafe loader."""
    if path.suffix == ".npy":
        np.save(path, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    else:
        torch.save({"x": Payload(marker)}, path)


def _test_metrics(store: Path) -> list[dict]:
    return [json.loads(p.read_text())["metrics"]["test"] for p in sorted(store.glob("*.json"))]


def test_crafted_cache_files_run_no_code_and_are_rebuilt(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("BENCH_CACHE_DIR", str(cache))
    assert main([*RUN, "--results-dir", str(tmp_path / "first")]) == 0
    planted = {
        "text embeddings": sorted((cache / "embeddings").glob("*.npy")),
        "CF embeddings": sorted((cache / "cf_embed").rglob("*.npy")),
        "tokenizer codes": sorted((cache / "tokenizers").rglob("codes.npy")),
        "tokenizer state": sorted((cache / "tokenizers").rglob("state.pt")),
    }
    for what, paths in planted.items():
        assert paths, f"no cached {what} found under {cache}"
    # the payload is real: an unsafe loader runs it
    probe = tmp_path / "probe.npy"
    _plant(probe, tmp_path / "probe-ran")
    np.load(probe, allow_pickle=True)
    assert (tmp_path / "probe-ran").exists()

    marker = tmp_path / "owned"
    for paths in planted.values():
        for path in paths:
            _plant(path, marker)
    assert main([*RUN, "--results-dir", str(tmp_path / "second")]) == 0
    assert not marker.exists()
    assert _test_metrics(tmp_path / "second") == _test_metrics(tmp_path / "first")
