"""Decoder-only generative retrieval (GRID's second architecture): one causal transformer reads the
user token and the history's semantic-ID tokens and continues with the next item's codes.

Sequence (``SemanticIdVocab(separators=True)``): ``[pad.., user, BOS, item_1 codes, BOS, item_2
codes, ..., BOS, item_n codes]`` then ``[BOS, next item codes]``: every item, in the history or
generated, reads the same way, so one causal pass over a user's sequence predicts every item from
its prefix (``train.loss_positions: all``), exactly as if each prefix were its own example.

Same parts as TIGER's encoder-decoder (``recommenders.model``: T5 layers, RMSNorm, unidirectional
relative position bias shared by the layers, tied input/output embedding) with
``encoder_layers + decoder_layers`` causal layers, and the interface beam search and exhaustive
scoring use: ``memory`` runs the history once and keeps its keys/values per user, ``decode`` /
``decode_step`` run generated tokens against them (the ``n`` hypotheses of a user share one copy of
the history; their attention is split into history and own-token parts, then normalised jointly).
"""
from __future__ import annotations

import torch
from torch import nn

from recommenders.model import EncoderLayer, RelativeBias, RMSNorm, TigerModel, TigerModelConfig
from recommenders.vocab import N_SPECIAL


class CausalLayer(EncoderLayer):
    """The encoder layer's parts (pre-norm self-attention + feed-forward) under a causal mask;
    ``forward`` also returns its keys/values, ``step`` runs new tokens against a cached history."""

    def forward(self, x, mask):
        attn, kv = self.attn(self.norm1(x), mask)
        x = x + self.drop(attn)
        return x + self.drop(self.ff(self.norm2(x))), kv

    def step(self, x, history_kv, history_mask, own_cache, own_mask):
        """``x [R, t, d]`` (R = B users x n hypotheses) against the user's history keys/values
        ``[B, H, S, dh]`` and the hypothesis's own earlier tokens."""
        attn = self.attn
        r, t, _ = x.shape
        q, k, v = attn.qkv(self.norm1(x)).view(r, t, 3, attn.h, attn.dh).permute(2, 0, 3, 1, 4)
        if own_cache is not None:
            k, v = torch.cat([own_cache[0], k], dim=2), torch.cat([own_cache[1], v], dim=2)
        out = split_attention(q, history_kv, history_mask, (k, v), own_mask)
        x = x + self.drop(attn.o(out.transpose(1, 2).reshape(r, t, attn.h * attn.dh)))
        return x + self.drop(self.ff(self.norm2(x))), (k, v)


def split_attention(q, history_kv, history_mask, own_kv, own_mask) -> torch.Tensor:
    """Unscaled attention of ``q [R, H, t, dh]`` over a shared history (``[B, H, S, dh]``, R = B*n,
    rows grouped by user) and each row's own keys ``[R, H, T, dh]``, softmax over both together.
    ``history_mask [B, H or 1, t, S]`` and ``own_mask [1, H, t, T]`` are additive."""
    hk, hv = history_kv
    b, h, s, dh = hk.shape
    r, _, t, _ = q.shape
    n = r // b
    grouped = q.view(b, n, h, t, dh).transpose(1, 2).reshape(b, h, n * t, dh)
    history = (grouped @ hk.transpose(-1, -2)).view(b, h, n, t, s) + history_mask.float()[:, :, None]
    history = history.transpose(1, 2).reshape(r, h, t, s)
    own = q @ own_kv[0].transpose(-1, -2) + own_mask.float()
    probs = torch.softmax(torch.cat([history, own.to(history.dtype)], dim=-1), dim=-1).to(q.dtype)
    p_history, p_own = probs.split([s, own.shape[-1]], dim=-1)
    p_history = p_history.view(b, n, h, t, s).transpose(1, 2).reshape(b, h, n * t, s)
    out = (p_history @ hv).view(b, h, n, t, dh).transpose(1, 2).reshape(r, h, t, dh)
    return out + p_own @ own_kv[1]


class DecoderOnlyModel(nn.Module):
    """Causal transformer over the semantic-ID token stream (see the module docstring)."""

    def __init__(self, cfg: TigerModelConfig):
        super().__init__()
        self.cfg = cfg
        self.shared = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(CausalLayer(cfg) for _ in range(cfg.encoder_layers + cfg.decoder_layers))
        self.bias = RelativeBias(cfg.num_heads, cfg.relative_buckets, cfg.relative_max_distance, False)
        self.norm = RMSNorm(cfg.d_model, cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.reset_parameters()

    reset_parameters = TigerModel.reset_parameters  # T5's initialisation, module by module
    num_parameters = TigerModel.num_parameters
    logits = TigerModel.logits

    @property
    def enc_bias(self):  # reset_parameters initialises every relative bias it finds under these names
        return self.bias

    @property
    def dec_bias(self):
        return self.bias

    def _mask(self, input_ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Additive ``[B, H, T, T]``: relative bias, causal, padding keys masked (a padding query
        attends to itself only, so no row is all -inf)."""
        t = input_ids.shape[1]
        positions = torch.arange(t, device=input_ids.device)
        mask = self.bias(t, t, q_offset=offset).expand(input_ids.shape[0], -1, -1, -1)
        blocked = (positions[None, :] > positions[:, None])[None] | (input_ids == self.cfg.pad_id)[:, None, :]
        blocked = blocked & ~torch.eye(t, dtype=torch.bool, device=input_ids.device)[None]
        return mask.masked_fill(blocked[:, None], float("-inf"))

    def hidden(self, input_ids: torch.Tensor):
        """Final states ``[B, T, d]`` of a left-padded token sequence, and each layer's keys/values."""
        mask = self._mask(input_ids)
        x = self.drop(self.shared(input_ids))
        kvs = []
        for layer in self.layers:
            x, kv = layer(x, mask)
            kvs.append(kv)
        return self.drop(self.norm(x)), kvs

    def forward(self, input_ids: torch.Tensor, decoder_ids: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``[B, T, vocab]`` of the next item's tokens: the history
        ``input_ids [B, S]`` followed by ``decoder_ids [B, T]`` (``BOS`` + the codes) in one sequence."""
        hidden, _ = self.hidden(torch.cat([input_ids, decoder_ids], dim=1))
        return self.logits(hidden[:, input_ids.shape[1]:])

    def all_positions(self, input_ids: torch.Tensor, decoder_ids: torch.Tensor, targets: torch.Tensor,
                      code_end: int):
        """``(logits [N, vocab], labels [N])`` at every position whose next token is a code of an item
        after the sequence's first (``train.loss_positions: all``): each history item and the target
        predicted from its prefix in one pass. ``code_end``: the first token id after the codes
        (``SemanticIdVocab.user_offset``)."""
        sequence = torch.cat([input_ids, decoder_ids], dim=1)
        hidden, _ = self.hidden(sequence)
        labels = torch.cat([sequence[:, 1:], targets[:, -1:]], dim=1)
        is_code = (labels >= N_SPECIAL) & (labels < code_end)
        levels = targets.shape[1]  # codes per item: the first item's are predicted from no item
        keep = is_code & (is_code.long().cumsum(dim=1) > levels)
        return self.logits(hidden[keep]), labels[keep]

    # --- the interface beam search and exhaustive scoring use ---------------------------------
    def memory(self, input_ids: torch.Tensor):
        """Run the history once: (per layer (k, v) ``[B, H, S, dh]``, additive key mask ``[B, 1, 1, S]``)."""
        _, kvs = self.hidden(input_ids)
        pad = (input_ids == self.cfg.pad_id)[:, None, None, :]
        return kvs, torch.zeros(pad.shape, device=input_ids.device).masked_fill(pad, float("-inf"))

    def decode(self, decoder_ids, cross_kv, cross_mask, caches=None, offset: int = 0):
        """Generated tokens ``decoder_ids [B*n, T]`` at positions ``S+offset..``: (hidden ``[B*n, T, d]``,
        per layer (k, v) of the generated tokens so far)."""
        t = decoder_ids.shape[1]
        s = cross_mask.shape[-1]
        total = offset + t
        history_mask = self.bias(t, s + total, q_offset=s + offset)[..., :s] + cross_mask
        own_mask = self.bias(t, s + total, q_offset=s + offset)[..., s:]
        if t > 1:
            q_pos = torch.arange(offset, total, device=decoder_ids.device)[:, None]
            k_pos = torch.arange(total, device=decoder_ids.device)[None, :]
            own_mask = own_mask.masked_fill(k_pos > q_pos, float("-inf"))
        x = self.drop(self.shared(decoder_ids))
        new_caches = []
        for i, layer in enumerate(self.layers):
            x, cache = layer.step(x, cross_kv[i], history_mask, None if caches is None else caches[i], own_mask)
            new_caches.append(cache)
        return self.drop(self.norm(x)), new_caches

    decode_step = TigerModel.decode_step

