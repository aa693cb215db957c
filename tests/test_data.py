import gzip
import json

import numpy as np
import pytest

from bench.data import DATASETS, load_dataset
from bench.data.amazon_raw import k_core
from bench.data.synthetic import generate_synthetic
from bench.data.types import DataError
from bench.registry import UnknownNameError


def write_folder(root, sequences_text, items=None):
    folder = root / "beauty"
    folder.mkdir(parents=True)
    items = items if items is not None else [{"item_id": i, "title": f"item {i}"} for i in range(1, 6)]
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    (folder / "sequences.txt").write_text(sequences_text)
    return folder


def test_folder_format_round_trip(tmp_path):
    write_folder(tmp_path, "10 1 2 3\n11 5 4 3 2\n")
    dataset = load_dataset("beauty", tmp_path)
    assert dataset.user_ids == ["10", "11"]
    assert dataset.item_ids == ["1", "2", "3", "4", "5"]
    assert [s.tolist() for s in dataset.sequences] == [[0, 1, 2], [4, 3, 2, 1]]
    assert dataset.item_meta[0]["title"] == "item 1"
    assert dataset.stats()["interactions"] == 7


@pytest.mark.parametrize(
    "text, message",
    [
        ("10 1 2 3\n11 1 x 3\n", r"sequences.txt:2: item id 'x' is not a non-negative integer"),
        # Python's int() reads '1_0' as 10 and '²' crashed the old reader: both are bad ids here
        ("10 1 2 3\n11 1_0 3\n", r"sequences.txt:2: item id '1_0' is not a non-negative integer"),
        ("10 1 2 3\n11 \u00b2 3\n", r"sequences.txt:2: item id '\u00b2' is not a non-negative integer"),
        ("10 1 2 3\n\n12 1 99\n", r"sequences.txt:3: item id 99 is not in items.jsonl"),
        ("10 1 2 3\n10 1 2\n", r"sequences.txt:2: user 10 appears on more than one line"),
        ("10\n", r"sequences.txt:1: expected"),
        ("", r"sequences.txt: file is empty"),
    ],
)
def test_malformed_sequences_name_file_and_line(tmp_path, text, message):
    write_folder(tmp_path, text)
    with pytest.raises(DataError, match=message):
        load_dataset("beauty", tmp_path)


def test_malformed_items_name_file_and_line(tmp_path):
    folder = write_folder(tmp_path, "10 1 2 3\n")
    (folder / "items.jsonl").write_text('{"item_id": 1}\n{"item_id": 2\n')
    with pytest.raises(DataError, match=r"items.jsonl:2: not valid JSON"):
        load_dataset("beauty", tmp_path)


def test_missing_dataset_says_where_it_looked(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("sports", tmp_path)
    assert str(tmp_path) in str(err.value) and "bench data download sports" in str(err.value)


def test_bench_data_dir_env_is_searched(tmp_path, monkeypatch):
    write_folder(tmp_path, "10 1 2 3\n")
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path))
    assert load_dataset("beauty").n_users == 1


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UnknownNameError, match="beauty, ml-100k, sports, synthetic, toys"):
        load_dataset("beuty")


def write_gz(path, lines):
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in lines)


def test_raw_2014_files_sorted_by_time_and_5_core(tmp_path):
    reviews = []
    # users a, b, c, d, e each review items i0..i4 (5 each), at times that reverse the file order for 'a'
    for u in "abcde":
        for t, item in enumerate(f"i{k}" for k in range(5)):
            time = 100 - t if u == "a" else t
            reviews.append(json.dumps({"reviewerID": u, "asin": item, "unixReviewTime": time}))
    reviews.append(json.dumps({"reviewerID": "z", "asin": "i0", "unixReviewTime": 1}))  # drops (< 5)
    write_gz(tmp_path / "reviews_Beauty_5.json.gz", reviews)
    write_gz(tmp_path / "meta_Beauty.json.gz", [str({"asin": "i0", "title": "Zero", "categories": [["Beauty"]]})])
    dataset = load_dataset("beauty", tmp_path)
    assert dataset.n_users == 5 and dataset.n_items == 5 and dataset.n_interactions == 25
    first = [dataset.item_ids[i] for i in dataset.sequences[0]]
    assert first == ["i4", "i3", "i2", "i1", "i0"]  # user a, in time order
    assert dataset.item_meta[dataset.item_ids.index("i0")]["title"] == "Zero"


def test_raw_bad_line_is_named(tmp_path):
    write_gz(tmp_path / "reviews_Beauty_5.json.gz", ['{"reviewerID": "a", "asin": "x"}'])
    with pytest.raises(DataError, match=r"reviews_Beauty_5.json.gz:1: needs reviewerID"):
        load_dataset("beauty", tmp_path)


def test_k_core_is_iterative():
    # item z has one user; dropping it leaves user c with one interaction, which must go in a 2nd pass
    rows = [("a", "x", 0), ("a", "y", 1), ("b", "y", 0), ("b", "x", 1), ("c", "x", 0), ("c", "z", 1)]
    assert k_core(rows, 2) == rows[:4]
    assert k_core(rows, 3) == []


def test_ml100k_from_the_recbole_package():
    dataset = load_dataset("ml-100k")
    assert (dataset.n_users, dataset.n_items, dataset.n_interactions) == (943, 1682, 100000)
    assert dataset.item_meta[0]["title"] == "Toy Story" and dataset.item_meta[0]["year"] == "1995"
    assert min(len(s) for s in dataset.sequences) >= 20


def test_synthetic_is_seeded_and_structured():
    a, b = generate_synthetic(seed=1), generate_synthetic(seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a.sequences, b.sequences))
    category = np.array([m["category"] for m in a.item_meta])
    same = np.mean([category[s[t]] == category[s[t + 1]] for s in a.sequences for t in range(len(s) - 1)])
    assert same > 0.8  # users mostly stay within a category
    titles = [m["title"] for m in a.item_meta]
    assert len(set(titles)) == len(titles)


def test_registry_names():
    assert DATASETS.names() == ["beauty", "ml-100k", "sports", "synthetic", "toys"]


@pytest.mark.parametrize(
    "name, counts", [("beauty", (22363, 12101, 198502)), ("sports", (35598, 18357, 296337))]
)
def test_real_amazon_counts(amazon_dir, name, counts):
    dataset = load_dataset(name, amazon_dir)
    assert (dataset.n_users, dataset.n_items, dataset.n_interactions) == counts
