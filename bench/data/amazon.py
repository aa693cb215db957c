"""Amazon 2014 5-core categories: found in the folder format or as the raw 2014 files."""
from __future__ import annotations

from dataclasses import dataclass

from bench.data.amazon_raw import load_raw, meta_file, reviews_file
from bench.data.folder_format import ITEMS_FILE, SEQUENCES_FILE, has_folder_format, load_folder
from bench.data.locate import data_dirs
from bench.data.types import DataError, SequenceDataset

RAW_URL = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/{file}"


@dataclass(frozen=True)
class AmazonCategory:
    """One Amazon 2014 category: the short dataset name and the category name of its raw files."""

    name: str
    category: str

    def raw_files(self) -> list[str]:
        return [reviews_file(self.category), meta_file(self.category)]

    def urls(self) -> list[str]:
        return [RAW_URL.format(file=f) for f in self.raw_files()]

    def __call__(self, data_dir: str | None = None, **_options) -> SequenceDataset:
        looked = []
        for root in data_dirs(data_dir):
            for folder in (root / self.name, root):
                looked.append(str(folder))
                if has_folder_format(folder) and folder.name == self.name:
                    return load_folder(folder, self.name)
                reviews = folder / reviews_file(self.category)
                if reviews.is_file():
                    meta = folder / meta_file(self.category)
                    return load_raw(reviews, meta if meta.is_file() else None, self.name)
        raise DataError(
            f"dataset {self.name!r} not found. Looked for {self.name}/{SEQUENCES_FILE} + {ITEMS_FILE} "
            f"or {reviews_file(self.category)} in: {', '.join(dict.fromkeys(looked))}. "
            f"Pass --data-dir (or set $BENCH_DATA_DIR) to a folder holding '{self.name}/', "
            f"or fetch the raw files with `bench data download {self.name}` on a machine with internet."
        )
