import math

import numpy as np
import pytest

from bench.metrics import compact_rankings, evaluate_rankings, target_ranks


def brute_force(rankings, targets, ks, n_items):
    """Straight from the definitions, one user at a time."""
    result = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg")}
    tops = {k: set() for k in ks}
    for row, target in zip(rankings, targets):
        seen, ranked = set(), []
        for item in row:
            if item == -1:
                break
            if item not in seen:
                seen.add(item)
                ranked.append(item)
        for k in ks:
            top = ranked[:k]
            tops[k].update(i for i in top if 0 <= i < n_items)
            if target in top:
                rank = top.index(target) + 1
                result[f"recall@{k}"] += 1
                result[f"ndcg@{k}"] += 1 / math.log2(rank + 1)
    n = len(targets)
    result = {key: value / n for key, value in result.items()}
    for k in ks:
        result[f"coverage@{k}"] = len(tops[k]) / n_items
    return result


@pytest.mark.parametrize("seed", range(20))
def test_matches_brute_force_on_random_inputs(seed):
    rng = np.random.default_rng(seed)
    n_users, max_k, n_items = int(rng.integers(1, 60)), int(rng.integers(1, 25)), int(rng.integers(2, 30))
    # small catalogue -> many duplicates; some ids beyond the catalogue (invalid generations)
    rankings = rng.integers(0, n_items + 3, size=(n_users, max_k))
    pad_from = rng.integers(0, max_k + 1, size=n_users)
    rankings[np.arange(max_k)[None, :] >= pad_from[:, None]] = -1
    targets = rng.integers(0, n_items, size=n_users)
    ks = (1, 5, 10, 20)
    got = evaluate_rankings(rankings, targets, ks, n_items=n_items)
    want = brute_force(rankings.tolist(), targets.tolist(), ks, n_items)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


def test_duplicates_do_not_push_the_target_down():
    rankings = np.array([[7, 7, 7, 3], [7, 3, 7, 3]])
    assert target_ranks(rankings, np.array([3, 3])).tolist() == [2, 2]
    metrics = evaluate_rankings(rankings, [3, 3], ks=(1, 2))
    assert metrics["recall@1"] == 0.0
    assert metrics["recall@2"] == 1.0
    assert metrics["ndcg@2"] == pytest.approx(1 / math.log2(3))


def test_a_duplicate_of_the_target_counts_once():
    metrics = evaluate_rankings(np.array([[3, 3, 3]]), [3], ks=(3,))
    assert metrics["recall@3"] == 1.0 and metrics["ndcg@3"] == 1.0


def test_invalid_ids_take_a_rank_and_miss():
    metrics = evaluate_rankings(np.array([[99, 1]]), [1], ks=(1, 2), n_items=5)
    assert metrics["recall@1"] == 0.0 and metrics["recall@2"] == 1.0
    assert metrics["coverage@2"] == pytest.approx(1 / 5)


def test_compaction_keeps_first_occurrences_in_order():
    assert compact_rankings(np.array([[4, 2, 4, 1, 2, -1]])).tolist() == [[4, 2, 1, -1, -1, -1]]


def test_padding_must_trail():
    with pytest.raises(ValueError, match="padding"):
        evaluate_rankings(np.array([[1, -1, 2]]), [2])


def test_ids_below_padding_are_rejected():
    with pytest.raises(ValueError, match="-1"):
        evaluate_rankings(np.array([[1, -5]]), [1])


def test_target_shape_is_checked():
    with pytest.raises(ValueError, match="targets"):
        evaluate_rankings(np.array([[1, 2]]), [1, 2])
