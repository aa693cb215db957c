"""One place per plug-in: a tokenizer registered here, inside the test, goes through `bench run` ->
record -> `bench table` without any harness file knowing its name."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bench.cli import main
from bench.config import resolve_config
from bench.config_schema import PositiveInt, Section
from bench.registry import Registry, UnknownNameError
from tokenizers_zoo import TOKENIZERS
from tokenizers_zoo.base import Tokenizer


class ToyParams(Section):
    levels: PositiveInt
    bits: PositiveInt


class ToyTokenizer(Tokenizer):
    """Codes from the sign pattern of consecutive embedding dimensions (no training)."""

    name = "toy"
    version = 1
    Params = ToyParams
    built = 0  # instances made in this process: a run builds its tokenizer once

    def _init_state(self) -> None:
        type(self).built += 1

    @property
    def level_sizes(self) -> list[int]:
        return [2 ** self.hp.bits] * self.hp.levels

    def _fit(self, item_emb: np.ndarray, cf_emb: np.ndarray | None) -> np.ndarray:
        bits, levels = self.hp.bits, self.hp.levels
        signs = (item_emb[:, : bits * levels] > 0).astype(np.int64).reshape(len(item_emb), levels, bits)
        return (signs * (2 ** np.arange(bits))).sum(axis=2)


@pytest.fixture
def toy_registered():
    TOKENIZERS.register("toy", ToyTokenizer, display="Toy codes", order=9, defaults={"levels": 2, "bits": 3})
    yield
    TOKENIZERS.unregister("toy")


@pytest.mark.slow
def test_a_tokenizer_registered_in_a_test_runs_end_to_end(toy_registered, tmp_path, capsys):
    store = tmp_path / "runs"
    args = ["run", "--tokenizer", "toy", "--dataset", "synthetic", "--profile", "smoke", "--results-dir", str(store),
            "--set", f"work_dir={tmp_path / 'work'}", "train.progress=false", "embed.progress=false"]
    ToyTokenizer.built = 0
    assert main(args) == 0
    assert ToyTokenizer.built == 1  # config check, record components, item-ID stage: one instance
    assert main(args + ["tokenizer.toy.bits=2"]) == 0
    records = [json.loads(p.read_text()) for p in sorted(store.glob("*.json"))]
    assert [r["config"]["tokenizer"]["toy"]["bits"] for r in records] == [3, 2]
    assert records[0]["components"]["tokenizer/toy"] == 1 and records[0]["label"] == "TIGER[toy]"
    capsys.readouterr()
    assert main(["table", "--results-dir", str(store), "--kind", "tokenizers", "--profile", "smoke"]) == 0
    assert "| Toy codes" in capsys.readouterr().out  # the display name its registration gave
    assert main(["table", "--results-dir", str(store), "--kind", "ablation", "--param", "tokenizer.toy.bits",
                 "--profile", "smoke"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| TIGER[toy]")]
    assert [row.split("|")[2].strip() for row in rows] == ["2", "3"]  # one row per value


def test_a_registered_tokenizers_parameters_are_checked_when_the_config_is_resolved(toy_registered):
    config = resolve_config("smoke", overrides={"method": "tiger", "tokenizer": {"name": "toy"}})
    assert config.tokenizer.toy == ToyParams(levels=2, bits=3)
    with pytest.raises(Exception, match="toy.bits"):
        resolve_config("smoke", assignments=["tokenizer.toy.bits=0"], overrides={"method": "tiger",
                                                                                 "tokenizer": {"name": "toy"}})


def test_unknown_names_suggest_the_closest():
    registry = Registry("thing")
    registry.register("letter", object())
    with pytest.raises(UnknownNameError, match="did you mean 'letter'"):
        registry.check("lettre")
    with pytest.raises(UnknownNameError, match="valid thing names: letter"):
        registry.check("zzz")


class NARMParams(Section):
    n_layers: PositiveInt
    dropout_probs: list[float]


@pytest.fixture
def narm_registered():
    """A RecBole model the harness does not ship, added as a user would: a subclass (its RecBole class,
    losses and typed section) and one registration line with its section's defaults."""
    pytest.importorskip("recbole")
    from baselines.recbole_models import RecBoleSequential
    from bench.plugins import METHODS, RECBOLE

    class NARM(RecBoleSequential):
        recbole_name = "NARM"
        losses = ("ce",)
        hidden_size_key = "embedding_size"
        Params = NARMParams
        version = 1

    METHODS.register("narm", NARM, display="NARM", group="baseline", order=9, extras=RECBOLE,
                     defaults={"n_layers": 1, "dropout_probs": [0.25, 0.5]})
    yield
    METHODS.unregister("narm")


def test_a_recbole_model_registered_in_a_test_is_checked_and_runs(narm_registered, tmp_path, capsys):
    with pytest.raises(Exception, match="baseline.narm.n_layers"):
        resolve_config("smoke", assignments=["baseline.narm.n_layers=0"], overrides={"method": "narm"})
    with pytest.raises(Exception, match="not available for NARM"):
        resolve_config("smoke", assignments=["baseline.loss=bce"], overrides={"method": "narm"})
    store = tmp_path / "runs"
    assert main(["run", "--baseline", "narm", "--dataset", "synthetic", "--profile", "smoke",
                 "--results-dir", str(store), "--set", f"work_dir={tmp_path / 'work'}",
                 "baseline.verbose=false", "baseline.epochs=2", "track.tensorboard=false"]) == 0
    record = json.loads(next(store.glob("*.json")).read_text())
    assert record["label"] == "NARM (CE)" and record["config"]["baseline"]["narm"]["n_layers"] == 1
    assert record["method_info"]["recbole_model"] == "NARM"
    assert record["method_info"]["recbole_agreement"]["agree"]  # harness and RecBole metrics agree
    assert record["method_info"]["recbole_config"]["embedding_size"] == record["config"]["baseline"]["hidden_size"]
