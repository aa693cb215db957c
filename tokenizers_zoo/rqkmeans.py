"""RQ-KMeans: residual k-means on the item embeddings, level by level, with no gradient training.

Level 1 clusters the embeddings into K centroids; each item's code is its centroid; level 2 clusters
the residuals (embedding minus its level-1 centroid), and so on (the default tokenizer of
snap-research/GRID and Cornac's TIGER recipe). ``balanced: true`` uses constrained k-means at every
level, so each code holds floor(n/K) .. ceil(n/K) items (OneRec / MiniOneRec's balanced variant: it
spreads items evenly over the codes and cuts collisions). A new item (cold start) gets the nearest
centroid at each level: the balance constraint is a property of the fit, not of encoding.
"""
from __future__ import annotations

import math

import numpy as np

from bench.config_schema import CodebookSize, PositiveInt, Section
from tokenizers_zoo.base import Tokenizer, TokenizerError, check_embeddings


def kmeans_labels(points: np.ndarray, k: int, balanced: bool, seed: int, n_init: int, max_iter: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(labels [n], centroids [k, d]) of k-means on ``points``; ``balanced``: cluster sizes
    floor(n/k) .. ceil(n/k) (k-means-constrained's min-cost-flow assignment)."""
    points = np.asarray(points, dtype=np.float64)
    if balanced:
        from k_means_constrained import KMeansConstrained  # deferred: imports ortools

        n = len(points)
        model = KMeansConstrained(n_clusters=k, size_min=n // k, size_max=math.ceil(n / k), n_init=n_init,
                                  max_iter=max_iter, random_state=seed, n_jobs=1)
        labels = model.fit_predict(points)
    else:
        from sklearn.cluster import KMeans  # deferred: scikit-learn is seconds to import

        model = KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=seed)
        labels = model.fit_predict(points)
    return np.asarray(labels, dtype=np.int64), np.asarray(model.cluster_centers_, dtype=np.float32)


class RQKMeansParams(Section):
    levels: PositiveInt
    codebook_size: CodebookSize
    balanced: bool
    n_init: PositiveInt
    max_iter: PositiveInt


class RQKMeansTokenizer(Tokenizer):
    name = "rqkmeans"
    version = 1  # bump when a change makes fitted rqkmeans codes differ

    Params = RQKMeansParams

    def _init_state(self) -> None:
        self.centroids: np.ndarray | None = None  # [L, K, d]

    @property
    def level_sizes(self) -> list[int]:
        return [self.hp.codebook_size] * self.hp.levels

    def _fit(self, item_emb: np.ndarray, cf_emb: np.ndarray | None) -> np.ndarray:
        k = self.hp.codebook_size
        if len(item_emb) < k:
            raise TokenizerError(f"rqkmeans needs at least codebook_size = {k} items per level, got {len(item_emb)}")
        residual = np.asarray(item_emb, dtype=np.float32)
        codes, centroids = [], []
        level_seeds = np.random.default_rng(self.seed).integers(0, 2**31 - 1, size=self.hp.levels)
        for level in range(self.hp.levels):
            labels, centres = kmeans_labels(residual, k, self.hp.balanced, seed=int(level_seeds[level]),
                                            n_init=self.hp.n_init, max_iter=self.hp.max_iter)
            codes.append(labels)
            centroids.append(centres)
            residual = residual - centres[labels]
        self.centroids = np.stack(centroids)
        self.extra_stats["reconstruction_mse"] = float(np.mean(residual.astype(np.float64) ** 2))
        return np.stack(codes, axis=1)

    def encode(self, item_emb: np.ndarray) -> np.ndarray:
        """Nearest centroid level by level (on the residuals), for items the fit did not see."""
        if self.centroids is None:
            raise TokenizerError("the rqkmeans tokenizer is not fitted yet")
        residual = check_embeddings(item_emb, "item embeddings").copy()
        if residual.shape[1] != self.centroids.shape[2]:
            raise TokenizerError(f"embeddings have dim {residual.shape[1]}, the centroids {self.centroids.shape[2]}")
        codes = []
        for centres in self.centroids:
            # ||r - c||^2 up to the per-row constant ||r||^2
            labels = ((centres ** 2).sum(axis=1)[None, :] - 2.0 * residual @ centres.T).argmin(axis=1)
            codes.append(labels)
            residual = residual - centres[labels]
        return np.stack(codes, axis=1).astype(np.int64)

    def _state(self) -> dict:
        return {"centroids": self.centroids}

    def _load_state(self, state: dict) -> None:
        self.centroids = state["centroids"].numpy()
