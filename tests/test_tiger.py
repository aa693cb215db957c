"""TIGER: vocabulary layout, tau loss, schedule, model paths, learning on synthetic data, checkpoints
and resume, and the end-to-end `bench run --tokenizer rqvae --dataset synthetic --profile smoke`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.config import resolve_config
from bench.data import load_dataset
from bench.methods import RunContext
from bench.plugins import METHODS
from bench.metrics import evaluate_rankings
from bench.split import LeaveOneOutSplit
from recommenders.model import TigerModel, TigerModelConfig
from recommenders.tiger import TigerRecommender
from recommenders.trainer import ResumeError, learning_rate, tau_cross_entropy
from recommenders.vocab import BOS, PAD, SemanticIdVocab, hash_user


pytestmark = pytest.mark.usefixtures("one_thread")


def smoke_config(**sets) -> dict:
    assignments = ["method=tiger", "dataset=synthetic", "tokenizer.name=rqvae"]
    assignments += [f"{k}={v}" for k, v in sets.items()]
    return resolve_config("smoke", assignments=assignments)


@pytest.fixture(scope="module")
def synthetic_split() -> LeaveOneOutSplit:
    config = smoke_config()
    return LeaveOneOutSplit(load_dataset("synthetic", None, config["data"]["synthetic"]), 20)


def category_ids(split: LeaveOneOutSplit):
    """Fake semantic IDs from the synthetic data's latent structure: (category, chain block, position)."""
    meta = split.dataset.item_meta
    category = np.array([m["category"] for m in meta])
    position = np.array([int(m["title"].rsplit("no. ", 1)[1]) for m in meta])
    sids = np.column_stack([category, position // 4, position % 4, np.zeros_like(category)])
    return sids, [int(category.max()) + 1, int(sids[:, 1].max()) + 1, 4, 1]


def recall10(rankings, split, stage="test") -> float:
    return evaluate_rankings(rankings, split.targets(stage), ks=(10,))["recall@10"]


# --- vocabulary, loss, schedule, model --------------------------------------------------------------
def test_vocab_layout_and_left_padded_inputs():
    sids = np.array([[0, 1, 0], [1, 0, 0], [1, 0, 1]])
    vocab = SemanticIdVocab(sids, [2, 2, 2], user_buckets=5)
    assert list(vocab.level_offsets) == [3, 5, 7]
    assert vocab.user_offset == 9 and vocab.vocab_size == 14
    items = np.array([[-1, -1, 2], [-1, 0, 1], [-1, -1, 1]])
    lengths = np.array([1, 2, 1])
    users = np.array([9, 10, 13])
    ids = vocab.encoder_inputs(items, lengths, users)
    assert ids.shape == (3, 1 + 3 * 2)  # the batch is as wide as its longest history
    assert ids[0].tolist() == [PAD, PAD, PAD, 9, 4, 5, 8]
    assert ids[1].tolist() == [10, 3, 6, 7, 4, 5, 7]
    targets = vocab.target_tokens(np.array([2, 0]))
    assert targets.tolist() == [[4, 5, 8], [3, 6, 7]]
    assert vocab.decoder_inputs(targets).tolist() == [[BOS, 4, 5], [BOS, 3, 6]]
    no_user = SemanticIdVocab(sids, [2, 2, 2], user_buckets=0)
    assert no_user.encoder_inputs(items, lengths, users).shape == (3, 6)
    assert hash_user("u1", 2000) == hash_user("u1", 2000) and 0 <= hash_user("u1", 2000) < 2000
    with pytest.raises(ValueError, match="unique"):
        SemanticIdVocab(np.array([[0, 0], [0, 0]]), [1, 1])


@pytest.mark.parametrize("tau", [1.0, 0.5, 2.0])
def test_tau_loss_is_cross_entropy_on_scaled_logits(tau):
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 11)
    targets = torch.randint(0, 11, (3, 4))
    expected = -torch.log_softmax(logits / tau, dim=-1).gather(2, targets[..., None]).mean()
    by_hand = np.mean([
        -(logits[b, t, targets[b, t]].item() / tau
          - np.log(np.exp(logits[b, t].numpy().astype(np.float64) / tau).sum()))
        for b in range(3) for t in range(4)
    ])
    value = tau_cross_entropy(logits, targets, tau)
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    assert value.item() == pytest.approx(by_hand, rel=1e-5)


def _train(**values):
    """A typed train section: the defaults with ``values`` (what the trainer reads)."""
    from bench.config import default_layer
    from bench.config_schema import Train

    return Train.model_validate({**default_layer()["train"], **values})


def test_learning_rate_schedules():
    tiger = _train(lr=0.01, schedule="inverse_sqrt", warmup="constant", warmup_steps=10000)
    assert learning_rate(0, tiger) == 0.01 and learning_rate(9999, tiger) == 0.01
    assert learning_rate(39999, tiger) == pytest.approx(0.005)
    ramp = _train(lr=0.004, schedule="inverse_sqrt", warmup="linear", warmup_steps=100)
    assert learning_rate(49, ramp) == pytest.approx(0.002)
    assert learning_rate(399, ramp) == pytest.approx(0.002)
    cosine = _train(lr=1.0, schedule="cosine", warmup="constant", warmup_steps=0, max_steps=100)
    assert learning_rate(49, cosine) == pytest.approx(0.5, abs=0.02) and learning_rate(99, cosine) < 1e-6


def tiny_model(seed: int) -> TigerModel:
    """A 2+2-layer model over a 50-token vocabulary without dropout; the seed also drives later draws."""
    torch.manual_seed(seed)
    return TigerModel(TigerModelConfig(vocab_size=50, d_model=16, num_heads=2, head_dim=8, d_ff=32,
                                       encoder_layers=2, decoder_layers=2, dropout=0.0))


def test_cpu_training_attention_path_matches_sdpa():
    """On CPU in training mode attention runs as explicit ops; same outputs and gradients as SDPA."""
    model = tiny_model(seed=0)
    ids = torch.randint(3, 50, (4, 9))
    ids[0, :4] = PAD
    dec = torch.randint(3, 50, (4, 4))
    outputs, grads = [], []
    for train in (True, False):  # train(): explicit path; eval(): SDPA (dropout is 0 either way)
        model.train(train)
        model.zero_grad()
        logits = model(ids, dec)
        logits.square().mean().backward()
        outputs.append(logits.detach())
        grads.append(model.enc_bias.embedding.weight.grad.clone())
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_unpadded_encoder_matches_padded_encoder():
    """Skipping padding in the encoder (the CPU default) changes nothing for real tokens: same
    logits, same cross-attention memory, same gradients."""
    model = tiny_model(seed=1)
    ids = torch.randint(3, 50, (5, 8))
    ids[0, :5] = PAD
    ids[3, :2] = PAD
    dec = torch.randint(3, 50, (5, 3))
    outputs, grads = {}, {}
    for policy in ("always", "never"):
        model.unpad = policy
        model.zero_grad()
        logits = model(ids, dec)
        logits.square().mean().backward()
        outputs[policy] = logits.detach()
        grads[policy] = model.encoder[0].attn.qkv.weight.grad.clone()
    assert model._unpad_index(ids) is None  # policy "never"
    model.unpad = "always"
    assert len(model._unpad_index(ids)) == int((ids != PAD).sum())
    assert torch.allclose(outputs["always"], outputs["never"], atol=1e-5)
    assert torch.allclose(grads["always"], grads["never"], atol=1e-5)
    real = ids != PAD
    states = {}
    for policy in ("always", "never"):
        model.unpad = policy
        states[policy] = model.encode(ids)[0][real]
    assert torch.allclose(states["always"], states["never"], atol=1e-5)


def test_label_names_tokenizer_and_ablation_not_settings():
    assert TigerRecommender.label(smoke_config()) == "TIGER[rqvae]"
    # tau is a setting (the tau sweep's rows, the main table's choice on validation), not another method
    assert TigerRecommender.label(smoke_config(**{"train.tau": 0.7, "tokenizer.name": "letter"})) == "TIGER[letter]"
    assert TigerRecommender.label(smoke_config(**{"model.user_buckets": 0})) == "TIGER[rqvae,no-user]"
    assert METHODS.get("tiger") is TigerRecommender


def test_every_profile_resolves_the_model_sections():
    for profile in ("smoke", "cpu", "paper", "gpu"):
        config = resolve_config(profile, assignments=["method=tiger"])
        assert config["model"]["d_model"] > 0 and config["decode"]["beam_size"] >= max(config["eval"]["ks"])
    paper = resolve_config("paper")
    assert (paper["model"]["encoder_layers"], paper["model"]["d_model"], paper["model"]["num_heads"],
            paper["model"]["head_dim"], paper["model"]["d_ff"], paper["train"]["lr"],
            paper["train"]["warmup_steps"]) == (4, 128, 6, 64, 1024, 0.01, 10000)


# --- learning, checkpoints, resume ------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(synthetic_split, tmp_path_factory):
    """A smoke-profile model trained on fake semantic IDs that carry the synthetic categories."""
    work = tmp_path_factory.mktemp("tiger")
    context = RunContext(work_dir=work, device="cpu", report=lambda step, m: reports.append((step, m)))
    reports: list = []
    recommender = TigerRecommender(smoke_config(**{"train.progress": False}), context)
    sids, sizes = category_ids(synthetic_split)
    recommender.fit_semantic_ids(synthetic_split, sids, sizes)
    return recommender, context, reports, work


def test_trained_model_beats_pop_and_random(synthetic_split, trained):
    recommender, context, reports, _ = trained
    split = synthetic_split
    ours = recall10(recommender.rank(split, "test", 20), split)
    pop = recall10(_fit_rank("pop", split), split)
    random = recall10(_fit_rank("random", split), split)
    assert ours > max(pop, random) + 0.1, (ours, pop, random)
    # validation was reported to the sweep callback, and the record extras are filled
    assert reports and all("valid_ndcg@10" in m for _, m in reports)
    training = context.extras["training"]
    assert training["best_step"] == context.extras["best_step"] > 0
    assert training["curve"] and training["best_valid_ndcg@10"] > 0
    assert "test (unconstrained beam search)" in context.extras["invalid_id_rate"]


def _fit_rank(method: str, split) -> np.ndarray:
    model = METHODS.get(method)(smoke_config(), RunContext(work_dir=Path("."), device="cpu"))
    model.fit(split)
    return model.rank(split, "test", 20)


def test_checkpoints_and_resume(synthetic_split, trained, tmp_path):
    recommender, _, _, work = trained
    assert (work / "checkpoint.pt").is_file() and (work / "best.pt").is_file()
    sids, sizes = category_ids(synthetic_split)
    expected = recommender.rank(synthetic_split, "valid", 10)

    # a finished checkpoint: resuming restores the best weights without training again
    context = RunContext(work_dir=tmp_path / "again", device="cpu")
    again = TigerRecommender(smoke_config(**{"train.progress": False, "train.resume_from": str(work)}), context)
    again.fit_semantic_ids(synthetic_split, sids, sizes)
    assert context.extras["training"]["resumed_from"] == str(work / "checkpoint.pt")
    assert np.array_equal(again.rank(synthetic_split, "valid", 10), expected)

    # an interrupted run goes on from its step to the configured end
    steps = {"train.progress": False, "train.max_steps": 40, "train.eval_every": 20}
    first = RunContext(work_dir=tmp_path / "short", device="cpu")
    TigerRecommender(smoke_config(**{**steps, "train.max_steps": 20}), first).fit_semantic_ids(synthetic_split, sids, sizes)
    assert first.extras["training"]["steps"] == 20
    resumed = RunContext(work_dir=tmp_path / "resumed", device="cpu")
    TigerRecommender(smoke_config(**{**steps, "train.resume_from": str(tmp_path / "short" / "checkpoint.pt")}),
                     resumed).fit_semantic_ids(synthetic_split, sids, sizes)
    assert resumed.extras["training"]["steps"] == 40
    assert [c["step"] for c in resumed.extras["training"]["curve"]] == [20, 40]

    # a checkpoint made for other semantic IDs is refused
    other = sids.copy()
    other[:, 2] = (other[:, 2] + 1) % 4
    with pytest.raises(ResumeError, match="semantic_ids"):
        TigerRecommender(smoke_config(**{"train.progress": False, "train.resume_from": str(work)}),
                         RunContext(work_dir=tmp_path / "x", device="cpu")).fit_semantic_ids(synthetic_split, other, sizes)
    # a checkpoint trained with other settings is refused (the record would name settings that did not
    # train it); the budget and the test decoding may change
    with pytest.raises(ResumeError, match=r"other settings \(train.lr: .* -> 0.123"):
        TigerRecommender(smoke_config(**{"train.progress": False, "train.lr": 0.123, "train.resume_from": str(work)}),
                         RunContext(work_dir=tmp_path / "lr", device="cpu")).fit_semantic_ids(synthetic_split, sids, sizes)
    with pytest.raises(ResumeError, match="decode.beam_size"):  # validation decoding picks the best weights
        TigerRecommender(smoke_config(**{"train.progress": False, "decode.beam_size": 30, "train.resume_from": str(work)}),
                         RunContext(work_dir=tmp_path / "beam", device="cpu")).fit_semantic_ids(synthetic_split, sids, sizes)
    decoded = RunContext(work_dir=tmp_path / "decode", device="cpu")
    TigerRecommender(smoke_config(**{"train.progress": False, "decode.sample_temperatures": [1.5], "eval.max_k": 30,
                                     "train.resume_from": str(work)}), decoded).fit_semantic_ids(synthetic_split, sids, sizes)
    assert decoded.extras["training"]["training_config_checked"] is True
    with pytest.raises(ResumeError, match="no checkpoint"):
        TigerRecommender(smoke_config(**{"train.resume_from": str(tmp_path / "missing")}),
                         RunContext(work_dir=tmp_path / "y", device="cpu")).fit_semantic_ids(synthetic_split, sids, sizes)

    # a checkpoint of another format, or made by other component versions, is refused, never half-loaded
    import torch

    from recommenders.trainer import CHECKPOINT_FORMAT

    ckpt = torch.load(work / "checkpoint.pt", weights_only=True)
    assert ckpt["format"] == CHECKPOINT_FORMAT
    (tmp_path / "old").mkdir()
    torch.save({**ckpt, "format": CHECKPOINT_FORMAT - 1}, tmp_path / "old" / "checkpoint.pt")
    with pytest.raises(ResumeError, match="checkpoint format"):
        TigerRecommender(smoke_config(**{"train.progress": False, "train.resume_from": str(tmp_path / "old")}),
                         RunContext(work_dir=tmp_path / "z", device="cpu")).fit_semantic_ids(synthetic_split, sids, sizes)
    # a checkpoint from before checkpoints carried their settings: resumed, and the record says unchecked
    (tmp_path / "legacy").mkdir()
    legacy = {k: v for k, v in ckpt["fingerprint"].items() if k != "training_config"}
    torch.save({**ckpt, "fingerprint": legacy}, tmp_path / "legacy" / "checkpoint.pt")
    unchecked = RunContext(work_dir=tmp_path / "l", device="cpu")
    TigerRecommender(smoke_config(**{"train.progress": False, "train.resume_from": str(tmp_path / "legacy")}),
                     unchecked).fit_semantic_ids(synthetic_split, sids, sizes)
    assert unchecked.extras["training"]["training_config_checked"] is False
    (tmp_path / "other_code").mkdir()
    fingerprint = {**ckpt["fingerprint"], "components": {**ckpt["fingerprint"]["components"], "method/tiger": 0}}
    torch.save({**ckpt, "fingerprint": fingerprint}, tmp_path / "other_code" / "checkpoint.pt")
    with pytest.raises(ResumeError, match="components"):
        TigerRecommender(smoke_config(**{"train.progress": False, "train.resume_from": str(tmp_path / "other_code")}),
                         RunContext(work_dir=tmp_path / "w", device="cpu")).fit_semantic_ids(synthetic_split, sids, sizes)


def test_a_resumed_training_ends_where_an_uninterrupted_one_does(synthetic_split, tmp_path):
    """Interrupt after 20 steps, resume to 40: the weights equal 40 uninterrupted steps (same batch
    order, optimizer and dropout random stream), so a resumed trial is the same trial."""
    sids, sizes = category_ids(synthetic_split)
    steps = {"train.progress": False, "train.max_steps": 40, "train.eval_every": 20, "model.dropout": 0.1}
    whole = TigerRecommender(smoke_config(**steps), RunContext(work_dir=tmp_path / "whole", device="cpu"))
    whole.fit_semantic_ids(synthetic_split, sids, sizes)
    TigerRecommender(smoke_config(**{**steps, "train.max_steps": 20}),
                     RunContext(work_dir=tmp_path / "first", device="cpu")).fit_semantic_ids(synthetic_split, sids, sizes)
    torch.manual_seed(12345)  # the resumed process's own random state must not matter
    resumed = TigerRecommender(smoke_config(**{**steps, "train.resume_from": str(tmp_path / "first")}),
                               RunContext(work_dir=tmp_path / "resumed", device="cpu"))
    resumed.fit_semantic_ids(synthetic_split, sids, sizes)
    # the weights after step 40 (the model itself holds the best weights, maybe step 20's)
    last = [torch.load(tmp_path / run / "checkpoint.pt", weights_only=True) for run in ("whole", "resumed")]
    assert last[0]["state"]["step"] == last[1]["state"]["step"] == 40
    for name, value in last[0]["model"].items():
        assert torch.equal(value, last[1]["model"][name]), name
    assert [c["loss"] for c in last[0]["state"]["curve"]] == [c["loss"] for c in last[1]["state"]["curve"]]


def test_unconstrained_ranking_marks_invalid_ids_as_misses(synthetic_split, trained):
    recommender, context, _, _ = trained
    typed = recommender.decode_cfg
    recommender.decode_cfg = typed.model_copy(update={"constrained": False})  # a config is immutable: a changed copy
    try:
        ranked = recommender.rank(synthetic_split, "valid", 20)
    finally:
        recommender.decode_cfg = typed
    n_items = synthetic_split.n_items
    rate = context.extras["invalid_id_rate"]["valid"]["invalid_id_rate@20"]
    assert ((ranked >= n_items).mean()) == pytest.approx(rate)
    assert evaluate_rankings(ranked, synthetic_split.valid_targets, ks=(10,))["recall@10"] >= 0


def test_diversity_study_records_category_entropy(synthetic_split, trained):
    recommender, context, _, _ = trained
    typed = recommender.decode_cfg
    recommender.decode_cfg = typed.model_copy(update={"sample_temperatures": [1.0, 2.0], "sample_count": 20})
    try:
        recommender.rank(synthetic_split, "test", 10)
    finally:
        recommender.decode_cfg = typed
    diversity = context.extras["diversity"]
    assert set(diversity) == {"beam", "T=1", "T=2"}
    assert 0 <= diversity["beam"]["entropy@10"] <= np.log(8) + 1e-9
    assert diversity["T=2"]["entropy@10"] >= diversity["T=1"]["entropy@10"] - 0.05


# --- end to end with the real tokenizer -------------------------------------------------------------
@pytest.mark.slow
def test_bench_run_rqvae_synthetic_smoke_beats_pop_and_random(tmp_path, capsys):
    """`bench run --tokenizer rqvae --dataset synthetic --profile smoke` beats pop and random on Recall@10."""
    from bench.cli import main

    results = tmp_path / "runs"
    for args in (["--tokenizer", "rqvae"], ["--baseline", "pop"], ["--baseline", "random"]):
        code = main(["run", *args, "--dataset", "synthetic", "--profile", "smoke", "--results-dir", str(results),
                     "--set", f"work_dir={tmp_path / 'work'}", "--set", "train.progress=false"])
        assert code == 0
    import json

    records = {r["method"]: r for r in (json.loads(p.read_text()) for p in results.rglob("*.json"))}
    tiger = records["tiger"]
    assert tiger["label"] == "TIGER[rqvae]"
    recall = {m: records[m]["metrics"]["test"]["recall@10"] for m in ("tiger", "pop", "random")}
    assert recall["tiger"] > max(recall["pop"], recall["random"]), recall
    info = tiger["method_info"]
    assert info["tokenizer"]["name"] == "rqvae" and "stats" in info["tokenizer"]
    assert info["best_step"] > 0 and "invalid_id_rate" in info


@pytest.mark.slow
def test_bench_run_letter_ml100k_smoke_offline(tmp_path):
    """The main command on the embedded dataset: MiniLM text embeddings, CF embeddings from RecBole's
    SASRec, LETTER, TIGER, beam search, a record with the tokenizer's CF alignment."""
    import json

    from bench.cli import main

    results = tmp_path / "runs"
    code = main(["run", "--tokenizer", "letter", "--dataset", "ml-100k", "--profile", "smoke",
                 "--results-dir", str(results), "--set", f"work_dir={tmp_path / 'work'}", "--set", "train.progress=false"])
    assert code == 0
    (path,) = results.rglob("*.json")
    record = json.loads(path.read_text())
    assert record["status"] == "completed" and record["label"] == "TIGER[letter]"
    assert record["dataset_fingerprint"]["users"] == 943 and record["dataset_fingerprint"]["items"] == 1682
    stats = record["method_info"]["tokenizer"]["stats"]
    assert stats["levels"] == 4 and stats["n_items"] == 1682 and -1 <= stats["cf_alignment"] <= 1
    assert 0 < record["metrics"]["test"]["recall@10"] <= 1


def test_amp_on_the_cpu_follows_the_capability_check(monkeypatch, capsys):
    import recommenders.trainer as trainer

    cpu = torch.device("cpu")
    monkeypatch.setattr(trainer, "cpu_has_bf16", lambda: True)
    assert trainer.amp_dtype("bf16", cpu) == torch.bfloat16 and trainer.amp_dtype("none", cpu) is None
    monkeypatch.setattr(trainer, "cpu_has_bf16", lambda: False)
    assert trainer.amp_dtype("bf16", cpu) is None and "no native bfloat16" in capsys.readouterr().err
    assert trainer.amp_dtype("fp16", cpu) is None and "fp16 autocast is for CUDA" in capsys.readouterr().err


def test_bf16_training_on_the_cpu_learns_like_float32(synthetic_split, monkeypatch):
    """Same seed, same steps: bf16 autocast (fp32 loss and master weights) reaches the quality of fp32."""
    import recommenders.trainer as trainer

    monkeypatch.setattr(trainer, "cpu_has_bf16", lambda: True)  # autocast runs (emulated) on any CPU
    sids, sizes = category_ids(synthetic_split)
    scores = {}
    for amp in ("none", "bf16"):
        context = RunContext(work_dir=Path("unused"), device="cpu")
        model = TigerRecommender(smoke_config(**{"train.progress": False, "train.checkpoint": False,
                                                 "track.tensorboard": False, "train.amp": amp}), context)
        model.fit_semantic_ids(synthetic_split, sids, sizes)
        scores[amp] = recall10(model.rank(synthetic_split, "test", 20), synthetic_split)
    assert scores["bf16"] > 0.3 and abs(scores["bf16"] - scores["none"]) < 0.1, scores
