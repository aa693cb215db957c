"""RecBole baselines on the harness's split: compat, export, targets, metric agreement, CF embeddings.

Everything runs offline on ml-100k (shipped inside the recbole package) or generated data, with the
smoke profile and tiny models; torch runs single-threaded here (2 shared cores: one thread is much
faster than two fighting over them).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("recbole")

from baselines import recbole_compat  # noqa: E402
from baselines.cf_embed import cf_embeddings_dir, cf_item_embeddings, train_cf_embeddings  # noqa: E402
from baselines.recbole_adapter import check_targets  # noqa: E402
from baselines.recbole_data import prepare  # noqa: E402
from bench.config import ConfigError, resolve_config, with_values  # noqa: E402
from bench.config_schema import RunConfig  # noqa: E402
from bench.data import load_dataset  # noqa: E402
from bench.data.types import SequenceDataset  # noqa: E402
from bench.errors import UserError  # noqa: E402
from bench.plugins import METHODS  # noqa: E402
from bench.tracking import TENSORBOARD_DIR  # noqa: E402
from bench.runner import run  # noqa: E402
from bench.split import LeaveOneOutSplit  # noqa: E402


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def empty_cwd(tmp_path, monkeypatch):
    """Run from an empty folder and fail if anything lands in it."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield cwd
    assert sorted(os.listdir(cwd)) == [], "something was written to the working directory"


def smoke_config(tmp_path, **overrides) -> RunConfig:
    assignments = [f"{k}={v}" for k, v in overrides.pop("assign", {}).items()]
    base = {"results_dir": str(tmp_path / "runs"), "work_dir": str(tmp_path / "work"), "device": "cpu"}
    return resolve_config("smoke", assignments=assignments, overrides={**base, **overrides})


def synthetic_split(**options) -> LeaveOneOutSplit:
    return LeaveOneOutSplit(load_dataset("synthetic", options=options))


class Marker:
    """A plain Python object: torch.load(weights_only=True) refuses to unpickle it (RecBole's
    checkpoints hold its Config, such an object)."""

    def __init__(self, value):
        self.value = value


# --- compat ---------------------------------------------------------------------------------


def test_compat_numpy_aliases_and_anomaly_mode():
    recbole_compat.apply()
    recbole_compat.apply()  # idempotent
    assert np.float_ is np.float64 or np.float_ == np.float64
    assert np.zeros(2, dtype=np.float).dtype == np.float64
    assert np.zeros(2, dtype=np.long).dtype == np.int64
    import recbole.model.sequential_recommender  # noqa: F401  (sine.py turns anomaly mode on)
    from recbole.evaluator.metrics import NDCG  # uses np.float

    assert NDCG is not None
    assert not torch.is_anomaly_enabled(), "importing RecBole left autograd anomaly mode on"


def test_compat_torch_load_and_tensorboard(tmp_path, empty_cwd, monkeypatch):
    import recbole.trainer.trainer as trainer_module

    recbole_compat.apply()
    path = tmp_path / "checkpoint.pth"
    torch.save({"config": Marker(3), "state_dict": {"w": torch.ones(2)}}, path)
    with pytest.raises(Exception):
        torch.load(path)  # torch's own default stays weights_only=True
    # what RecBole's trainer calls: weights only, also over an explicit False or the environment's default
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    for kwargs in ({}, {"weights_only": False}):
        with pytest.raises(UserError, match="could run code"):
            trainer_module.torch.load(path, map_location="cpu", **kwargs)
    weights = tmp_path / "weights.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 1}, weights)
    assert trainer_module.torch.load(weights, map_location="cpu")["epoch"] == 1
    writer = trainer_module.get_tensorboard(None)
    writer.add_scalar("x", 1.0, 0)
    writer.add_hparams({}, {})


def test_make_config_ignores_argv_and_keeps_cuda_env(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench", "--epochs=999", "--learning_rate=0.5"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    config = recbole_compat.make_config(
        "SASRec", "gb_unused", {"epochs": 3, "train_neg_sample_args": None, "data_path": "/nonexistent"}
    )
    assert config["epochs"] == 3 and config["learning_rate"] == 0.001
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "7"
    assert sys.argv == ["bench", "--epochs=999", "--learning_rate=0.5"]
    assert str(config["device"]) == "cpu"


# --- export and split ---------------------------------------------------------------------------


def test_exported_atomic_files_have_no_missing_values():
    split = synthetic_split(n_users=80, n_items=300)  # some items occur in no sequence
    data = prepare(split.dataset.sequences, split.n_items, max_seq_len=20, split=split)
    inter = pd.read_csv(data.folder / f"{data.name}.inter", sep="\t", dtype=str, keep_default_na=False, na_values=[""])
    items = pd.read_csv(data.folder / f"{data.name}.item", sep="\t", dtype=str, keep_default_na=False, na_values=[""])
    assert list(inter.columns) == ["user_id:token", "item_id:token", "timestamp:float"]
    assert not inter.isna().any().any() and not items.isna().any().any()
    assert len(inter) == split.dataset.n_interactions
    assert items["item_id:token"].astype(int).tolist() == list(range(split.n_items))
    for user, group in inter.groupby(inter["user_id:token"].astype(int)):
        np.testing.assert_array_equal(group["item_id:token"].astype(int), split.dataset.sequences[user])
        np.testing.assert_array_equal(group["timestamp:float"].astype(float), np.arange(len(group)))
    # every catalogue item has a RecBole id, also those in no interaction
    assert (data.harness_to_item >= 1).all() and len(data.harness_to_item) == split.n_items


@pytest.mark.parametrize("name", ["ml-100k", "synthetic"])
def test_recbole_targets_equal_harness_for_every_user(name):
    split = LeaveOneOutSplit(load_dataset(name))
    max_len = 50
    data = prepare(split.dataset.sequences, split.n_items, max_seq_len=max_len, split=split)
    check_targets(data, split)  # raises on any difference
    for part, stage, cut in ((1, "valid", 2), (2, "test", 1)):
        users, items = data.targets(part)
        assert sorted(users.tolist()) == list(range(split.n_users))
        np.testing.assert_array_equal(items, split.targets(stage)[users])
        for user, history in zip(users, data.histories(part)):
            np.testing.assert_array_equal(history, split.dataset.sequences[user][:-cut][-max_len:])


def test_prepared_dataset_is_rebuilt_in_its_keyed_folder():
    """Nothing prepared is read back (a pickle could run code): every call exports and builds again,
    into the same keyed folder, with the same result."""
    split = synthetic_split(n_users=60)
    first = prepare(split.dataset.sequences, split.n_items, max_seq_len=20, split=split)
    second = prepare(split.dataset.sequences, split.n_items, max_seq_len=20, split=split)
    other = prepare(split.dataset.sequences, split.n_items, max_seq_len=10, split=split)
    assert not first.cache_hit and not second.cache_hit and not other.cache_hit
    assert first.key == second.key != other.key and first.folder == second.folder != other.folder
    assert sorted(p.name for p in second.folder.iterdir()) == sorted([f"{second.name}.inter", f"{second.name}.item", "key.json"])
    np.testing.assert_array_equal(first.targets(2)[1], second.targets(2)[1])
    np.testing.assert_array_equal(first.parts[0].inter_feat["item_id_list"].numpy(),
                                  second.parts[0].inter_feat["item_id_list"].numpy())


# --- runs ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_smoke_sasrec_on_ml100k_matches_recbole(tmp_path, empty_cwd):
    config = smoke_config(tmp_path, method="sasrec", dataset="ml-100k")
    record = run(config)
    info = record["method_info"]
    assert record["label"] == "SASRec (CE)" and info["loss"] == "ce"
    agreement = info["recbole_agreement"]
    assert agreement["agree"] and agreement["test_users"] == 943
    assert agreement["test_max_abs_diff"] <= 1e-4 and agreement["valid_max_abs_diff"] <= 1e-4
    # the run record's own (harness) test metrics are RecBole's for the same model
    for name, value in info["recbole_test_result"].items():
        assert record["metrics"]["test"][name] == pytest.approx(value, abs=1e-4), name
    for name, value in info["recbole_valid_result"].items():
        assert record["metrics"]["valid"][name] == pytest.approx(value, abs=1e-4), name
    assert info["targets_checked"]
    assert info["best_epoch"] is not None and info["valid_curve"]
    assert os.path.isfile(record["_path"])
    saved = json.loads(open(record["_path"]).read())
    assert saved["method_info"]["recbole_test_result"] == info["recbole_test_result"]
    # RecBole's checkpoint folder is inside the run's own work dir, and nothing was saved there
    work = tmp_path / "work" / record["run_id"]
    saved_files = [p for p in work.rglob("*") if p.is_file() and TENSORBOARD_DIR not in p.relative_to(work).parts]
    assert not saved_files, f"best weights should stay in memory, found {saved_files}"  # TensorBoard's events aside
    # second run: the prepared dataset is built again (never loaded from a file), the same numbers
    again = run(config, write=False)
    assert not again["method_info"]["dataset_cache"]["hit"]
    assert again["method_info"]["dataset_cache"]["key"] == info["dataset_cache"]["key"]
    assert again["metrics"]["test"] == record["metrics"]["test"]


@pytest.mark.parametrize(
    "method,loss,label",
    [
        ("sasrec", "bce", "SASRec (BCE)"),
        ("gru4rec", "ce", "GRU4Rec (CE)"),
        ("gru4rec", "bce", "GRU4Rec (BCE)"),
        ("bert4rec", "ce", "BERT4Rec (CE)"),
    ],
)
def test_each_model_and_loss_runs_and_agrees(tmp_path, empty_cwd, method, loss, label):
    config = smoke_config(tmp_path, method=method, dataset="synthetic",
                          assign={"baseline.loss": loss, "baseline.epochs": 1})
    assert METHODS.get(method).label(config) == label
    record = run(config, write=False)
    assert record["label"] == label
    assert record["method_info"]["recbole_agreement"]["agree"]
    rankings_ok = record["metrics"]["test"]["recall@20"]
    assert 0.0 <= rankings_ok <= 1.0


def test_bert4rec_refuses_another_loss(tmp_path):
    with pytest.raises(ConfigError, match="BERT4Rec"):  # when the config is resolved, before any work
        smoke_config(tmp_path, method="bert4rec", assign={"baseline.loss": "bce"})


def test_sasrec_learns_synthetic_sequences(tmp_path):
    """The chains of the synthetic data are easy: a few epochs must beat popularity by far."""
    config = smoke_config(tmp_path, method="sasrec", dataset="synthetic",
                          assign={"baseline.epochs": 8, "baseline.patience": 8, "baseline.hidden_size": 32,
                                  "baseline.learning_rate": 0.005, "baseline.train_batch_size": 256})
    sasrec = run(config, write=False)["metrics"]["test"]
    pop = run(with_values(config, {"method": "pop"}), write=False)["metrics"]["test"]
    assert sasrec["ndcg@10"] > 2 * pop["ndcg@10"]


# --- CF embeddings -----------------------------------------------------------------------------


def interchangeable_dataset(seed: int = 0, n_users: int = 700, n_items: int = 40, a: int = 7, b: int = 23):
    """Users walk chains of items; wherever item ``a`` would come, it is ``a`` or ``b`` at random.

    So ``a`` and ``b`` have identical contexts (predecessors and successors) and never occur
    otherwise: a CF embedding aligned with the item indices must put rows a and b close together.
    """
    rng = np.random.default_rng(seed)
    chain = [i for i in range(n_items) if i != b]
    rng.shuffle(chain)
    sequences = []
    for _ in range(n_users):
        length = int(rng.integers(6, 14))
        start = int(rng.integers(len(chain)))
        walk = [chain[(start + t) % len(chain)] for t in range(length)]
        walk = [b if item == a and rng.random() < 0.5 else item for item in walk]
        sequences.append(np.asarray(walk, dtype=np.int64))
    return SequenceDataset("pairs", [str(u) for u in range(n_users)], [str(i) for i in range(n_items)], sequences)


def cf_config(tmp_path, **assign):
    defaults = {"baseline.cf_embed.epochs": 10, "baseline.cf_embed.patience": 10,
                "baseline.cf_embed.learning_rate": 0.005, "baseline.cf_embed.train_batch_size": 256}
    return smoke_config(tmp_path, assign={**defaults, **assign})


def cosine_matrix(x: np.ndarray) -> np.ndarray:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit @ unit.T


def test_cf_embeddings_rows_are_aligned_with_items(tmp_path, empty_cwd):
    a, b = 7, 23
    split = LeaveOneOutSplit(interchangeable_dataset(a=a, b=b))
    embeddings = cf_item_embeddings(split, cf_config(tmp_path))
    assert embeddings.shape == (split.n_items, 32) and embeddings.dtype == np.float32
    cos = cosine_matrix(embeddings)
    others = cos[np.triu_indices(split.n_items, k=1)]
    assert cos[a, b] > 0.5
    assert cos[a, b] > np.quantile(others, 0.99), (cos[a, b], np.quantile(others, 0.99))
    # cached by config + split: the same array comes back without training
    again, path, info = train_cf_embeddings(split, cf_config(tmp_path))
    assert info["cache_hit"] and path.parent == cf_embeddings_dir(split, cf_config(tmp_path))
    np.testing.assert_array_equal(again, embeddings)


def test_cf_embeddings_never_see_valid_or_test_targets(tmp_path, empty_cwd):
    """Changing every user's valid and test target changes nothing: they are never trained on."""
    dataset = load_dataset("synthetic", options={"n_users": 300, "n_items": 80})
    rng = np.random.default_rng(5)
    changed = SequenceDataset(
        dataset.name, dataset.user_ids, dataset.item_ids,
        [np.concatenate([s[:-2], rng.integers(0, dataset.n_items, size=2)]) for s in dataset.sequences],
    )
    config = cf_config(tmp_path, **{"baseline.cf_embed.epochs": 2})
    split, changed_split = LeaveOneOutSplit(dataset), LeaveOneOutSplit(changed)
    assert split.fingerprint["sha256"] != changed_split.fingerprint["sha256"]
    first, _, info = train_cf_embeddings(split, config)
    second, _, changed_info = train_cf_embeddings(changed_split, config)
    assert not changed_info["cache_hit"]
    np.testing.assert_allclose(first, second, rtol=0, atol=1e-6)
    # what RecBole was given is exactly the training parts
    folder = info["dataset_cache"]["folder"]
    name = os.path.basename(folder)
    inter = pd.read_csv(os.path.join(folder, f"{name}.inter"), sep="\t")
    for user, group in inter.groupby("user_id:token"):
        np.testing.assert_array_equal(group["item_id:token"].to_numpy(), split.train_sequences[user])


def test_cf_embed_command(tmp_path, empty_cwd, capsys):
    from bench.commands import cf_embed

    parser = argparse.ArgumentParser(prog="bench")
    cf_embed.add_parser(parser.add_subparsers())
    out = tmp_path / "emb.npy"
    args = parser.parse_args(["cf-embed", "--dataset", "synthetic", "--profile", "smoke",
                              "--set", "baseline.cf_embed.epochs=1", "--out", str(out)])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    n_items = resolve_config("smoke")["data"]["synthetic"]["n_items"]
    assert f"{n_items} x 32" in printed and "item_embeddings.npy" in printed
    assert np.load(out).shape == (n_items, 32)
