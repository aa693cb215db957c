"""Paired per-user significance tests and the validation-chosen reference rows they compare with."""
from __future__ import annotations

import math

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from bench.tables.model import Row


def per_user_values(ranks: np.ndarray, metric: str) -> np.ndarray | None:
    """Each user's value of ``metric`` from the 1-based rank of their target (0 = not ranked)."""
    name, _, k = metric.partition("@")
    if not k.isdigit():
        return None
    ranks = np.asarray(ranks)
    hit = (ranks >= 1) & (ranks <= int(k))
    if name in ("recall", "hit"):
        return hit.astype(np.float64)
    if name == "ndcg":
        gain = np.zeros(len(ranks), dtype=np.float64)
        gain[hit] = 1.0 / np.log2(ranks[hit] + 1.0)
        return gain
    return None


def paired_pvalue(x: np.ndarray, y: np.ndarray, test: str = "wilcoxon") -> float:
    """Two-sided p-value of a paired test between per-user values ``x`` and ``y``."""
    from scipy import stats

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or len(x) < 2:
        return float("nan")
    diff = x - y
    if not np.any(diff != 0):
        return 1.0
    if test == "ttest":
        return float(stats.ttest_rel(x, y).pvalue)
    return float(stats.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided").pvalue)


def _user_vector(runs: pd.DataFrame, metric: str) -> tuple[np.ndarray | None, str | None]:
    """Per-user values averaged over a row's seeds, and the dataset fingerprint they share."""
    if "ranks" not in runs.columns or runs["ranks"].isna().any() or runs["fingerprint"].nunique(dropna=False) != 1:
        return None, None
    fingerprint = runs["fingerprint"].iloc[0]
    if fingerprint is None or (isinstance(fingerprint, float) and math.isnan(fingerprint)):
        return None, None
    vectors = [per_user_values(r, metric) for r in runs["ranks"]]
    if any(v is None for v in vectors) or len({len(v) for v in vectors}) != 1:
        return None, None
    return np.mean(vectors, axis=0), fingerprint


def best_on_validation(rows: list[Row], dataset: str) -> Row | None:
    """The row with the best mean validation NDCG@10 on ``dataset`` (ties: more seeds, then table
    order); None when no row has a validation value there. Never looks at test metrics."""
    present = [(i, r) for i, r in enumerate(rows) if dataset in r.valid]
    if not present:
        return None
    return max(present, key=lambda t: (t[1].valid[dataset], len(t[1].runs.get(dataset, ())), -t[0]))[1]


def _best_baselines(baselines: list[Row], columns) -> dict:
    """(dataset, metric) -> the reference baseline: per dataset the baseline row with the best
    validation NDCG@10 (the same row for every metric of the dataset)."""
    best = {}
    for dataset in dict.fromkeys(d for d, _ in columns):
        row = best_on_validation(baselines, dataset)
        if row is None:
            continue
        for column in columns:
            if column[0] == dataset and column in row.cells:
                best[column] = row
    return best


def compare_with(rows: list[Row], references: dict, alpha: float, test: str, only_better: bool = True) -> None:
    """Mark each cell against the reference row of its column (``(dataset, metric) -> Row``) with a
    paired per-user test: p-value, ``significant`` at ``alpha`` and ``worse``. ``only_better``: test
    only cells whose mean beats the reference (the main table's † against the best baseline)."""
    for (dataset, metric), reference in references.items():
        if dataset not in reference.runs or (dataset, metric) not in reference.cells:
            continue
        base_vec, base_fp = _user_vector(reference.runs[dataset], metric)
        if base_vec is None:
            continue
        base_mean = reference.cells[(dataset, metric)].mean
        for row in rows:
            cell = row.cells.get((dataset, metric))
            if row is reference or cell is None or (only_better and not cell.mean > base_mean):
                continue
            vec, fp = _user_vector(row.runs[dataset], metric)
            if vec is None or fp != base_fp or len(vec) != len(base_vec):
                continue
            cell.p_value = paired_pvalue(vec, base_vec, test)
            cell.significant = bool(cell.p_value < alpha)
            cell.worse = cell.significant and cell.mean < base_mean


def _significance(rows: list[Row], best_baselines: dict, alpha: float, test: str) -> None:
    compare_with(rows, best_baselines, alpha, test, only_better=True)
