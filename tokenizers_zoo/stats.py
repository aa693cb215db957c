"""Quality statistics of a tokenizer's codes, and codebook-collapse detection.

All statistics are about the codes *before* the collision level is appended:

- ``utilisation``: per level, distinct codes used / codebook size K.
- ``collision_rate``: share of items whose L-tuple is shared with at least one other item.
- ``max_collision_group``: the most items sharing one tuple (= the collision level's size).
- ``first_level_entropy``: Shannon entropy (bits) of the first-level code distribution;
  ``first_level_entropy_norm`` divides it by log2(min(K, n_items)), its maximum.
- ``first_level_gini``: Gini coefficient of the first-level code counts over all K codes
  (0 = every code used equally often, near 1 = one code takes every item).
- ``first_level_counts``: items per first-level code (K integers), for LETTER's code-assignment
  figure (``bench plot codes``, ``bench render``); not printed by :func:`stats_table`.
- ``collapse_warning``: one message per level whose used codes are fewer than
  ``collapse_threshold`` × min(K, n_items). For learned codebooks (RQ-VAE, LETTER) a collapse is an
  error when fitting from a run config (``tokenizer.allow_collapse: false``, the default; see
  ``Tokenizer.check_collapse``).
"""
from __future__ import annotations

import math
import sys

import numpy as np

from tokenizers_zoo.collision import collision_groups


def entropy_bits(counts: np.ndarray) -> float:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(0.0 - (p * np.log2(p)).sum())  # 0.0 - x: no negative zero


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (zeros included): 0 equal, (n-1)/n all in one."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() <= 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float((2.0 * (ranks * x).sum()) / (n * x.sum()) - (n + 1.0) / n)


def collapsed_levels(codes: np.ndarray, level_sizes: list[int], threshold: float) -> list[dict]:
    """The levels whose used codes are fewer than ``threshold`` x min(K, n_items), each as
    ``{"level": 1-based, "used", "size": K, "reachable": min(K, n_items), "utilisation": used / K}``."""
    codes = np.asarray(codes)
    n_items = len(codes)
    found = []
    for level, size in enumerate(level_sizes):
        used = len(np.unique(codes[:, level])) if n_items else 0
        reachable = min(int(size), n_items)
        if reachable > 1 and used < threshold * reachable:
            found.append({"level": level + 1, "used": int(used), "size": int(size), "reachable": reachable,
                          "utilisation": used / size})
    return found


def collapse_warnings(codes: np.ndarray, level_sizes: list[int], threshold: float) -> list[str]:
    return [
        f"codebook collapse at level {c['level']}: {c['used']} of {c['size']} codes used "
        f"({c['utilisation']:.1%}; below {threshold:.0%} of the {c['reachable']} reachable)"
        for c in collapsed_levels(codes, level_sizes, threshold)
    ]


def code_stats(codes: np.ndarray, level_sizes: list[int], collapse_threshold: float = 0.1) -> dict:
    """The statistics every tokenizer reports (see the module docstring)."""
    codes = np.asarray(codes, dtype=np.int64)
    n_items, levels = codes.shape
    if len(level_sizes) != levels:
        raise ValueError(f"{levels} code levels but {len(level_sizes)} codebook sizes")
    utilisation = []
    used_per_level = []
    for level, size in enumerate(level_sizes):
        used = len(np.unique(codes[:, level])) if n_items else 0
        used_per_level.append(int(used))
        utilisation.append(used / size if size else 0.0)
    groups = collision_groups(codes)
    group_sizes = np.bincount(groups) if n_items else np.zeros(0, dtype=np.int64)
    colliding = int(group_sizes[group_sizes > 1].sum()) if n_items else 0
    first_counts = np.bincount(codes[:, 0], minlength=level_sizes[0]) if n_items else np.zeros(level_sizes[0])
    entropy = entropy_bits(first_counts)
    max_entropy = math.log2(min(level_sizes[0], n_items)) if min(level_sizes[0], n_items) > 1 else 0.0
    return {
        "n_items": int(n_items),
        "levels": int(levels),
        "codebook_sizes": [int(k) for k in level_sizes] + [int(group_sizes.max()) if n_items else 0],
        "codes_used": used_per_level,
        "utilisation": utilisation,
        "unique_tuples": int(len(group_sizes)),
        "collision_rate": colliding / n_items if n_items else 0.0,
        "max_collision_group": int(group_sizes.max()) if n_items else 0,
        "first_level_entropy": entropy,
        "first_level_entropy_norm": entropy / max_entropy if max_entropy else 0.0,
        "first_level_gini": gini(first_counts),
        "first_level_counts": [int(c) for c in first_counts],
        "collapse_warning": collapse_warnings(codes, level_sizes, collapse_threshold),
    }


def report_collapse(name: str, messages: list[str], stream=None) -> None:
    """Say it loudly on stderr."""
    stream = stream or sys.stderr
    for message in messages:
        print(f"WARNING [{name}]: {message}", file=stream)


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "-"
        if all(isinstance(v, str) for v in value):
            return "\n".join(value)
        return ", ".join(format_value(v) for v in value)
    if value is None:
        return "-"
    return str(value)


NOT_PRINTED = frozenset({"first_level_counts"})  # K numbers: in the record, not on the console


def stats_table(stats: dict, tablefmt: str = "simple") -> str:
    """The statistics as a two-column table (tabulate)."""
    from tabulate import tabulate

    rows = [(key, format_value(value)) for key, value in stats.items() if key not in NOT_PRINTED]
    return tabulate(rows, headers=["statistic", "value"], tablefmt=tablefmt, disable_numparse=True)
