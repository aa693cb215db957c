"""Decoding semantic IDs into ranked items: trie-constrained beam search, unconstrained beam search
(for the invalid-ID rate, TIGER Fig. 6), temperature sampling (diversity study, TIGER Table 3),
exhaustive scoring (the reference beam search is checked against), item categories for the
diversity study (its entropy is a metric: ``bench.metrics.category_entropy``).

Everything is batched over users and beams as tensor operations. The trie of valid semantic IDs is a
dense lookup table per level: ``tables[l][node, code]`` is the id of the child prefix node at level
``l+1`` (or, at the last level, the item index), ``-1`` where no item has that prefix. One gather per
step gives every beam's allowed continuations; no Python code runs per beam or per user.

Scores are sequence log-probabilities: per step ``log_softmax`` over the whole vocabulary, then the
level's code tokens are kept (the same scoring as Hugging Face's beam search with
``prefix_allowed_tokens_fn``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recommenders.model import TigerModel
from recommenders.vocab import BOS, SemanticIdVocab


class SemanticIdTrie:
    """Valid semantic-ID prefixes as dense per-level transition tables (on ``device``)."""

    def __init__(self, semantic_ids: np.ndarray, codebook_sizes, device="cpu"):
        sids = np.asarray(semantic_ids, dtype=np.int64)
        self.n_items, self.n_levels = sids.shape
        self.codebook_sizes = [int(k) for k in codebook_sizes]
        node = np.zeros(self.n_items, dtype=np.int64)  # every item starts at the root (node 0 of level 0)
        n_nodes = 1
        tables, self.nodes_per_level = [], []
        for level, size in enumerate(self.codebook_sizes):
            code = sids[:, level]
            table = np.full((n_nodes, size), -1, dtype=np.int64)
            if level == self.n_levels - 1:
                self.item_prefix_node = node.copy()  # each item's node at depth L (its codes without the last level)
                child = np.arange(self.n_items)
                if len(np.unique(node * size + code)) != self.n_items:
                    raise ValueError("semantic IDs are not unique per item")
                n_children = self.n_items
            else:
                keys, child = np.unique(node * size + code, return_inverse=True)
                n_children = len(keys)
            table[node, code] = child
            tables.append(torch.from_numpy(table).to(device))
            self.nodes_per_level.append(n_nodes)
            node, n_nodes = child, n_children
        self.tables = tables
        self.device = torch.device(device)

    def to(self, device) -> "SemanticIdTrie":
        self.tables = [t.to(device) for t in self.tables]
        self.device = torch.device(device)
        return self

    def max_branching(self) -> list[int]:
        return [int((t >= 0).sum(1).max()) for t in self.tables]


@dataclass
class DecodeResult:
    items: torch.Tensor  # [B, n] item indices best first; -1 = no item (dead beam or invalid ID)
    scores: torch.Tensor  # [B, n] sequence log-probabilities (-inf for dead beams)
    valid: torch.Tensor  # [B, n] bool: the generated semantic ID names an item


def _select(cache, index):
    return [(k.index_select(0, index), v.index_select(0, index)) for k, v in cache]


@torch.inference_mode()
def beam_search(
    model: TigerModel,
    vocab: SemanticIdVocab,
    trie: SemanticIdTrie,
    input_ids: torch.Tensor,
    beam_size: int,
    constrained: bool = True,
    levels: int | None = None,
) -> DecodeResult:
    """Beam search over ``L+1`` semantic-ID tokens for each row of ``input_ids [B, S]``
    (``levels``: only the first ``levels`` tokens; then ``items`` holds the trie's prefix nodes at that
    depth, e.g. ``trie.item_prefix_node`` for ``levels = L``).

    Constrained: only prefixes of valid semantic IDs survive, so the ``beam_size`` results are
    distinct items (fewer, -1 padded with score -inf, when the catalogue is smaller). Exact (equal to
    scoring every item) when ``beam_size`` >= the number of items. Unconstrained: each step may pick
    any code of its level; results that name no item have ``valid = False``.
    """
    batch = input_ids.shape[0]
    device = input_ids.device
    cross_kv, key_mask = model.memory(input_ids)
    user_rows = torch.arange(batch, device=device)[:, None]

    tokens = torch.full((batch,), BOS, dtype=torch.long, device=device)
    scores = torch.zeros(batch, 1, device=device)
    node = torch.zeros(batch, 1, dtype=torch.long, device=device)  # -1: not a valid prefix
    caches = None
    n_steps = vocab.n_levels if levels is None else int(levels)
    for level in range(n_steps):
        size = vocab.codebook_sizes[level]
        n_beams = scores.shape[1]
        offset = int(vocab.level_offsets[level])
        logp, caches = model.decode_step(tokens, cross_kv, key_mask, caches, level, (offset, offset + size))
        level_logp = logp.view(batch, n_beams, size)
        child = trie.tables[level][node.clamp(min=0)]  # [B, n, K]
        child = torch.where(node[..., None] >= 0, child, -1)
        candidate = scores[..., None] + level_logp
        if constrained:
            candidate = candidate.masked_fill(child < 0, float("-inf"))
        width = min(beam_size, n_beams * size)
        scores, flat = candidate.view(batch, n_beams * size).topk(width, dim=1)
        parent, code = flat // size, flat % size
        node = child.view(batch, n_beams * size).gather(1, flat)
        if constrained:
            node = node.masked_fill(torch.isinf(scores), -1)
        tokens = (code + offset).view(-1)
        if level + 1 < n_steps:
            caches = _select(caches, (user_rows * n_beams + parent).view(-1))
    valid = node >= 0
    return DecodeResult(items=node, scores=scores, valid=valid)


@torch.inference_mode()
def sample_decode(
    model: TigerModel,
    vocab: SemanticIdVocab,
    trie: SemanticIdTrie,
    input_ids: torch.Tensor,
    n_samples: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> DecodeResult:
    """``n_samples`` semantic IDs per user sampled token by token from ``softmax(log p / T)``, restricted
    to valid prefixes. ``scores`` are the model's (temperature-free) sequence log-probabilities."""
    batch = input_ids.shape[0]
    device = input_ids.device
    cross_kv, key_mask = model.memory(input_ids)
    tokens = torch.full((batch * n_samples,), BOS, dtype=torch.long, device=device)
    node = torch.zeros(batch * n_samples, dtype=torch.long, device=device)
    scores = torch.zeros(batch * n_samples, device=device)
    caches = None
    for level in range(vocab.n_levels):
        size = vocab.codebook_sizes[level]
        offset = int(vocab.level_offsets[level])
        level_logp, caches = model.decode_step(tokens, cross_kv, key_mask, caches, level, (offset, offset + size))
        child = trie.tables[level][node]
        masked = level_logp.masked_fill(child < 0, float("-inf"))
        probs = torch.softmax(masked / temperature, dim=-1)
        code = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        scores = scores + level_logp.gather(1, code[:, None]).squeeze(1)
        node = child.gather(1, code[:, None]).squeeze(1)
        tokens = code + offset
    items = node.view(batch, n_samples)
    return DecodeResult(items=items, scores=scores.view(batch, n_samples), valid=items >= 0)


def distinct_top_k(items: torch.Tensor, scores: torch.Tensor, k: int) -> torch.Tensor:
    """Per row, the distinct non-negative items ordered by score (best first), ``[B, k]`` -1 padded."""
    order = scores.argsort(dim=1, descending=True)
    items = items.gather(1, order)
    sorted_items, perm = items.sort(dim=1, stable=True)
    first = torch.ones_like(sorted_items, dtype=torch.bool)
    first[:, 1:] = sorted_items[:, 1:] != sorted_items[:, :-1]
    keep = torch.zeros_like(first)
    keep.scatter_(1, perm, first)
    keep &= items >= 0
    position = (~keep).to(torch.int8).argsort(dim=1, stable=True)
    out = items.gather(1, position)
    out = out.masked_fill(~keep.gather(1, position), -1)
    if out.shape[1] < k:
        out = torch.cat([out, out.new_full((out.shape[0], k - out.shape[1]), -1)], dim=1)
    return out[:, :k]


@torch.inference_mode()
def exhaustive_scores(model: TigerModel, vocab: SemanticIdVocab, input_ids: torch.Tensor, chunk: int = 4096):
    """Sequence log-probability of every item's semantic ID for each row of ``input_ids``: ``[B, n_items]``.

    Teacher-forced scoring of the whole catalogue: the reference constrained beam search must match.
    """
    device = input_ids.device
    cross_kv, key_mask = model.memory(input_ids)
    targets = vocab.item_tokens[:-1].to(device)  # [n_items, L+1]
    decoder_in = vocab.decoder_inputs(targets)
    out = torch.empty(input_ids.shape[0], vocab.n_items, device=device)
    for user in range(input_ids.shape[0]):
        kv_user = [(k[user:user + 1], v[user:user + 1]) for k, v in cross_kv]
        for start in range(0, vocab.n_items, chunk):
            dec = decoder_in[start:start + chunk]
            n = len(dec)
            hidden, _ = model.decode(dec, kv_user, key_mask[user:user + 1])
            logp = torch.log_softmax(model.logits(hidden).float(), dim=-1)
            out[user, start:start + n] = logp.gather(2, targets[start:start + n, :, None]).squeeze(2).sum(1)
    return out


def invalid_rate(valid: torch.Tensor | np.ndarray, ks=(10, 20)) -> dict[str, float]:
    """Share of generated top-K semantic IDs that name no item, averaged over users and positions."""
    valid = torch.as_tensor(valid)
    result = {}
    for k in ks:
        top = valid[:, :k]
        result[f"invalid_id_rate@{k}"] = float((~top).float().mean()) if top.numel() else 0.0
    return result


def item_categories(dataset, depth: int = 1) -> np.ndarray | None:
    """One integer category per item: ``meta['category']`` where given (synthetic data), else the
    element at ``depth`` of the item's first category path (Amazon: 0 is the store, e.g. 'Beauty'),
    falling back to the deepest element there is; -1 for items without categories."""
    meta = dataset.item_meta
    if not meta:
        return None
    names = []
    for entry in meta:
        if "category" in entry and not isinstance(entry["category"], (list, dict)):
            names.append(str(entry["category"]))
            continue
        paths = entry.get("categories") or []
        path = paths[0] if paths and isinstance(paths[0], (list, tuple)) else paths
        names.append(str(path[min(depth, len(path) - 1)]) if path else None)
    known = sorted({n for n in names if n is not None})
    index = {n: i for i, n in enumerate(known)}
    return np.array([index[n] if n is not None else -1 for n in names], dtype=np.int64)
