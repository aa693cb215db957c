"""Datasets by name: ``load_dataset("beauty", data_dir=...)``."""
from __future__ import annotations

from pathlib import Path

from bench.data.amazon import AmazonCategory
from bench.data.ml100k import load_ml100k
from bench.data.synthetic import generate_synthetic
from bench.data.types import DataError, SequenceDataset
from bench.registry import Registry

# display/order: column groups of tables (TIGER's order: Sports, Beauty, Toys); template: the item text
# (field names of item_meta joined by ';') that bench.embed encodes; options: the section data.<name>
DATASETS = Registry("dataset")
DATASETS.register("sports", AmazonCategory("sports", "Sports_and_Outdoors"), display="Sports", order=0,
                  extras={"template": "keywords"})  # the Sports copy has short keyword strings only (no titles)
DATASETS.register("beauty", AmazonCategory("beauty", "Beauty"), display="Beauty", order=1,
                  extras={"template": "title; brand; categories"})
DATASETS.register("toys", AmazonCategory("toys", "Toys_and_Games"), display="Toys", order=2,
                  extras={"template": "title; brand; categories"})
DATASETS.register("ml-100k", lambda data_dir=None, **_: load_ml100k(), display="ML-100K", order=3,
                  extras={"template": "title; year; genres", "embedded": True})
DATASETS.register("synthetic", lambda data_dir=None, **options: generate_synthetic(**options), display="Synthetic",
                  order=4, extras={"template": "title; categories", "embedded": True})


def load_dataset(name: str, data_dir: str | None = None, options: dict | None = None) -> SequenceDataset:
    """Load a registered dataset; ``options`` go to generated datasets (``synthetic``). A ``data_dir``
    that is not a folder is an error for every dataset (also those that do not read it)."""
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise DataError(f"data folder {data_dir} does not exist (or is not a folder)")
    dataset = DATASETS.get(name)(data_dir=data_dir, **(options or {}))
    if dataset.n_users == 0:
        raise DataError(f"dataset {name!r} ({dataset.source}) has no users")
    return dataset


__all__ = ["DATASETS", "DataError", "SequenceDataset", "load_dataset"]
