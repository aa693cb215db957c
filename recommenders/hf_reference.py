"""Hugging Face T5 as a reference for our TIGER model: HF's constrained beam search on the weights
copied into ``T5ForConditionalGeneration`` (``recommenders.model.to_hf_t5``). The tests check our
beam search against it; ``benchmarks/tiger_vs_hf_t5.py`` times the two."""
from __future__ import annotations

import torch

from recommenders.vocab import BOS, EOS, PAD, SemanticIdVocab


def prefix_table(vocab: SemanticIdVocab) -> dict[tuple, list[int]]:
    """The trie as HF wants it: generated-token prefix -> allowed next tokens."""
    tokens = vocab.item_tokens[:-1].cpu().numpy()
    table: dict[tuple, set] = {}
    for row in tokens:
        for level in range(len(row)):
            table.setdefault(tuple(row[:level].tolist()), set()).add(int(row[level]))
    return {prefix: sorted(allowed) for prefix, allowed in table.items()}


def hf_constrained_generate(t5, vocab: SemanticIdVocab, input_ids: torch.Tensor, beam: int, table=None) -> torch.Tensor:
    """Items ``[B, beam]`` (best first) from HF beam search constrained by ``prefix_allowed_tokens_fn``."""
    table = table if table is not None else prefix_table(vocab)
    item_of = {tuple(row.tolist()): i for i, row in enumerate(vocab.item_tokens[:-1].cpu().numpy())}
    fallback = [PAD]  # a dead beam (prefix of no item) may only continue with pad; its score is -inf

    def allowed(batch_id: int, sent: torch.Tensor) -> list[int]:
        return table.get(tuple(sent[1:].tolist()), fallback)

    with torch.no_grad():
        out = t5.generate(
            input_ids=input_ids, attention_mask=(input_ids != PAD).long(), num_beams=beam,
            num_return_sequences=beam, max_new_tokens=vocab.n_levels, min_new_tokens=vocab.n_levels,
            do_sample=False, length_penalty=0.0, early_stopping=False, prefix_allowed_tokens_fn=allowed,
            decoder_start_token_id=BOS, pad_token_id=PAD, eos_token_id=EOS, use_cache=True,
        )
    generated = out[:, 1:1 + vocab.n_levels].cpu().numpy()
    items = [item_of.get(tuple(row.tolist()), -1) for row in generated]
    return torch.tensor(items, dtype=torch.long).view(input_ids.shape[0], beam)
