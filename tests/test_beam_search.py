"""Decoding: trie-constrained beam search is exact where it must be, returns valid distinct items;
unconstrained decoding's invalid-ID rate; sampling; category entropy; equivalence with HF T5."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from bench.metrics import ENTROPY_UNIT, category_entropy
from recommenders.decoding import (
    SemanticIdTrie,
    beam_search,
    distinct_top_k,
    exhaustive_scores,
    invalid_rate,
    sample_decode,
)
from recommenders.model import TigerModel, TigerModelConfig
from recommenders.vocab import BOS, EOS, PAD, SemanticIdVocab

SIZES = [4, 3, 3, 2]  # three code levels + a collision level


pytestmark = pytest.mark.usefixtures("one_thread")


def random_ids(n_items: int, sizes=SIZES, seed: int = 0) -> np.ndarray:
    """``n_items`` distinct tuples drawn from the full product space of ``sizes``."""
    space = np.array(list(itertools.product(*[range(k) for k in sizes])))
    rng = np.random.default_rng(seed)
    return space[rng.choice(len(space), n_items, replace=False)]


def tiny_model(vocab: SemanticIdVocab, seed: int = 0) -> TigerModel:
    torch.manual_seed(seed)
    cfg = TigerModelConfig(vocab_size=vocab.vocab_size, d_model=16, num_heads=2, head_dim=8, d_ff=32,
                           encoder_layers=2, decoder_layers=2, dropout=0.0)
    model = TigerModel(cfg).eval()
    with torch.no_grad():  # sharper distributions than the init, so scores are far from ties
        model.shared.weight.mul_(3.0)
    return model


def histories(vocab: SemanticIdVocab, n_users: int = 6, seed: int = 1) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    items = np.full((n_users, 5), -1)
    lengths = rng.integers(1, 6, n_users)
    for u, n in enumerate(lengths):
        items[u, 5 - n:] = rng.integers(0, vocab.n_items, n)
    users = vocab.user_tokens([f"user{u}" for u in range(n_users)])
    return vocab.encoder_inputs(items, lengths, users)


@pytest.fixture(scope="module")
def setup():
    sids = random_ids(40)
    vocab = SemanticIdVocab(sids, SIZES, user_buckets=7)
    return sids, vocab, SemanticIdTrie(sids, SIZES), tiny_model(vocab), histories(vocab)


def test_trie_tables_lead_every_semantic_id_to_its_item(setup):
    sids, vocab, trie, _, _ = setup
    for item, sid in enumerate(sids):
        node = 0
        for level, code in enumerate(sid):
            node = int(trie.tables[level][node, code])
            assert node >= 0
        assert node == item
    # a prefix no item has is absent
    used = {tuple(s[:1]) for s in sids}
    missing = [c for c in range(SIZES[0]) if (c,) not in used]
    for code in missing:
        assert int(trie.tables[0][0, code]) == -1


def test_beam_search_is_exact_when_the_beam_holds_every_item(setup):
    sids, vocab, trie, model, input_ids = setup
    result = beam_search(model, vocab, trie, input_ids, beam_size=len(sids), constrained=True)
    exhaustive = exhaustive_scores(model, vocab, input_ids)
    expected_scores, expected_items = exhaustive.sort(dim=1, descending=True)
    assert torch.equal(result.items, expected_items)
    assert torch.allclose(result.scores, expected_scores, atol=1e-4)
    # scores are sequence log-probabilities: the exp of all of them sums to at most one
    assert (torch.logsumexp(exhaustive, dim=1) <= 1e-5).all()


@pytest.mark.parametrize("beam", [1, 5, 20])
def test_beam_search_returns_valid_distinct_items_best_first(setup, beam):
    sids, vocab, trie, model, input_ids = setup
    result = beam_search(model, vocab, trie, input_ids, beam_size=beam)
    assert result.items.shape == (input_ids.shape[0], beam)
    assert result.valid.all()
    items = result.items.numpy()
    assert ((items >= 0) & (items < len(sids))).all()
    assert all(len(set(row)) == len(row) for row in items)
    assert (result.scores[:, :-1] >= result.scores[:, 1:]).all()
    # each returned score is the item's true sequence log-probability
    exhaustive = exhaustive_scores(model, vocab, input_ids)
    assert torch.allclose(result.scores, exhaustive.gather(1, result.items), atol=1e-4)
    # the best beam of width 1 is greedy decoding; every width finds at least the greedy score
    assert (result.scores[:, 0] >= exhaustive.gather(1, beam_search(model, vocab, trie, input_ids, 1).items)[:, 0] - 1e-5).all()


def test_beam_wider_than_the_catalogue_pads_with_minus_one():
    sids = random_ids(5)
    vocab = SemanticIdVocab(sids, SIZES, user_buckets=0)
    trie = SemanticIdTrie(sids, SIZES)
    model = tiny_model(vocab)
    input_ids = histories(vocab, n_users=3)
    result = beam_search(model, vocab, trie, input_ids, beam_size=12)
    items = result.items.numpy()
    for row in items:
        assert sorted(row[:5]) == list(range(5))
        assert (row[5:] == -1).all()
    assert torch.isinf(result.scores[:, 5:]).all()
    assert not result.valid[:, 5:].any()


def test_unconstrained_beam_search_and_its_invalid_rate(setup):
    """Unconstrained decoding with a beam over the whole code space is exhaustive over all tuples."""
    sids, vocab, trie, model, input_ids = setup
    space = np.array(list(itertools.product(*[range(k) for k in SIZES])))
    full_vocab = SemanticIdVocab(space, SIZES, user_buckets=7)  # same token layout, every tuple an "item"
    scores = exhaustive_scores(model, full_vocab, input_ids)
    order = scores.argsort(dim=1, descending=True)
    known = {tuple(s) for s in sids}
    expected_valid = torch.tensor([[tuple(space[j]) in known for j in row] for row in order.numpy()])

    result = beam_search(model, vocab, trie, input_ids, beam_size=len(space), constrained=False)
    assert torch.equal(result.valid, expected_valid)
    item_of = {tuple(s): i for i, s in enumerate(sids)}
    for row_items, row_order in zip(result.items.numpy(), order.numpy()):
        for item, j in zip(row_items, row_order):
            assert item == item_of.get(tuple(space[j]), -1)
    rates = invalid_rate(result.valid, ks=(5, 20))
    for k in (5, 20):
        assert rates[f"invalid_id_rate@{k}"] == pytest.approx(float((~expected_valid[:, :k]).float().mean()))
    # a narrower unconstrained beam: its results are a valid beam search too (scores descending)
    narrow = beam_search(model, vocab, trie, input_ids, beam_size=10, constrained=False)
    assert (narrow.scores[:, :-1] >= narrow.scores[:, 1:]).all()
    assert torch.equal(narrow.valid, narrow.items >= 0)


def test_invalid_rate_by_hand():
    valid = torch.tensor([[True, False, True, False], [True, True, True, False]])
    rates = invalid_rate(valid, ks=(2, 4))
    assert rates == {"invalid_id_rate@2": 0.25, "invalid_id_rate@4": 0.375}


def test_sampling_returns_valid_items_and_is_greedy_at_low_temperature(setup):
    sids, vocab, trie, model, input_ids = setup
    generator = torch.Generator().manual_seed(0)
    sampled = sample_decode(model, vocab, trie, input_ids, n_samples=30, temperature=2.0, generator=generator)
    assert sampled.valid.all() and ((sampled.items >= 0) & (sampled.items < len(sids))).all()
    exhaustive = exhaustive_scores(model, vocab, input_ids)
    assert torch.allclose(sampled.scores, exhaustive.gather(1, sampled.items), atol=1e-4)
    cold = sample_decode(model, vocab, trie, input_ids, n_samples=3, temperature=1e-4, generator=generator)
    greedy = beam_search(model, vocab, trie, input_ids, beam_size=1).items
    assert torch.equal(cold.items, greedy.expand(-1, 3))
    # hotter sampling spreads over more distinct items
    hot = sample_decode(model, vocab, trie, input_ids, n_samples=30, temperature=5.0, generator=generator)
    distinct = lambda r: np.mean([len(set(row)) for row in r.items.numpy()])  # noqa: E731
    assert distinct(hot) >= distinct(cold)


def test_distinct_top_k_orders_by_score_and_drops_repeats():
    items = torch.tensor([[3, 1, 3, 2, -1], [4, 4, 4, 4, 4]])
    scores = torch.tensor([[-1.0, -0.5, -0.1, -3.0, 0.0], [-1.0, -2.0, -3.0, -4.0, -5.0]])
    out = distinct_top_k(items, scores, 4)
    assert out.tolist() == [[3, 1, 2, -1], [4, -1, -1, -1]]


def test_category_entropy_by_hand():
    category = np.array([0, 0, 1, 2])
    rankings = np.array([[0, 1, -1], [0, 2, 3], [5, -1, -1]])  # item 5 is outside the catalogue
    value = category_entropy(rankings, category, k=3)
    # user 0: one category -> 0; user 1: three categories -> ln 3; user 2: nothing valid -> skipped
    assert value == pytest.approx(math.log(3) / 2)
    assert category_entropy(rankings, category, k=1) == 0.0


def test_category_entropy_is_in_the_unit_tables_name():
    """Four categories, one item each: log(4) in the unit the tables print (Table 3 once said bits of nats)."""
    base = {"nats": math.e, "bits": 2.0}[ENTROPY_UNIT]
    value = category_entropy(np.array([[0, 1, 2, 3]]), np.arange(4), k=4)
    assert value == pytest.approx(math.log(4, base))


def test_same_function_and_same_top_k_as_hugging_face_t5(setup):
    """Our model converted to transformers' T5: same logits, and HF's constrained beam search
    (``prefix_allowed_tokens_fn`` over the same trie) returns the same ranked items."""
    pytest.importorskip("transformers")
    from recommenders.hf_reference import hf_constrained_generate
    from recommenders.model import to_hf_t5

    sids, vocab, trie, model, input_ids = setup
    t5 = to_hf_t5(model, PAD, EOS, BOS).eval()
    targets = vocab.target_tokens(np.arange(len(input_ids)))
    decoder_ids = vocab.decoder_inputs(targets)
    with torch.no_grad():
        ours = model(input_ids, decoder_ids)
        theirs = t5(input_ids=input_ids, attention_mask=(input_ids != PAD).long(), decoder_input_ids=decoder_ids).logits
    assert torch.allclose(ours, theirs, atol=1e-4)
    beam = 8
    hf_items = hf_constrained_generate(t5, vocab, input_ids, beam)
    our_items = beam_search(model, vocab, trie, input_ids, beam).items
    assert torch.equal(hf_items, our_items)
