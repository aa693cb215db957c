"""The decoder-only generative recommender: its loss on all positions is the per-prefix losses of one
causal pass, its cached decoding computes what its teacher-forced pass does, its beam search equals
exhaustive scoring, and it runs end to end through `bench run`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.cli import main
from bench.config import ConfigError, resolve_config
from recommenders.decoder_only import DecoderOnlyModel
from recommenders.decoding import SemanticIdTrie, beam_search, exhaustive_scores
from recommenders.model import TigerModelConfig
from recommenders.vocab import SemanticIdVocab
from tests.test_beam_search import SIZES, random_ids

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(vocab: SemanticIdVocab, seed: int = 0) -> DecoderOnlyModel:
    torch.manual_seed(seed)
    cfg = TigerModelConfig(vocab_size=vocab.vocab_size, d_model=16, num_heads=2, head_dim=8, d_ff=32,
                           encoder_layers=1, decoder_layers=1, dropout=0.0, arch="decoder_only")
    model = DecoderOnlyModel(cfg).eval()
    with torch.no_grad():
        model.shared.weight.mul_(3.0)  # sharper distributions: scores far from ties
    return model.double()


@pytest.fixture(scope="module")
def setup():
    sids = random_ids(40)
    vocab = SemanticIdVocab(sids, SIZES, user_buckets=7, separators=True)
    return sids, vocab, tiny(vocab)


def inputs(vocab, histories, users):
    width = max(len(h) for h in histories)
    items = np.full((len(histories), width), -1)
    for row, history in enumerate(histories):
        items[row, width - len(history):] = history
    lengths = np.array([len(h) for h in histories])
    return vocab.encoder_inputs(items, lengths, vocab.user_tokens(users))


@torch.no_grad()
def test_the_loss_on_all_positions_is_the_sum_of_the_per_prefix_losses(setup):
    _, vocab, model = setup
    rng = np.random.default_rng(3)
    sequences = [list(rng.integers(0, vocab.n_items, n)) for n in (6, 3, 5)]  # unequal: left padding differs
    users = [f"u{i}" for i in range(len(sequences))]
    targets = vocab.target_tokens([s[-1] for s in sequences])
    logits, labels = model.all_positions(inputs(vocab, [s[:-1] for s in sequences], users),
                                         vocab.decoder_inputs(targets), targets, vocab.user_offset)
    everything = F.cross_entropy(logits, labels, reduction="sum")
    assert len(labels) == sum(len(s) - 1 for s in sequences) * vocab.n_levels  # every item after the first
    one_at_a_time = 0.0
    for sequence, user in zip(sequences, users):
        for t in range(1, len(sequence)):  # each prefix as its own example, as the encoder-decoder trains
            target = vocab.target_tokens([sequence[t]])
            prefix_logits = model(inputs(vocab, [sequence[:t]], [user]), vocab.decoder_inputs(target))
            one_at_a_time += F.cross_entropy(prefix_logits[0], target[0], reduction="sum")
    assert float(everything) == pytest.approx(float(one_at_a_time), rel=1e-9)


@torch.no_grad()
def test_cached_decoding_computes_what_the_teacher_forced_pass_does(setup):
    """Exhaustive scoring runs the history once and the candidates against its cache (split
    attention); the teacher-forced forward runs each whole sequence: the same log-probabilities."""
    _, vocab, model = setup
    rng = np.random.default_rng(5)
    histories = [list(rng.integers(0, vocab.n_items, n)) for n in (1, 4, 2)]
    input_ids = inputs(vocab, histories, ["a", "b", "c"])
    scores = exhaustive_scores(model, vocab, input_ids)
    for row in range(len(histories)):
        for item in (0, 17, 39):
            target = vocab.target_tokens([item])
            logp = torch.log_softmax(model(input_ids[row:row + 1], vocab.decoder_inputs(target)), dim=-1)
            assert float(logp[0].gather(1, target[0][:, None]).sum()) == pytest.approx(float(scores[row, item]), rel=1e-6)  # scores: float32


def test_beam_search_equals_exhaustive_scoring(setup):
    sids, vocab, model = setup
    trie = SemanticIdTrie(sids, SIZES)
    rng = np.random.default_rng(7)
    input_ids = inputs(vocab, [list(rng.integers(0, vocab.n_items, n)) for n in (1, 3, 5, 2)], list("wxyz"))
    exact = exhaustive_scores(model, vocab, input_ids)
    result = beam_search(model, vocab, trie, input_ids, beam_size=len(sids))  # a beam that holds every item
    order = torch.argsort(exact, dim=1, descending=True)
    assert torch.equal(result.items, order)
    torch.testing.assert_close(result.scores, exact.gather(1, order), atol=1e-5, rtol=1e-6)
    narrow = beam_search(model, vocab, trie, input_ids, beam_size=5)
    assert (narrow.valid.all()) and len({tuple(r) for r in narrow.items.tolist()}) == 4


def test_all_positions_needs_the_decoder_only_model():
    with pytest.raises(ConfigError, match="loss_positions=all needs model.arch=decoder_only"):
        resolve_config("smoke", assignments=["train.loss_positions=all"], overrides={"method": "tiger"})
    config = resolve_config("smoke", assignments=["model.arch=decoder_only", "train.loss_positions=all"],
                            overrides={"method": "tiger"})
    assert config["model"]["arch"] == "decoder_only"


@pytest.mark.slow
def test_bench_run_decoder_only_on_synthetic_data_beats_popularity(tmp_path, capsys):
    store = tmp_path / "runs"
    common = ["--dataset", "synthetic", "--profile", "smoke", "--results-dir", str(store),
              "--set", f"work_dir={tmp_path / 'work'}", "train.progress=false", "embed.progress=false"]
    assert main(["run", "--tokenizer", "rqkmeans", *common, "model.arch=decoder_only", "train.loss_positions=all"]) == 0
    assert main(["run", "--baseline", "pop", *common]) == 0
    records = {r["label"]: r for r in (json.loads(p.read_text()) for p in store.glob("*.json"))}
    dec = records["TIGER-dec[rqkmeans]"]
    assert dec["config"]["model"]["arch"] == "decoder_only" and dec["components"]["tiger_decoder_only"] == 1
    assert dec["metrics"]["test"]["ndcg@10"] > records["Pop"]["metrics"]["test"]["ndcg@10"]
    assert main(["run", "--tokenizer", "rqkmeans", *common]) == 0  # the encoder-decoder on the same IDs
    figure = tmp_path / "quality.png"
    assert main(["plot", "quality", "--results-dir", str(store), "--output", str(figure)]) == 0
    assert figure.stat().st_size > 10_000
    capsys.readouterr()
    assert main(["plot", "quality", "--results-dir", str(store), "--where", "method=pop", "--output", str(figure)]) == 2
    assert "no completed runs with a training curve" in capsys.readouterr().err
