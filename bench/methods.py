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


class Recommender(abc.ABC):
    """Fit on a leave-one-out split, then return a ranked item list per user for valid or test."""

    def __init__(self, config: dict, context: RunContext):
        self.config = config
        self.context = context

    @classmethod
    def label(cls, config: dict) -> str:
        """The row name in tables (e.g. 'SASRec (CE)', 'TIGER[rqvae]')."""
        return config["method"]

    @abc.abstractmethod
    def fit(self, split: LeaveOneOutSplit) -> None: ...

    @abc.abstractmethod
    def rank(self, split: LeaveOneOutSplit, stage: str, k: int) -> np.ndarray:
        """Item indices ``[n_users, k]`` best first, -1 padded, for ``stage`` in {'valid', 'test'}."""


METHODS = Registry(
    "method",
    {
        "pop": "baselines.simple:MostPopular",
        "random": "baselines.simple:RandomItems",
        "tiger": "recommenders.tiger:TigerRecommender",
        "sasrec": "baselines.recbole_adapter:SASRec",
        "bert4rec": "baselines.recbole_adapter:BERT4Rec",
        "gru4rec": "baselines.recbole_adapter:GRU4Rec",
    },
)
