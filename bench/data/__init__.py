"""Datasets by name: ``load_dataset("beauty", data_dir=...)``."""
from __future__ import annotations

from bench.data.amazon import AmazonCategory
from bench.data.ml100k import load_ml100k
from bench.data.synthetic import generate_synthetic
from bench.data.types import DataError, SequenceDataset
from bench.registry import Registry

DATASETS = Registry(
    "dataset",
    {
        "beauty": AmazonCategory("beauty", "Beauty"),
        "sports": AmazonCategory("sports", "Sports_and_Outdoors"),
        "toys": AmazonCategory("toys", "Toys_and_Games"),
        "ml-100k": lambda data_dir=None, **_: load_ml100k(),
        "synthetic": lambda data_dir=None, **options: generate_synthetic(**options),
    },
)


def load_dataset(name: str, data_dir: str | None = None, options: dict | None = None) -> SequenceDataset:
    """Load a registered dataset; ``options`` go to generated datasets (``synthetic``)."""
    dataset = DATASETS.get(name)(data_dir=data_dir, **(options or {}))
    if dataset.n_users == 0:
        raise DataError(f"dataset {name!r} ({dataset.source}) has no users")
    return dataset


__all__ = ["DATASETS", "DataError", "SequenceDataset", "load_dataset"]
