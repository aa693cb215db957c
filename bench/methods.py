"""The interface every method implements (methods register by name in :mod:`bench.plugins`)."""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from bench.split import LeaveOneOutSplit
from bench.coldstart import COLDSTART_VERSION
from bench.config_schema import RunConfig


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

    def __init__(self, config: RunConfig, context: RunContext):
        self.config = config
        self.context = context

    @classmethod
    def components(cls, config: RunConfig) -> dict[str, int]:
        """Versions of the code behind this method's numbers for ``config``: the method itself plus
        every versioned component it uses (tokenizer, embedder, RecBole data preparation, ...)."""
        if "version" not in vars(cls) or cls.version is None:
            raise TypeError(f"method class {cls.__name__} declares no `version`")
        versions = {f"method/{config.method}": int(cls.version)}
        if config.coldstart.enabled:
            versions["protocol/coldstart"] = COLDSTART_VERSION
        return versions

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        """ConfigError for values of this method's own section that are out of range (called when a
        config is resolved, before any work)."""

    @classmethod
    def preflight(cls, config: RunConfig) -> None:
        """UserError for what can be checked before any data is loaded (a checkpoint to resume from
        that does not fit ``config``): a run stopped here has written nothing."""

    def budget(self) -> dict:
        """What training cost, in the record's ``budget`` keys (``optimizer_steps``, ``epochs``,
        ``examples_seen``, ``stop_reason``, optionally ``train_seconds``); the runner fills in the
        rest (device, torch threads, the fit time where not given). Default: no optimisation."""
        return {"optimizer_steps": 0, "epochs": 0, "examples_seen": 0, "stop_reason": "no training (closed form)"}

    def max_history(self) -> int | None:
        """How many history items the method sees per user (None: it ignores histories)."""
        return self.config.split.max_history

    @classmethod
    def label(cls, config: RunConfig) -> str:
        """The row name in tables (e.g. 'SASRec (CE)', 'TIGER[rqvae]')."""
        return config.method

    @abc.abstractmethod
    def fit(self, split: LeaveOneOutSplit) -> None: ...

    @abc.abstractmethod
    def rank(self, split: LeaveOneOutSplit, stage: str, k: int) -> np.ndarray:
        """Item indices ``[n_users, k]`` best first, -1 padded, for ``stage`` in {'valid', 'test'}."""

