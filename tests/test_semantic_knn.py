"""Semantic-KNN against brute force on a tiny catalogue, and against pop on data whose item text
carries the structure of the sequences."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import bench.embed
from bench.config import ConfigError, resolve_config
from bench.data import load_dataset
from bench.methods import RunContext
from bench.plugins import METHODS
from bench.metrics import evaluate_rankings
from bench.split import LeaveOneOutSplit


def _method(name, split, **sets):
    config = resolve_config("smoke", assignments=[f"{k}={v}" for k, v in sets.items()],
                            overrides={"method": name, "dataset": "synthetic"})
    method = METHODS.get(name)(config, RunContext(work_dir=Path("unused")))
    method.fit(split)
    return method


@pytest.mark.parametrize("aggregate", ["mean", "max"])
def test_rankings_equal_brute_force(monkeypatch, aggregate):
    split = LeaveOneOutSplit(load_dataset("synthetic", options={"n_users": 40, "n_items": 30}))
    emb = np.random.default_rng(0).normal(size=(split.n_items, 8)).astype(np.float32)
    monkeypatch.setattr(bench.embed, "item_embeddings", lambda dataset, config=None: emb)
    knn = _method("semantic_knn", split, **{"baseline.semantic_knn.history": 3,
                                           "baseline.semantic_knn.aggregate": aggregate})
    ranked = knn.rank(split, "test", 10)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    batch = split.eval_batch("test")
    for user in range(split.n_users):
        history = batch.items[user][batch.items[user] >= 0]
        sims = unit[history[-3:]] @ unit.T
        scores = sims.mean(axis=0) if aggregate == "mean" else sims.max(axis=0)
        scores[history] = -np.inf  # never the user's own history
        expected = np.argsort(-scores, kind="stable")[:10]
        np.testing.assert_allclose(scores[ranked[user]], scores[expected], rtol=1e-5)
        assert not set(ranked[user]) & set(history.tolist())


def test_beats_popularity_where_item_text_carries_the_sequences(monkeypatch):
    split = LeaveOneOutSplit(load_dataset("synthetic"))
    # the synthetic generator's latent category, as a one-hot "text embedding" with a little noise
    categories = np.array([meta["category"] for meta in split.dataset.item_meta])
    emb = np.eye(categories.max() + 1)[categories] + np.random.default_rng(0).normal(
        scale=0.05, size=(split.n_items, categories.max() + 1))
    monkeypatch.setattr(bench.embed, "item_embeddings", lambda dataset, config=None: emb.astype(np.float32))
    knn = _method("semantic_knn", split).rank(split, "test", 10)
    pop = _method("pop", split).rank(split, "test", 10)
    ours = evaluate_rankings(knn, split.test_targets, ks=(10,))["recall@10"]
    base = evaluate_rankings(pop, split.test_targets, ks=(10,))["recall@10"]
    assert ours > base + 0.1, (ours, base)


def test_its_section_is_checked_when_the_config_is_resolved():
    with pytest.raises(ConfigError, match="semantic_knn.history"):
        resolve_config("smoke", assignments=["baseline.semantic_knn.history=0"], overrides={"method": "semantic_knn"})
    with pytest.raises(ConfigError, match="aggregate"):
        resolve_config("smoke", assignments=["baseline.semantic_knn.aggregate=median"],
                       overrides={"method": "semantic_knn"})
