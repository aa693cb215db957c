"""TIGER's encoder-decoder: a T5-architecture transformer in plain PyTorch over semantic-ID tokens.

The architecture is T5's (as TIGER used, via T5X): pre-norm blocks with RMS layer norm (no bias,
no mean subtraction), bias-free projections, unscaled dot-product attention whose scale is folded
into the query initialisation, bucketed relative position biases shared by all layers of a stack,
ReLU feed-forward, one token embedding shared by the encoder input, the decoder input and the
output projection (decoder output scaled by ``d_model ** -0.5`` before it), dropout on embeddings,
attention probabilities, residual branches and the final norms.

Because of that, :func:`to_hf_t5` copies the weights into Hugging Face's ``T5ForConditionalGeneration``
and the two compute the same function (checked by ``benchmarks/tiger_vs_hf_t5.py`` and the tests).

Attention runs through ``F.scaled_dot_product_attention`` with the relative bias (+ padding / causal
mask) as an additive float mask (CPU training excepted, see :func:`attention`). The attention width ``num_heads * head_dim`` need not equal
``d_model``. Self-attention projects q, k and v with one fused matrix; cross-attention k and v too.

The encoder skips padding on CPU: token-wise projections and feed-forward layers run on the real
tokens only (attention in the padded layout), which gives the same results for every real token.

Decoding support (used by :mod:`recommenders.decoding`): :meth:`TigerModel.memory` encodes each user
once and precomputes every decoder layer's cross-attention keys/values, and :meth:`TigerModel.decode_step` advances ``n_beams`` hypotheses per user by one token with
a self-attention key/value cache. Beams are folded into the query axis of cross-attention, so the
encoder states are never copied per beam.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.config_schema import Model


@dataclass
class TigerModelConfig:
    vocab_size: int
    d_model: int = 128
    num_heads: int = 6
    head_dim: int = 64
    d_ff: int = 1024
    encoder_layers: int = 4
    decoder_layers: int = 4
    dropout: float = 0.1
    activation: str = "relu"  # relu | gelu
    relative_buckets: int = 32
    relative_max_distance: int = 128
    layer_norm_eps: float = 1e-6
    pad_id: int = 0
    arch: str = "encoder_decoder"  # encoder_decoder (TIGER) | decoder_only (recommenders.decoder_only)

    @classmethod
    def from_config(cls, model_cfg: "Model | dict", vocab_size: int, pad_id: int = 0) -> "TigerModelConfig":
        """From the ``model`` section, typed (a plain dict is checked by the same schema)."""
        m = model_cfg if isinstance(model_cfg, Model) else Model.model_validate(model_cfg)
        return cls(vocab_size=int(vocab_size), d_model=m.d_model, num_heads=m.num_heads, head_dim=m.head_dim,
                   d_ff=m.d_ff, encoder_layers=m.encoder_layers, decoder_layers=m.decoder_layers, dropout=m.dropout,
                   activation=m.activation, relative_buckets=m.relative_buckets,
                   relative_max_distance=m.relative_max_distance, pad_id=int(pad_id), arch=m.arch)

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    """T5's layer norm: scale only, no mean subtraction (the residual stream stays float32 under autocast)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def attention(q, k, v, mask, dropout: float, training: bool) -> torch.Tensor:
    """Unscaled (T5) attention with an additive float mask (relative bias + padding/causal mask).

    ``F.scaled_dot_product_attention`` everywhere except CPU training: with a mask that needs a
    gradient (the learned relative bias) SDPA falls back on CPU to a decomposed path that measured
    about 2x slower than the three explicit ops below, which compute the same function.
    """
    mask = mask.to(q.dtype)
    if training and q.device.type == "cpu" and torch.is_grad_enabled():
        probs = torch.softmax(q @ k.transpose(-1, -2) + mask, dim=-1)
        return F.dropout(probs, dropout, training=True) @ v
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout if training else 0.0, scale=1.0)


def pad_rows(rows: torch.Tensor, index: torch.Tensor, batch: int, length: int) -> torch.Tensor:
    """Real-token rows ``[N, F]`` (flat positions ``index``) -> ``[batch, length, F]`` with zeros at padding."""
    return rows.new_zeros(batch * length, rows.shape[-1]).index_copy(0, index, rows).view(batch, length, -1)


def relative_position_bucket(relative: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int):
    """T5's (Mesh TensorFlow's) bucketing of ``key_position - query_position``."""
    buckets = torch.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative > 0).long() * num_buckets
        relative = relative.abs()
    else:
        relative = -torch.clamp(relative, max=0)
    max_exact = num_buckets // 2
    is_small = relative < max_exact
    large = max_exact + (
        torch.log(relative.float().clamp(min=1) / max_exact)
        / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).long()
    large = torch.clamp(large, max=num_buckets - 1)
    return buckets + torch.where(is_small, relative, large)


class RelativeBias(nn.Module):
    """One learned scalar per (head, distance bucket); shared by all layers of a stack."""

    def __init__(self, num_heads: int, num_buckets: int, max_distance: int, bidirectional: bool):
        super().__init__()
        self.embedding = nn.Embedding(num_buckets, num_heads)
        self.num_buckets, self.max_distance, self.bidirectional = num_buckets, max_distance, bidirectional

    def forward(self, q_len: int, k_len: int, q_offset: int = 0) -> torch.Tensor:
        """``[1, heads, q_len, k_len]`` for queries at positions ``q_offset..q_offset+q_len-1``."""
        device = self.embedding.weight.device
        q_pos = torch.arange(q_offset, q_offset + q_len, device=device)[:, None]
        k_pos = torch.arange(k_len, device=device)[None, :]
        bucket = relative_position_bucket(k_pos - q_pos, self.bidirectional, self.num_buckets, self.max_distance)
        return self.embedding(bucket).permute(2, 0, 1).unsqueeze(0)


class SelfAttention(nn.Module):
    def __init__(self, cfg: TigerModelConfig):
        super().__init__()
        self.h, self.dh = cfg.num_heads, cfg.head_dim
        inner = cfg.num_heads * cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, 3 * inner, bias=False)
        self.o = nn.Linear(inner, cfg.d_model, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x, mask, cache: tuple | None = None):
        """``x [B, T, d]``; ``mask`` additive ``[*, H, T, T_total]``; ``cache`` (k, v) of earlier positions."""
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.h, self.dh).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        out = attention(q, k, v, mask, self.dropout, self.training)
        return self.o(out.transpose(1, 2).reshape(b, t, self.h * self.dh)), (k, v)


class CrossAttention(nn.Module):
    def __init__(self, cfg: TigerModelConfig):
        super().__init__()
        self.h, self.dh = cfg.num_heads, cfg.head_dim
        inner = cfg.num_heads * cfg.head_dim
        self.q = nn.Linear(cfg.d_model, inner, bias=False)
        self.kv = nn.Linear(cfg.d_model, 2 * inner, bias=False)
        self.o = nn.Linear(inner, cfg.d_model, bias=False)
        self.dropout = cfg.dropout

    def project_kv(self, memory: torch.Tensor):
        return self.split_kv(self.kv(memory))

    def split_kv(self, projected: torch.Tensor):
        """``[B, S, 2*H*dh]`` (the ``kv`` projection) -> k, v ``[B, H, S, dh]``."""
        b, s, _ = projected.shape
        k, v = projected.view(b, s, 2, self.h, self.dh).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(self, x, kv, mask):
        """``x [B*n, T, d]`` (n hypotheses per user), ``kv`` per user ``[B, H, S, dh]``, ``mask [B, 1, 1, S]``.

        The n hypotheses of a user are folded into the query axis, so keys/values are not copied.
        """
        k, v = kv
        bn, t, _ = x.shape
        b = k.shape[0]
        n = bn // b
        q = self.q(x).view(b, n * t, self.h, self.dh).transpose(1, 2)
        out = attention(q, k, v, mask, self.dropout, self.training)
        return self.o(out.transpose(1, 2).reshape(bn, t, self.h * self.dh))


class FeedForward(nn.Module):
    def __init__(self, cfg: TigerModelConfig):
        super().__init__()
        self.wi = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.wo = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.act = {"relu": F.relu, "gelu": F.gelu}[cfg.activation]

    def forward(self, x):
        return self.wo(self.drop(self.act(self.wi(x))))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: TigerModelConfig):
        super().__init__()
        self.norm1 = RMSNorm(cfg.d_model, cfg.layer_norm_eps)
        self.attn = SelfAttention(cfg)
        self.norm2 = RMSNorm(cfg.d_model, cfg.layer_norm_eps)
        self.ff = FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, mask):
        x = x + self.drop(self.attn(self.norm1(x), mask)[0])
        return x + self.drop(self.ff(self.norm2(x)))

    def forward_unpadded(self, x, mask, index, batch: int, length: int):
        """The same layer on the real tokens only: ``x [N, d]`` are rows ``index`` of the ``[batch*length]``
        padded layout. Token-wise projections and the feed-forward skip the padding; attention runs
        in the padded layout (pad rows are zeros there and masked as keys)."""
        attn = self.attn
        inner = attn.h * attn.dh
        qkv = attn.qkv(self.norm1(x))
        q, k, v = pad_rows(qkv, index, batch, length).view(batch, length, 3, attn.h, attn.dh).permute(2, 0, 3, 1, 4)
        out = attention(q, k, v, mask, attn.dropout, attn.training)
        out = out.transpose(1, 2).reshape(batch * length, inner).index_select(0, index)
        x = x + self.drop(attn.o(out))
        return x + self.drop(self.ff(self.norm2(x)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TigerModelConfig):
        super().__init__()
        self.norm1 = RMSNorm(cfg.d_model, cfg.layer_norm_eps)
        self.self_attn = SelfAttention(cfg)
        self.norm2 = RMSNorm(cfg.d_model, cfg.layer_norm_eps)
        self.cross_attn = CrossAttention(cfg)
        self.norm3 = RMSNorm(cfg.d_model, cfg.layer_norm_eps)
        self.ff = FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, self_mask, cross_kv, cross_mask, cache=None):
        attn, new_cache = self.self_attn(self.norm1(x), self_mask, cache)
        x = x + self.drop(attn)
        x = x + self.drop(self.cross_attn(self.norm2(x), cross_kv, cross_mask))
        return x + self.drop(self.ff(self.norm3(x))), new_cache


class TigerModel(nn.Module):
    def __init__(self, cfg: TigerModelConfig):
        super().__init__()
        self.cfg = cfg
        self.shared = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.enc_bias = RelativeBias(cfg.num_heads, cfg.relative_buckets, cfg.relative_max_distance, True)
        self.dec_bias = RelativeBias(cfg.num_heads, cfg.relative_buckets, cfg.relative_max_distance, False)
        self.enc_norm = RMSNorm(cfg.d_model, cfg.layer_norm_eps)
        self.dec_norm = RMSNorm(cfg.d_model, cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.unpad = "auto"  # auto | always | never: run the encoder on real tokens only (see _unpad_index)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """T5's initialisation (it replaces the 1/sqrt(head_dim) attention scale)."""
        cfg = self.cfg
        d, dh, h = cfg.d_model, cfg.head_dim, cfg.num_heads
        nn.init.normal_(self.shared.weight, std=1.0)
        for bias in (self.enc_bias, self.dec_bias):
            nn.init.normal_(bias.embedding.weight, std=d**-0.5)
        for module in self.modules():
            if isinstance(module, SelfAttention):
                inner = h * dh
                nn.init.normal_(module.qkv.weight[:inner], std=(d * dh) ** -0.5)
                nn.init.normal_(module.qkv.weight[inner:], std=d**-0.5)
                nn.init.normal_(module.o.weight, std=(h * dh) ** -0.5)
            elif isinstance(module, CrossAttention):
                nn.init.normal_(module.q.weight, std=(d * dh) ** -0.5)
                nn.init.normal_(module.kv.weight, std=d**-0.5)
                nn.init.normal_(module.o.weight, std=(h * dh) ** -0.5)
            elif isinstance(module, FeedForward):
                nn.init.normal_(module.wi.weight, std=d**-0.5)
                nn.init.normal_(module.wo.weight, std=cfg.d_ff**-0.5)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --- encoder -------------------------------------------------------------------------------
    def padding_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Additive ``[B, 1, 1, S]``: 0 for tokens, -inf for padding."""
        pad = (input_ids == self.cfg.pad_id)[:, None, None, :]
        return torch.zeros(pad.shape, device=input_ids.device).masked_fill(pad, float("-inf"))

    def _unpad_index(self, input_ids: torch.Tensor):
        """Flat indices of the real tokens, or None to run padded (no padding, or unpadding is off).

        ``unpad``: ``auto`` (default) unpads on CPU, where the skipped padding is saved compute; on GPUs
        the index needs a host sync per batch, which costs more than the padding there.
        """
        policy = self.unpad
        if policy == "never" or (policy == "auto" and input_ids.device.type != "cpu"):
            return None
        real = (input_ids != self.cfg.pad_id).view(-1)
        if bool(real.all()):
            return None
        return real.nonzero().squeeze(1)

    def _encode(self, input_ids: torch.Tensor):
        """(final encoder states, additive key mask ``[B, 1, 1, S]``, real-token index or None).

        States are ``[B, S, d]`` when the index is None, else ``[N, d]`` for the real tokens only.
        """
        b, s = input_ids.shape
        key_mask = self.padding_mask(input_ids)
        mask = self.enc_bias(s, s) + key_mask
        index = self._unpad_index(input_ids)
        if index is None:
            x = self.drop(self.shared(input_ids))
            for layer in self.encoder:
                x = layer(x, mask)
        else:
            x = self.drop(self.shared(input_ids.view(-1).index_select(0, index)))
            for layer in self.encoder:
                x = layer.forward_unpadded(x, mask, index, b, s)
        return self.drop(self.enc_norm(x)), key_mask, index

    def encode(self, input_ids: torch.Tensor):
        """``input_ids [B, S]`` (pad = ``cfg.pad_id``) -> (states ``[B, S, d]``, additive key mask ``[B, 1, 1, S]``).

        States at padding positions are not meaningful (zeros when the encoder ran unpadded).
        """
        x, key_mask, index = self._encode(input_ids)
        if index is not None:
            x = pad_rows(x, index, *input_ids.shape)
        return x, key_mask

    def cross_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [layer.cross_attn.project_kv(memory) for layer in self.decoder]

    def memory(self, input_ids: torch.Tensor):
        """Encode and project every decoder layer's cross-attention keys/values once:
        (per layer (k, v) ``[B, H, S, dh]``, additive key mask ``[B, 1, 1, S]``)."""
        x, key_mask, index = self._encode(input_ids)
        if index is None:
            return self.cross_kv(x), key_mask
        b, s = input_ids.shape  # project the real tokens only, then lay them out padded
        return [layer.cross_attn.split_kv(pad_rows(layer.cross_attn.kv(x), index, b, s)) for layer in self.decoder], key_mask

    # --- decoder -------------------------------------------------------------------------------
    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return (hidden * self.cfg.d_model**-0.5) @ self.shared.weight.t()

    def decode(self, decoder_ids, cross_kv, cross_mask, caches=None, offset: int = 0):
        """Decoder over ``decoder_ids [B*n, T]`` at positions ``offset..offset+T-1``.

        ``cross_kv`` / ``cross_mask`` are per user (``B`` rows); ``n`` hypotheses per user share them.
        ``caches``: per layer (k, v) of positions ``0..offset-1``. Returns (hidden ``[B*n, T, d]``, caches).
        """
        t = decoder_ids.shape[1]
        total = offset + t
        mask = self.dec_bias(t, total, q_offset=offset)
        if t > 1:
            q_pos = torch.arange(offset, total, device=decoder_ids.device)[:, None]
            k_pos = torch.arange(total, device=decoder_ids.device)[None, :]
            mask = mask.masked_fill(k_pos > q_pos, float("-inf"))
        x = self.drop(self.shared(decoder_ids))
        new_caches = []
        for i, layer in enumerate(self.decoder):
            x, cache = layer(x, mask, cross_kv[i], cross_mask, None if caches is None else caches[i])
            new_caches.append(cache)
        return self.drop(self.dec_norm(x)), new_caches

    def forward(self, input_ids: torch.Tensor, decoder_ids: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``[B, T, vocab]`` for encoder ``input_ids`` and decoder inputs ``decoder_ids``."""
        cross_kv, key_mask = self.memory(input_ids)
        hidden, _ = self.decode(decoder_ids, cross_kv, key_mask)
        return self.logits(hidden)

    def decode_step(self, tokens, cross_kv, cross_mask, caches, offset: int, token_range: tuple[int, int] | None = None):
        """One token per hypothesis: ``tokens [B*n]`` at position ``offset`` -> (log-probs, caches).

        Log-probabilities are float32 over the whole vocabulary ``[B*n, vocab]``, or, with
        ``token_range = (lo, hi)``, only those of tokens ``lo..hi-1`` (still normalised over the whole
        vocabulary, without writing out the rest).
        """
        hidden, caches = self.decode(tokens[:, None], cross_kv, cross_mask, caches, offset)
        logits = self.logits(hidden[:, -1]).float()
        if token_range is None:
            return torch.log_softmax(logits, dim=-1), caches
        return logits[:, token_range[0]:token_range[1]] - torch.logsumexp(logits, dim=-1, keepdim=True), caches


def to_hf_t5(model: TigerModel, pad_id: int, eos_id: int, decoder_start_id: int, attn_implementation: str | None = None):
    """A ``transformers.T5ForConditionalGeneration`` computing the same function (weights copied).

    ``attn_implementation``: transformers' attention backend (``sdpa``, ``eager``; None = its default).
    """
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = model.cfg
    t5_cfg = T5Config(
        vocab_size=cfg.vocab_size, d_model=cfg.d_model, d_kv=cfg.head_dim, d_ff=cfg.d_ff,
        num_layers=cfg.encoder_layers, num_decoder_layers=cfg.decoder_layers, num_heads=cfg.num_heads,
        relative_attention_num_buckets=cfg.relative_buckets, relative_attention_max_distance=cfg.relative_max_distance,
        dropout_rate=cfg.dropout, layer_norm_epsilon=cfg.layer_norm_eps, feed_forward_proj=cfg.activation,
        pad_token_id=pad_id, eos_token_id=eos_id, decoder_start_token_id=decoder_start_id,
        is_encoder_decoder=True, use_cache=True, attn_implementation=attn_implementation,
    )
    t5 = T5ForConditionalGeneration(t5_cfg)
    if not getattr(t5.config, "scale_decoder_outputs", True):  # pragma: no cover - older transformers differ
        raise RuntimeError("this transformers version's T5 does not scale tied decoder outputs")
    inner = cfg.num_heads * cfg.head_dim
    state = {"shared.weight": model.shared.weight}
    for prefix, layers, bias in (("encoder", model.encoder, model.enc_bias), ("decoder", model.decoder, model.dec_bias)):
        state[f"{prefix}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = bias.embedding.weight
        state[f"{prefix}.final_layer_norm.weight"] = (model.enc_norm if prefix == "encoder" else model.dec_norm).weight
        for i, layer in enumerate(layers):
            block = f"{prefix}.block.{i}.layer"
            attn = layer.attn if prefix == "encoder" else layer.self_attn
            q, k, v = attn.qkv.weight.split(inner, dim=0)
            state.update({
                f"{block}.0.SelfAttention.q.weight": q, f"{block}.0.SelfAttention.k.weight": k,
                f"{block}.0.SelfAttention.v.weight": v, f"{block}.0.SelfAttention.o.weight": attn.o.weight,
                f"{block}.0.layer_norm.weight": layer.norm1.weight,
            })
            ff_index = 1
            if prefix == "decoder":
                ck, cv = layer.cross_attn.kv.weight.split(inner, dim=0)
                state.update({
                    f"{block}.1.EncDecAttention.q.weight": layer.cross_attn.q.weight,
                    f"{block}.1.EncDecAttention.k.weight": ck, f"{block}.1.EncDecAttention.v.weight": cv,
                    f"{block}.1.EncDecAttention.o.weight": layer.cross_attn.o.weight,
                    f"{block}.1.layer_norm.weight": layer.norm2.weight,
                })
                ff_index = 2
            norm = layer.norm2 if prefix == "encoder" else layer.norm3
            state.update({
                f"{block}.{ff_index}.DenseReluDense.wi.weight": layer.ff.wi.weight,
                f"{block}.{ff_index}.DenseReluDense.wo.weight": layer.ff.wo.weight,
                f"{block}.{ff_index}.layer_norm.weight": norm.weight,
            })
    own = t5.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(("embed_tokens.weight", "lm_head.weight"))]
    if missing:
        raise RuntimeError(f"T5 conversion left weights unset: {missing[:5]}")
    with torch.no_grad():
        for key, value in state.items():
            own[key].copy_(value.detach().to(own[key].dtype))
    t5.tie_weights()
    return t5.to(model.shared.weight.device)
