"""Export sequences as RecBole atomic files so baselines see exactly the harness's targets.

The timestamp column is each interaction's position in its user's sequence (0, 1, 2, ...):
RecBole stores floats as float32, and raw unix times would collapse and reorder items.
Tokens are the harness's internal indices, so RecBole's ids map straight back.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from bench.atomic import atomic_write
from bench.split import LeaveOneOutSplit

INTER_HEADER = "user_id:token\titem_id:token\ttimestamp:float\n"


def write_inter_file(path: str | os.PathLike, sequences: Sequence[np.ndarray]) -> Path:
    """``path`` (a ``.inter`` file): one line per interaction, user by user, written atomically."""
    def write(handle) -> None:
        handle.write(INTER_HEADER.encode("utf-8"))
        for user, sequence in enumerate(sequences):
            handle.write("".join(f"{user}\t{item}\t{pos}\n" for pos, item in enumerate(sequence)).encode("utf-8"))

    return atomic_write(path, write, fsync=False)


def write_atomic_files(split: LeaveOneOutSplit, out_dir: str | os.PathLike, name: str) -> Path:
    """Write ``out_dir/name/name.inter`` for the split's full sequences; return the dataset folder."""
    target = Path(out_dir) / name
    write_inter_file(target / f"{name}.inter", split.dataset.sequences)
    return target
