"""TIGER's token vocabulary and the tensors the model reads.

Token ids: ``0`` pad, ``1`` BOS (the decoder's start token), ``2`` EOS (reserved: semantic IDs have
a fixed length, so decoding stops after ``L+1`` tokens and no EOS is trained), then one token per
(level, code) for every level including the collision level, then ``user_buckets`` hashed user
tokens (none when ``user_buckets == 0``: the "no user information" ablation).

Encoder input per example: ``[pad ... pad, user, item_1 codes, ..., item_n codes]``, left padded to
the longest history of the batch (dynamic padding); decoder target: the next item's semantic ID.
With ``separators`` (the decoder-only model) each history item is ``[BOS, codes]``, as the item the
model generates next is: one causal sequence then reads the same way at every item.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

PAD, BOS, EOS = 0, 1, 2
N_SPECIAL = 3


def hash_user(user_id: str, buckets: int) -> int:
    """A stable hash bucket of a raw user id (the same across runs, machines and Python versions)."""
    digest = hashlib.md5(str(user_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") % buckets


class SemanticIdVocab:
    def __init__(self, semantic_ids: np.ndarray, codebook_sizes, user_buckets: int = 2000, separators: bool = False):
        sids = np.asarray(semantic_ids, dtype=np.int64)
        if sids.ndim != 2:
            raise ValueError(f"semantic_ids must be 2-D [n_items, levels], got shape {sids.shape}")
        sizes = [int(k) for k in codebook_sizes]
        if len(sizes) != sids.shape[1]:
            raise ValueError(f"{len(sizes)} codebook sizes for {sids.shape[1]} semantic-ID levels")
        if (sids < 0).any() or (sids >= np.asarray(sizes)[None, :]).any():
            raise ValueError("semantic IDs hold codes outside their level's codebook")
        if len(np.unique(sids, axis=0)) != len(sids):
            raise ValueError("semantic IDs are not unique per item (is the collision level missing?)")
        self.semantic_ids = sids
        self.codebook_sizes = sizes
        self.n_items, self.n_levels = sids.shape
        self.level_offsets = (N_SPECIAL + np.concatenate([[0], np.cumsum(sizes)[:-1]])).astype(np.int64)
        self.user_offset = N_SPECIAL + int(sum(sizes))
        self.user_buckets = int(user_buckets)
        self.vocab_size = self.user_offset + self.user_buckets
        tokens = sids + self.level_offsets[None, :]
        # row n_items is all padding, so index -1 (a history pad) maps to pad tokens
        self.item_tokens = torch.from_numpy(np.vstack([tokens, np.full((1, self.n_levels), PAD)]))
        self.separators = bool(separators)
        self.tokens_per_item = self.n_levels + int(self.separators)
        history = np.hstack([np.full((len(tokens), 1), BOS), tokens]) if self.separators else tokens
        self.history_tokens = torch.from_numpy(np.vstack([history, np.full((1, self.tokens_per_item), PAD)]))

    def to(self, device) -> "SemanticIdVocab":
        self.item_tokens = self.item_tokens.to(device)
        self.history_tokens = self.history_tokens.to(device)
        return self

    def user_tokens(self, user_ids) -> np.ndarray:
        if self.user_buckets == 0:
            return np.zeros(len(user_ids), dtype=np.int64)
        return np.array([self.user_offset + hash_user(u, self.user_buckets) for u in user_ids], dtype=np.int64)

    def encoder_inputs(self, items, lengths, user_tokens=None, width: int | None = None) -> torch.Tensor:
        """``items [n, H]`` left-padded with -1, ``lengths [n]`` -> token ids ``[n, W]``, left padded.

        ``W = (user token ? 1 : 0) + tokens_per_item * max(lengths)``: the batch is only as wide as its
        longest history. ``width`` (= ``max(lengths)``, when the caller knows it) saves a device sync.
        """
        device = self.item_tokens.device
        items = torch.as_tensor(items, device=device)
        lengths = torch.as_tensor(lengths, device=device)
        if width is None:
            width = int(lengths.max()) if len(lengths) else 1
        per_item = self.tokens_per_item
        tokens = self.history_tokens[items[:, items.shape[1] - width:]].reshape(len(items), width * per_item)
        if self.user_buckets == 0 or user_tokens is None:
            return tokens
        out = torch.full((len(items), tokens.shape[1] + 1), PAD, dtype=torch.long, device=device)
        out[:, 1:] = tokens
        position = tokens.shape[1] - per_item * lengths  # the column just before the history
        out[torch.arange(len(items), device=device), position] = torch.as_tensor(user_tokens, device=device)
        return out

    def target_tokens(self, items) -> torch.Tensor:
        """Semantic-ID tokens ``[n, levels]`` of items ``[n]``."""
        return self.item_tokens[torch.as_tensor(items, device=self.item_tokens.device)]

    def decoder_inputs(self, targets: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: ``[BOS, t_0, ..., t_{L-1}]`` for targets ``[n, L+1]``."""
        bos = torch.full((len(targets), 1), BOS, dtype=targets.dtype, device=targets.device)
        return torch.cat([bos, targets[:, :-1]], dim=1)

    def describe(self) -> dict:
        return {
            "levels": self.n_levels,
            "codebook_sizes": self.codebook_sizes,
            "vocab_size": self.vocab_size,
            "user_buckets": self.user_buckets,
        }
