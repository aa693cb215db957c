"""The interface every method implements, and the registry of methods by name."""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from bench.registry import Registry
from bench.split import LeaveOneOutSplit


@dataclass
class RunContext:
    """What a method may use besides its config: its own work folder, a device and a reporter."""

    work_dir: Path
    device: str = "cpu"
    # called with (step, {"valid_ndcg@10": ...}) during training; sweeps forward it to Ray Tune
    report: Callable[[int, dict], None] = lambda step, metrics: None
    extras: dict = field(default_factory=dict)  # method-specific facts for the run record
    # cold-start protocol: the items no training or validation interaction names (None: standard protocol)
    unseen_items: np.ndarray | None = None


class Recommender(abc.ABC):
    """Fit on a leave-one-out split, then return a ranked item list per user for valid or test.

    Every method class declares ``version`` in its own body: bump it when a change makes its numbers
    differ. It is part of every record's ``components`` and of sweeps' resume keys.
    """

    version: int | None = None

    def __init__(self, config: dict, context: RunContext):
        self.config = config
        self.context = context

    @classmethod
    def components(cls, config: dict) -> dict[str, int]:
        """Versions of the code behind this method's numbers for ``config``: the method itself plus
        every versioned component it uses (tokenizer, embedder, RecBole data preparation, ...)."""
        if "version" not in vars(cls) or cls.version is None:
            raise TypeError(f"method class {cls.__name__} declares no `version`")
        versions = {f"method/{config['method']}": int(cls.version)}
        if (config.get("coldstart") or {}).get("enabled"):
            from bench.coldstart import COLDSTART_VERSION

            versions["protocol/coldstart"] = COLDSTART_VERSION
        return versions

    @classmethod
    def check_config(cls, config: dict) -> None:
        """ConfigError for values of this method's own section that are out of range (called when a
        config is resolved, before any work)."""

    @classmethod
    def preflight(cls, config: dict) -> None:
        """UserError for what can be checked before any data is loaded (a checkpoint to resume from
        that does not fit ``config``): a run stopped here has written nothing."""

    def budget(self) -> dict:
        """What training cost, in the record's ``budget`` keys (``optimizer_steps``, ``epochs``,
        ``examples_seen``, ``stop_reason``, optionally ``train_seconds``); the runner fills in the
        rest (device, torch threads, the fit time where not given). Default: no optimisation."""
        return {"optimizer_steps": 0, "epochs": 0, "examples_seen": 0, "stop_reason": "no training (closed form)"}

    def max_history(self) -> int | None:
        """How many history items the method sees per user (None: it ignores histories)."""
        return int(self.config["split"]["max_history"])

    @classmethod
    def label(cls, config: dict) -> str:
        """The row name in tables (e.g. 'SASRec (CE)', 'TIGER[rqvae]')."""
        return config["method"]

    @abc.abstractmethod
    def fit(self, split: LeaveOneOutSplit) -> None: ...

    @abc.abstractmethod
    def rank(self, split: LeaveOneOutSplit, stage: str, k: int) -> np.ndarray:
        """Item indices ``[n_users, k]`` best first, -1 padded, for ``stage`` in {'valid', 'test'}."""


METHODS = Registry("method")
# display: row name stem in tables; order: position in the baseline / generative group of tables;
# sections: the config sections the method reads (tables apply a section's keys to these methods only)
# id_based: the method knows items only from interactions (no learned embedding for an unseen one)
# budget_keys: the config keys with which a profile fixes the method's training budget; the main and
# tokenizer tables compare only runs at the profile's current values where there are any (RecBole
# baselines declare none: their epochs are an upper bound under early stopping on validation)
RECBOLE = {"sections": ("baseline",), "id_based": True}
METHODS.register("random", "baselines.simple:RandomItems", display="Random", group="baseline", order=0)
METHODS.register("pop", "baselines.simple:MostPopular", display="Pop", group="baseline", order=1,
                 extras={"id_based": True})
METHODS.register("gru4rec", "baselines.recbole_adapter:GRU4Rec", display="GRU4Rec", group="baseline", order=2,
                 extras=RECBOLE)
METHODS.register("bert4rec", "baselines.recbole_adapter:BERT4Rec", display="BERT4Rec", group="baseline", order=3,
                 extras=RECBOLE)
METHODS.register("sasrec", "baselines.recbole_adapter:SASRec", display="SASRec", group="baseline", order=4,
                 extras=RECBOLE)
METHODS.register("semantic_knn", "baselines.semantic_knn:SemanticKNN", display="Semantic-KNN", group="baseline",
                 order=5, extras={"sections": ("baseline", "embed")},
                 defaults={"history": 5, "aggregate": "mean", "batch_users": 1024})
METHODS.register("tiger", "recommenders.tiger:TigerRecommender", display="TIGER", group="generative", order=0,
                 extras={"sections": ("model", "train", "decode", "tokenizer", "embed"),
                         "budget_keys": ("train.max_steps", "train.max_epochs", "train.batch_size")})
