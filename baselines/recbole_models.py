"""RecBole's sequential models as harness methods: one class per model, with what the harness must
know of it (RecBole's class name, its losses, the types of its ``baseline.<name>`` section).

Adding a RecBole model: a subclass here (or in a module of its own) plus its registration line in
:mod:`bench.plugins` (with ``defaults=`` for its section). Training and ranking are
:mod:`baselines.recbole_adapter`'s, imported when a model is fitted: RecBole takes seconds to import,
and checking a config or labelling a record needs none of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from baselines.recbole_data import RECBOLE_DATA_VERSION
from bench.config_schema import BaselineTraining, DropoutRate, PositiveInt, Probability, RunConfig, Section
from bench.data.types import DataError
from bench.config import ConfigError
from bench.methods import Recommender, RunContext
from bench.metrics import evaluate_rankings
from bench.plugins import METHODS
from bench.split import LeaveOneOutSplit
from bench.tracking import open_tracker

# bump when a change to the adapter (this module or recbole_adapter: config mapping, losses, training
# loop, ranking) changes numbers
ADAPTER_VERSION = 1
LOSS_NAMES = {"ce": "CE", "bce": "BCE", "bpr": "BPR"}
# RecBole's valid_and_test split holds out 2 of a user's (length - 1) training prefixes, but only if
# at least one prefix is left for training: users need 4 interactions to get both a valid and a test row
MIN_RECBOLE_LENGTH = 4


@dataclass(frozen=True)
class ModelSpec:
    """One registered RecBole model, as the adapter reads it."""

    key: str  # its registered name (--baseline KEY) and its config section baseline.<key>
    recbole_name: str  # RecBole's model class
    display: str  # table label stem
    losses: tuple[str, ...]
    hidden_size_key: str
    loss_note: str = ""


def training_of(section: dict) -> BaselineTraining:
    """The training keys of a ``baseline``-like section (``baseline``, or cf_embed's merged settings),
    typed: what the adapter reads (the model's own sub-section stays a dict for RecBole)."""
    return BaselineTraining.model_validate({key: section[key] for key in BaselineTraining.model_fields})


def loss_of(spec: ModelSpec, section) -> str:
    """The loss a run uses: ``baseline.loss`` where the model has it, else ConfigError."""
    loss = section["loss"]  # one of ce | bce | bpr (the schema's values)
    if loss not in spec.losses:
        note = f" ({spec.loss_note})" if spec.loss_note else ""
        raise ConfigError(f"baseline.loss={loss!r} is not available for {spec.display}; choose one of "
                          f"{', '.join(spec.losses)}{note}")
    return loss


class RecBoleSequential(Recommender):
    """A RecBole sequential model trained and ranked on the harness's split."""

    recbole_name: str  # RecBole's model class
    losses: tuple[str, ...] = ("ce", "bce", "bpr")  # baseline.loss values it can train with
    loss_note: str = ""  # said when a loss it lacks is asked for
    hidden_size_key: str = "hidden_size"  # RecBole's name for baseline.hidden_size in this model
    Params: type[Section]  # the types and ranges of baseline.<name> (its values are in the defaults)

    @classmethod
    def spec_for(cls, name: str) -> ModelSpec:
        """What the adapter needs of the model registered as ``name`` (its section is ``baseline.<name>``)."""
        return ModelSpec(name, cls.recbole_name, METHODS.display(name), tuple(cls.losses), cls.hidden_size_key,
                         cls.loss_note)

    @classmethod
    def label(cls, config: RunConfig) -> str:
        spec = cls.spec_for(config.method)
        return f"{spec.display} ({LOSS_NAMES[loss_of(spec, config.baseline)]})"

    @classmethod
    def components(cls, config: RunConfig) -> dict[str, int]:
        return {**super().components(config), "recbole_adapter": ADAPTER_VERSION,
                "recbole_data": RECBOLE_DATA_VERSION}

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        loss_of(cls.spec_for(config.method), config.baseline)  # ConfigError for a loss it lacks

    def budget(self) -> dict:
        info = self.trained.info
        epochs = int(info["epochs_run"])
        return {
            "optimizer_steps": epochs * int(info["steps_per_epoch"]),
            "epochs": epochs,
            "examples_seen": epochs * int(info["train_examples_per_epoch"]),
            "train_seconds": float(info["train_seconds"]),
            "stop_reason": info["stop_reason"],
            "best_epoch": info["best_epoch"],
        }

    def max_history(self) -> int:
        return self.training.max_seq_len

    def __init__(self, config: RunConfig, context: RunContext):
        super().__init__(config, context)
        self.spec = self.spec_for(config.method)
        # RecBole's settings as the layers gave them (they go into its config and the record)
        self.section = {k: v for k, v in config.plain("baseline").items() if k != "cf_embed"}
        self.training = config.baseline  # its training keys, typed
        self.ks = list(config.eval.ks)
        self.k_store = max(config.eval.max_k, max(self.ks))
        self.rankings: dict[str, np.ndarray] = {}

    def fit(self, split: LeaveOneOutSplit) -> None:
        short = sum(1 for s in split.dataset.sequences if len(s) < MIN_RECBOLE_LENGTH)
        if short:
            raise DataError(
                f"{split.dataset.name}: {short} users have fewer than {MIN_RECBOLE_LENGTH} interactions; RecBole's "
                f"leave-one-out gives such users no validation target (it needs two training prefixes first), "
                f"so its split would differ from the harness's"
            )
        from baselines.recbole_adapter import check_targets, train_sequential  # defer: RecBole takes ~4 s to import

        tracker = open_tracker(self.config, self.context.work_dir)
        try:
            self.trained = train_sequential(
                self.spec, self.section, split.dataset.sequences, split.n_items,
                seed=self.config.seed, ks=self.ks, device=self.context.device,
                work_dir=self.context.work_dir, split=split, report=self.context.report,
                label=self.label(self.config), check=lambda data: check_targets(data, split),
                scalars=tracker.scalars,
            )
        finally:
            tracker.close()
        extras = self.context.extras
        extras.update(self.trained.info)
        extras["targets_checked"] = "RecBole's valid and test targets equal the harness's for every user"
        tolerance = self.training.tolerance
        agreement = {"tolerance": tolerance}
        for stage in ("valid", "test"):
            users, tops = self.trained.full_rankings(stage, self.k_store)
            rankings = np.full((split.n_users, self.k_store), -1, dtype=np.int64)
            rankings[users] = tops
            self.rankings[stage] = rankings
            recbole_result = self.trained.evaluate(stage)
            harness = evaluate_rankings(rankings[users], split.targets(stage)[users], self.trained.rb_config["topk"])
            diffs = {name: abs(harness[name] - value) for name, value in recbole_result.items() if name in harness}
            extras[f"recbole_{stage}_result"] = recbole_result
            extras[f"harness_{stage}_result_same_users"] = {n: harness[n] for n in recbole_result if n in harness}
            agreement[f"{stage}_max_abs_diff"] = max(diffs.values()) if diffs else None
            agreement[f"{stage}_users"] = int(len(users))
        agreement["agree"] = all(
            agreement[f"{s}_max_abs_diff"] is not None and agreement[f"{s}_max_abs_diff"] <= tolerance
            for s in ("valid", "test")
        )
        extras["recbole_agreement"] = agreement
        if not agreement["agree"]:
            raise RuntimeError(
                f"harness and RecBole metrics disagree beyond {tolerance}: "
                f"valid {agreement['valid_max_abs_diff']}, test {agreement['test_max_abs_diff']}"
            )

    def rank(self, split: LeaveOneOutSplit, stage: str, k: int) -> np.ndarray:
        if stage not in ("valid", "test"):
            raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")
        if k > self.k_store:
            users, tops = self.trained.full_rankings(stage, k)
            rankings = np.full((split.n_users, k), -1, dtype=np.int64)
            rankings[users] = tops
            return rankings
        return self.rankings[stage][:, :k]


class TransformerParams(Section):
    """What RecBole's self-attention models (SASRec, BERT4Rec) share in their sections."""

    n_layers: PositiveInt
    n_heads: PositiveInt
    inner_size: PositiveInt
    hidden_dropout_prob: DropoutRate
    attn_dropout_prob: DropoutRate


class SASRec(RecBoleSequential):
    recbole_name = "SASRec"
    version = 1

    class Params(TransformerParams):
        hidden_act: Literal["gelu", "relu", "swish", "tanh", "sigmoid"]


class BERT4Rec(RecBoleSequential):
    recbole_name = "BERT4Rec"
    losses = ("ce",)
    loss_note = "BERT4Rec is trained as RecBole defines it: masked-item CE"
    version = 1

    class Params(TransformerParams):
        mask_ratio: Annotated[float, Field(gt=0, lt=1)]
        ft_ratio: Probability


class GRU4Rec(RecBoleSequential):
    recbole_name = "GRU4Rec"
    hidden_size_key = "embedding_size"  # GRU4Rec's own hidden_size (the GRU state) is in its section
    version = 1

    class Params(Section):
        hidden_size: PositiveInt
        num_layers: PositiveInt
        dropout_prob: DropoutRate
