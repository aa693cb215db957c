"""The cold-start protocol on synthetic data: unseen items never reach training, validation, CF or
RecBole inputs; ID-based methods score 0 on cold users and the record says why; a method that knows
items from their text can recommend them."""
from __future__ import annotations

import json

import numpy as np

from bench.cli import main
from bench.coldstart import apply_coldstart, cold_users, drop_unseen
from bench.data import load_dataset
from bench.split import LeaveOneOutSplit


def test_unseen_items_appear_only_as_test_targets():
    dataset = load_dataset("synthetic")
    cold = apply_coldstart(dataset, fraction=0.1, seed=3)
    split = LeaveOneOutSplit(cold.dataset)
    unseen = set(cold.unseen.tolist())
    assert len(unseen) >= 1
    train = split.train_examples
    assert not unseen & set(train.items[train.items >= 0].tolist())
    assert not unseen & set(train.targets.tolist())
    assert not unseen & set(split.valid_targets.tolist())
    for sequence in split.train_sequences:  # what CF embeddings and RecBole train on
        assert not unseen & set(np.asarray(sequence).tolist())
    # the test targets are the original ones, user by user
    original = {u: int(s[-1]) for u, s in zip(dataset.user_ids, dataset.sequences)}
    assert all(original[u] == int(t) for u, t in zip(cold.dataset.user_ids, split.test_targets))
    assert len(cold_users(split.test_targets, cold.unseen)) >= 1
    assert apply_coldstart(dataset, 0.1, 3).unseen.tolist() == cold.unseen.tolist()  # seeded


def test_users_left_too_short_for_recboles_split_are_dropped_for_every_method(tmp_path):
    """Version 2 of the protocol: a user needs 4 items left (RecBole's leave-one-out gives a user the
    harness's validation target only from 2 training items on), so RecBole runs under it too."""
    from bench.coldstart import choose_unseen

    dataset = load_dataset("synthetic")
    unseen = set(choose_unseen(dataset, 0.3, 3).tolist())
    left = [sum(int(x) not in unseen for x in s[:-1]) + 1 for s in dataset.sequences]
    assert sum(n == 3 for n in left) > 0  # version 1 kept these users; RecBole refused them
    cold = apply_coldstart(dataset, fraction=0.3, seed=3)
    assert cold.dropped_users == sum(n < 4 for n in left)
    assert min(len(s) for s in cold.dataset.sequences) >= 4
    store = tmp_path / "runs"
    assert main(["run", "--baseline", "sasrec", "--dataset", "synthetic", "--profile", "smoke", "--results-dir",
                 str(store), "--set", "coldstart.enabled=true", "coldstart.fraction=0.3", "coldstart.seed=3"]) == 0
    record = json.loads(sorted(store.glob("*.json"))[-1].read_text())
    assert record["status"] == "completed" and record["coldstart"]["dropped_users"] >= 1
    assert record["components"]["protocol/coldstart"] == 3


def test_drop_unseen_keeps_order_and_pads():
    ranked = np.array([[5, 1, 7, 2], [7, 7, -1, -1]])
    assert drop_unseen(ranked, np.array([7])).tolist() == [[5, 1, 2, -1], [-1, -1, -1, -1]]


def _run(tmp_path, *args):
    store = tmp_path / "runs"
    assert main(["run", *args, "--dataset", "synthetic", "--profile", "smoke", "--results-dir", str(store),
                 "--set", "coldstart.enabled=true", "coldstart.fraction=0.1", "embed.progress=false"]) == 0
    return json.loads(sorted(store.glob("*.json"))[-1].read_text())


def test_id_based_methods_score_zero_on_cold_users_and_say_why(tmp_path):
    record = _run(tmp_path, "--baseline", "sasrec")
    assert record["coldstart"]["cold_users"] >= 1 and record["coldstart"]["id_based"] is True
    assert all(value == 0 for name, value in record["metrics"]["test_cold"].items() if name.startswith(("recall", "ndcg")))
    assert "ID-based" in record["coldstart"]["note"]
    from bench.records import schema_errors
    from bench.tables import build_main_table

    assert schema_errors(record) == []
    assert not build_main_table([record]).rows  # another protocol: never a row of the standard tables


def test_a_text_based_method_reaches_unseen_items(tmp_path):
    record = _run(tmp_path, "--baseline", "semantic_knn")
    assert record["coldstart"]["id_based"] is False and "note" not in record["coldstart"]
    assert record["metrics"]["test_cold"]["recall@20"] > 0  # unseen items are recommendable from their text


def test_tiger_reaches_unseen_items_only_in_cold_start_decoding_and_at_most_epsilon_of_them():
    from pathlib import Path

    import torch

    from bench.config import resolve_config
    from bench.methods import RunContext
    from recommenders.tiger import TigerRecommender
    from tests.test_tiger import category_ids

    cold = apply_coldstart(load_dataset("synthetic"), fraction=0.15, seed=0)
    split = LeaveOneOutSplit(cold.dataset)
    config = resolve_config("smoke", assignments=["method=tiger", "dataset=synthetic", "train.progress=false",
                                                  "train.checkpoint=false", "track.tensorboard=false"])  # writes nothing
    torch.set_num_threads(1)
    model = TigerRecommender(config, RunContext(work_dir=Path("unused"), device="cpu", unseen_items=cold.unseen))
    sids, sizes = category_ids(split)
    model.fit_semantic_ids(split, sids, sizes)
    batch = split.eval_batch("test")
    plain, _ = model.decode_batch(batch, 20)
    assert not np.isin(plain, cold.unseen).any()  # the trie of seen items cannot return them
    np.testing.assert_array_equal(model.cold_rankings(batch, 20, cold.unseen, 0.0), plain)  # epsilon 0: plain
    mixed = model.cold_rankings(batch, 20, cold.unseen, 0.25)
    per_list = np.isin(mixed, cold.unseen).sum(axis=1)
    assert per_list.max() <= 5 and per_list.sum() > 0  # reachable, at most floor(0.25 * 20) per list
    assert all(len(set(row[row >= 0])) == (row >= 0).sum() for row in mixed)  # distinct items


def test_cold_start_tiger_records_its_epsilon_curve_and_the_table_and_plots_render(tmp_path):
    from bench.commands.render import render_all
    from bench.records import schema_errors
    from bench.tables.coldstart import build_coldstart_table

    sets = ["eval.ks=[10,20,50]", "eval.max_k=50", "decode.beam_size=50", "coldstart.epsilon_curve=[0,0.2]",
            "train.progress=false", "tokenizer.progress=false"]
    tiger = _run(tmp_path, "--tokenizer", "rqvae", "--set", *sets)
    knn = _run(tmp_path, "--baseline", "semantic_knn", "--set", *sets[:2])
    assert schema_errors(tiger) == [] and set(tiger["method_info"]["coldstart_curve"]) == {"0", "0.2"}
    assert tiger["method_info"]["coldstart_curve"]["0"]["recall@10"] == 0  # epsilon 0: no unseen item
    table = build_coldstart_table([tiger, knn])
    assert [r.labels[0] for r in table.rows] == ["Semantic-KNN", "TIGER[rqvae]"]
    assert ("synthetic", "cold recall@50") in table.rows[0].cells
    # the note counts the cold users of the runs shown, not of every record given
    stale = {**knn, "run_id": "20000101T000000000000-stale", "coldstart": {**knn["coldstart"], "cold_users": 99999},
             "git": {**knn["git"], "commit": "0" * 40}, "started_at": "2000-01-01T00:00:00+00:00"}
    notes = build_coldstart_table([tiger, knn, stale]).notes[0]
    assert "99999" not in notes and f"({knn['coldstart']['cold_users']} users)" in notes
    written = {p.name for p in render_all([tiger, knn], tmp_path / "out")}
    assert {"coldstart.md", "coldstart.png"} <= written


def test_a_cold_start_tokenizer_never_sees_the_unseen_items(monkeypatch):
    """Protocol version 3: the tokenizer is fitted on the seen items only and the unseen ones are
    encoded by the frozen fit. Changing the unseen items' text changes no seen item's code (the fit
    never read it), and each unseen item gets exactly what the frozen tokenizer encodes for it."""
    import bench.embed
    from bench.config import resolve_config
    from recommenders.item_ids import fit_item_ids

    dataset = load_dataset("synthetic")
    cold = apply_coldstart(dataset, fraction=0.2, seed=3)
    split = LeaveOneOutSplit(cold.dataset)
    unseen = cold.unseen
    rng = np.random.default_rng(0)
    base = rng.standard_normal((dataset.n_items, 16)).astype(np.float32)
    moved = base.copy()
    moved[unseen] += 5.0 * rng.standard_normal((len(unseen), 16)).astype(np.float32)
    for name in ("lsh", "random_id", "rqvae"):
        config = resolve_config("smoke", overrides={"method": "tiger", "dataset": "synthetic",
                                                    "tokenizer": {"name": name, "cache": False}})
        codes = {}
        for label, embeddings in (("base", base), ("moved", moved)):
            monkeypatch.setattr(bench.embed, "item_embeddings", lambda *a, e=embeddings, **k: e)
            stage = fit_item_ids(config, split, unseen=unseen)
            assert stage.facts["fitted_on_items"] == dataset.n_items - len(unseen)
            assert stage.facts["encoded_unseen_items"] == len(unseen)
            codes[label] = stage.tokenizer.codes().copy()
            assert (codes[label][unseen] == stage.tokenizer.encode(embeddings[unseen])).all(), name
        seen = np.setdiff1d(np.arange(dataset.n_items), unseen)
        assert (codes["base"][seen] == codes["moved"][seen]).all(), name
        if name == "lsh":  # hashed from the text: moved text, other codes
            assert (codes["base"][unseen] != codes["moved"][unseen]).any()
