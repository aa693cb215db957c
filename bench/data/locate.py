"""Where datasets live: --data-dir, else $BENCH_DATA_DIR, else a per-user cache folder."""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "BENCH_DATA_DIR"


def cache_root() -> Path:
    """Per-user cache for downloads, embeddings and tokenizer artifacts ($BENCH_CACHE_DIR overrides)."""
    if os.environ.get("BENCH_CACHE_DIR"):
        return Path(os.environ["BENCH_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "genrec-bench"


def data_dirs(data_dir: str | os.PathLike | None) -> list[Path]:
    """The folders searched for a dataset, in order."""
    if data_dir:
        return [Path(data_dir).expanduser()]
    dirs = []
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]).expanduser())
    dirs.append(cache_root() / "data")
    return dirs
