"""The collision level: TIGER's extra code that makes every item's semantic ID unique."""
from __future__ import annotations

import numpy as np


def _as_codes(codes: np.ndarray) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be a 2-D array [n_items, levels], got shape {codes.shape}")
    if codes.size and not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must be integers, got {codes.dtype}")
    return codes.astype(np.int64, copy=False)


def collision_groups(codes: np.ndarray) -> np.ndarray:
    """Per item the index of its group of items sharing the same L-tuple (group ids in tuple order)."""
    codes = _as_codes(codes)
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64)
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


def collision_suffix(codes: np.ndarray) -> np.ndarray:
    """Per item its rank among the earlier items with the same tuple: 0, 1, 2, ... in item order."""
    groups = collision_groups(codes)
    if len(groups) == 0:
        return groups
    order = np.argsort(groups, kind="stable")  # items grouped, item order kept inside a group
    sorted_groups = groups[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    first_of_group = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    suffix = np.empty(len(groups), dtype=np.int64)
    suffix[order] = np.arange(len(order)) - first_of_group
    return suffix


def semantic_ids(codes: np.ndarray) -> np.ndarray:
    """``[n_items, L + 1]``: the codes with the collision level appended, unique per item."""
    codes = _as_codes(codes)
    return np.concatenate([codes, collision_suffix(codes)[:, None]], axis=1)


def max_group_size(codes: np.ndarray) -> int:
    """The largest number of items sharing one tuple (= the collision level's codebook size)."""
    groups = collision_groups(codes)
    return int(np.bincount(groups).max()) if len(groups) else 0
