import numpy as np
import pytest

from bench.data.synthetic import generate_synthetic
from bench.data.types import DataError, SequenceDataset
from bench.split import LeaveOneOutSplit


def tiny(sequences, n_items=10):
    return SequenceDataset(
        "tiny", [str(u) for u in range(len(sequences))], [str(i) for i in range(n_items)],
        [np.asarray(s) for s in sequences],
    )


def test_targets_and_training_part():
    split = LeaveOneOutSplit(tiny([[0, 1, 2, 3, 4], [5, 6, 7]]))
    assert split.test_targets.tolist() == [4, 7]
    assert split.valid_targets.tolist() == [3, 6]
    assert [s.tolist() for s in split.train_sequences] == [[0, 1, 2], [5]]


def test_eval_histories_end_right_before_the_target():
    split = LeaveOneOutSplit(tiny([[0, 1, 2, 3, 4], [5, 6, 7]]), max_history=3)
    valid, test = split.eval_batch("valid"), split.eval_batch("test")
    assert valid.items.tolist() == [[0, 1, 2], [-1, -1, 5]]
    assert valid.lengths.tolist() == [3, 1]
    assert test.items.tolist() == [[1, 2, 3], [-1, 5, 6]]
    assert test.targets.tolist() == [4, 7]


def test_train_examples_are_every_prefix_truncated():
    split = LeaveOneOutSplit(tiny([[0, 1, 2, 3, 4, 5, 6]]), max_history=2)
    batch = split.train_examples
    # training part = 0..4: targets 1..4, histories = last <=2 items before each
    assert batch.targets.tolist() == [1, 2, 3, 4]
    assert batch.items.tolist() == [[-1, 0], [0, 1], [1, 2], [2, 3]]
    assert batch.users.tolist() == [0, 0, 0, 0]


def test_no_training_example_uses_a_valid_or_test_target_position():
    dataset = generate_synthetic(n_users=50, n_items=40, seed=3)
    split = LeaveOneOutSplit(dataset)
    batch = split.train_examples
    for user in range(dataset.n_users):
        rows = batch.users == user
        assert rows.sum() == len(dataset.sequences[user]) - 3
        assert batch.targets[rows].tolist() == dataset.sequences[user][1:-2].tolist()


def test_popularity_counts_only_training_parts():
    split = LeaveOneOutSplit(tiny([[0, 1, 2, 3], [0, 9, 9]]))
    counts = split.train_item_counts
    assert counts[0] == 2 and counts[1] == 1 and counts[9] == 0  # 9s are valid/test targets


def test_short_users_are_a_clear_error():
    with pytest.raises(DataError, match="fewer than 3"):
        LeaveOneOutSplit(tiny([[0, 1, 2], [3, 4]]))


def test_fingerprint_tracks_the_sequences():
    a = LeaveOneOutSplit(tiny([[0, 1, 2, 3]])).fingerprint
    b = LeaveOneOutSplit(tiny([[0, 1, 3, 2]])).fingerprint
    c = LeaveOneOutSplit(tiny([[0, 1, 2, 3]])).fingerprint
    assert a["sha256"] != b["sha256"] and a == c
    assert a["users"] == 1 and a["interactions"] == 4 and a["train_examples"] == 1
