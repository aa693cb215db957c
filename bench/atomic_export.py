"""Export a split as RecBole atomic files so baselines see exactly the harness's targets.

The timestamp column is each interaction's position in its user's sequence (0, 1, 2, ...):
RecBole stores floats as float32, and raw unix times would collapse and reorder items.
Tokens are the harness's internal indices, so RecBole's ids map straight back.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from bench.split import LeaveOneOutSplit

INTER_HEADER = "user_id:token\titem_id:token\ttimestamp:float\n"


def write_atomic_files(split: LeaveOneOutSplit, out_dir: str | os.PathLike, name: str) -> Path:
    """Write ``out_dir/name/name.inter`` (complete or not at all) and return the dataset folder."""
    target = Path(out_dir) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}."))
    try:
        with (staging / f"{name}.inter").open("w", encoding="utf-8") as handle:
            handle.write(INTER_HEADER)
            for user, sequence in enumerate(split.dataset.sequences):
                handle.writelines(f"{user}\t{item}\t{pos}\n" for pos, item in enumerate(sequence))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
