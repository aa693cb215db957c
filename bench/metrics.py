"""The one evaluator: Recall@K, NDCG@K and coverage@K from ranked item lists, one target per user;
and the category entropy of top-K lists (TIGER Table 3)."""
from __future__ import annotations

import numpy as np

PAD = -1


def compact_rankings(rankings: np.ndarray) -> np.ndarray:
    """Drop later duplicates of an item in each row, keeping first occurrences in order; pad with -1.

    Ids outside the catalogue (e.g. invalid generated IDs) stay in place: they take a rank and miss.
    """
    rankings = np.asarray(rankings, dtype=np.int64)
    if rankings.ndim != 2:
        raise ValueError(f"rankings must be 2-D [n_users, max_k], got shape {rankings.shape}")
    if (rankings < PAD).any():
        raise ValueError("rankings hold ids below -1; -1 is the only allowed padding value")
    is_pad = rankings == PAD
    if (is_pad[:, :-1] & ~is_pad[:, 1:]).any():
        raise ValueError("padding (-1) must only trail: a row has an item after a -1")
    order = np.argsort(rankings, axis=1, kind="stable")
    ranked_sorted = np.take_along_axis(rankings, order, axis=1)
    repeat_sorted = np.zeros_like(ranked_sorted, dtype=bool)
    repeat_sorted[:, 1:] = ranked_sorted[:, 1:] == ranked_sorted[:, :-1]
    duplicate = np.zeros_like(repeat_sorted)
    np.put_along_axis(duplicate, order, repeat_sorted, axis=1)
    keep = ~duplicate & ~is_pad
    # stable partition: kept entries first, in their original order
    position = np.argsort(~keep, axis=1, kind="stable")
    compacted = np.take_along_axis(rankings, position, axis=1)
    compacted[~np.take_along_axis(keep, position, axis=1)] = PAD
    return compacted


def target_ranks(rankings: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each user's target in the compacted list; 0 where it is absent."""
    targets = np.asarray(targets, dtype=np.int64)
    compacted = compact_rankings(rankings)
    if targets.shape != (compacted.shape[0],):
        raise ValueError(f"targets must have shape ({compacted.shape[0]},), got {targets.shape}")
    hit = compacted == targets[:, None]
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)


def metrics_from_ranks(ranks: np.ndarray, ks=(5, 10, 20)) -> dict[str, float]:
    """Recall@K and NDCG@K (one relevant item: 1/log2(rank+1) when rank <= K), averaged over users."""
    ranks = np.asarray(ranks)
    result = {}
    for k in ks:
        hit = (ranks >= 1) & (ranks <= k)
        gain = np.zeros(len(ranks), dtype=np.float64)
        gain[hit] = 1.0 / np.log2(ranks[hit] + 1.0)
        result[f"recall@{k}"] = float(hit.mean()) if len(ranks) else 0.0
        result[f"ndcg@{k}"] = float(gain.mean()) if len(ranks) else 0.0
    return result


def evaluate_rankings(rankings, targets, ks=(5, 10, 20), n_items: int | None = None) -> dict[str, float]:
    """Score ranked lists ``[n_users, max_k]`` (padded with -1) against one target per user.

    Later duplicates are dropped before ranks are counted. With ``n_items`` also returns
    coverage@K: the share of the catalogue that appears in at least one user's top K.
    """
    rankings = np.asarray(rankings, dtype=np.int64)
    result = metrics_from_ranks(target_ranks(rankings, targets), ks)
    if n_items is not None:
        compacted = compact_rankings(rankings)
        for k in ks:
            top = compacted[:, :k]
            top = top[(top >= 0) & (top < n_items)]
            result[f"coverage@{k}"] = float(len(np.unique(top)) / n_items)
    return result


ENTROPY_UNIT = "nats"  # category_entropy uses the natural logarithm; tables name the unit from here


def category_entropy(rankings: np.ndarray, item_category: np.ndarray, k: int) -> float:
    """Mean over users of the entropy (in ``ENTROPY_UNIT``) of the category distribution of their
    top-k items (TIGER Table 3). Items outside the catalogue and items without a category are skipped."""
    rankings = np.asarray(rankings)[:, :k]
    item_category = np.asarray(item_category)
    n_cat = int(item_category.max()) + 1 if len(item_category) else 0
    valid = (rankings >= 0) & (rankings < len(item_category))
    cats = np.where(valid, item_category[np.clip(rankings, 0, len(item_category) - 1)], -1)
    valid &= cats >= 0
    counts = np.zeros((len(rankings), max(n_cat, 1)))
    rows = np.repeat(np.arange(len(rankings)), rankings.shape[1]).reshape(rankings.shape)
    np.add.at(counts, (rows[valid], cats[valid]), 1)
    totals = counts.sum(1, keepdims=True)
    p = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    entropy = -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0)).sum(1)
    has = totals[:, 0] > 0
    return float(entropy[has].mean()) if has.any() else 0.0
