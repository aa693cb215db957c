"""Significance marks of a table: the training run is the unit of evidence.

A mark (†: better, ‡: worse than the row a table compares with) rests on Welch's t-test
(``scipy.stats.ttest_ind(equal_var=False)``) on the per-seed values of a metric, one value per
training run, and only where *each* compared row has at least ``MIN_SEEDS`` (3) seeds. Within one
table every test it runs is one family, corrected with Holm–Bonferroni (:func:`holm`): a cell is
marked when its Holm-adjusted p-value is below ``alpha``.

Why this test: a paired test over test users (the tables' former Wilcoxon) measures the sampling of
the users, not the randomness of training; two runs of one configuration that differ only in their
seed already differ "significantly" under it (LETTER seeds 2024/2025 on Beauty: p = .011). Welch's
t on per-run values is the simple, standard run-level comparison (Bouthillier et al., "Accounting
for Variance in Machine Learning Benchmarks", MLSys 2021), makes no equal-variance assumption
between two configurations, and has honestly low power at n = 3: a difference has to be large
against the seed-to-seed spread to be marked. A two-level bootstrap (seeds, then users) would use
the users as well, but with 3-5 seeds its outer level has too few distinct resamples to be
meaningful; it is worth it only with more seeds.

The per-user test stays as a secondary, clearly named number (``p_users_wilcoxon`` in a table's CSV:
test users only, ignores training variance); it never makes a mark.
"""
from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from bench.tables.model import Row

MIN_SEEDS = 3  # per compared row: below it a row is not tested


def competing(candidates: list, seeds: Callable) -> list:
    """The candidates that compete for "best on validation": those with ``MIN_SEEDS`` seeds where
    there are (one seed's luck against a 3-seed mean would win on noise), else all of them."""
    seeded = [candidate for candidate in candidates if seeds(candidate) >= MIN_SEEDS]
    return seeded or candidates


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the order given: the i-th smallest of m p-values is
    multiplied by (m - i + 1), made monotone (never below the adjusted value before it) and capped at
    1. NaN (no test) stays NaN and does not count in m. Reject where the adjusted value < alpha."""
    values = [float(p) if p is not None else math.nan for p in pvalues]
    tested = sorted((p, i) for i, p in enumerate(values) if not math.isnan(p))
    adjusted = [math.nan] * len(values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted


def welch_pvalue(x: Sequence[float], y: Sequence[float], min_seeds: int = MIN_SEEDS) -> float:
    """Two-sided p-value of Welch's t-test between per-seed values ``x`` and ``y``; NaN (not tested)
    when either has fewer than ``min_seeds`` values. Equal constants: 1; different constants: 0."""
    from scipy import stats

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < min_seeds or len(y) < min_seeds:
        return math.nan
    if np.ptp(x) == 0 and np.ptp(y) == 0 and x[0] == y[0]:
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(x, y, equal_var=False).pvalue)


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
    """Two-sided p-value of a paired test between per-user values ``x`` and ``y`` (secondary only:
    it ignores training variance)."""
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


def users_pvalue(runs: pd.DataFrame, reference: pd.DataFrame, metric: str, test: str = "wilcoxon") -> float | None:
    """The secondary per-user p-value of a row's runs against the reference's (seeds averaged per
    user, same dataset fingerprint only); None where it cannot be computed."""
    vec, fp = _user_vector(runs, metric)
    base, base_fp = _user_vector(reference, metric)
    if vec is None or base is None or fp != base_fp or len(vec) != len(base):
        return None
    return paired_pvalue(vec, base, test)


def seed_values(row: Row, dataset: str, metric: str) -> np.ndarray:
    """One value of ``metric`` per training run (seed) behind ``row`` on ``dataset``."""
    runs = row.runs.get(dataset)
    if runs is None or metric not in runs.columns:
        return np.array([])
    return runs[metric].dropna().astype(float).to_numpy()


def same_data(runs: pd.DataFrame, reference: pd.DataFrame) -> bool:
    """Whether two rows' runs all saw one dataset version (one known fingerprint)."""
    if "fingerprint" not in runs.columns or "fingerprint" not in reference.columns:
        return False
    prints = set(runs["fingerprint"]) | set(reference["fingerprint"])
    return len(prints) == 1 and isinstance(next(iter(prints)), str)


def compare_rows(rows: list[Row], columns, reference_of: Callable[[Row, str], "Row | None"], alpha: float,
                 test: str = "wilcoxon", only_better: bool = False) -> int:
    """Test each cell against the cell of its reference row (``reference_of(row, dataset)``) by Welch's
    t over seeds, where both rows have >= MIN_SEEDS seeds of one dataset version; Holm-correct over every test run here and
    set ``p_value`` (raw), ``p_holm``, ``significant`` (adjusted p < alpha) and ``worse`` on the
    cells. ``only_better``: test only cells whose mean beats the reference's (the main table's †).
    Every compared cell also gets the secondary per-user p-value (``p_users``). Returns the number of
    tests (the family size)."""
    tested = []
    for dataset, metric in columns:
        for row in rows:
            reference = reference_of(row, dataset)
            cell = row.cells.get((dataset, metric))
            base = reference.cells.get((dataset, metric)) if reference is not None else None
            if reference is None or reference is row or cell is None or base is None:
                continue
            if only_better and not cell.mean > base.mean:
                continue
            cell.p_users = users_pvalue(row.runs[dataset], reference.runs[dataset], metric, test)
            if not same_data(row.runs[dataset], reference.runs[dataset]):
                continue
            p = welch_pvalue(seed_values(row, dataset, metric), seed_values(reference, dataset, metric))
            if not math.isnan(p):
                cell.p_value = p
                tested.append((cell, base))
    for (cell, base), adjusted in zip(tested, holm([cell.p_value for cell, _ in tested])):
        cell.p_holm = adjusted
        cell.significant = bool(adjusted < alpha)
        cell.worse = cell.significant and cell.mean < base.mean
    return len(tested)


def best_on_validation(rows: list[Row], dataset: str) -> Row | None:
    """The row with the best mean validation NDCG@10 on ``dataset`` (ties: more seeds, then table
    order), among the rows with ``MIN_SEEDS`` seeds where there are (one seed's luck is not a 3-seed
    mean); None when no row has a validation value there. Never looks at test metrics."""
    present = [(i, r) for i, r in enumerate(rows) if dataset in r.valid]
    if not present:
        return None
    return max(competing(present, lambda t: len(t[1].runs.get(dataset, ()))),
               key=lambda t: (t[1].valid[dataset], len(t[1].runs.get(dataset, ())), -t[0]))[1]
