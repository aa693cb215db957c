import csv

from baselines.atomic_export import write_atomic_files
from bench.data.synthetic import generate_synthetic
from bench.split import LeaveOneOutSplit


def test_inter_file_has_every_interaction_positions_as_time_and_no_missing_values(tmp_path):
    dataset = generate_synthetic(n_users=30, n_items=25, seed=2)
    folder = write_atomic_files(LeaveOneOutSplit(dataset), tmp_path, "synth-x")
    with (folder / "synth-x.inter").open() as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    assert rows[0] == ["user_id:token", "item_id:token", "timestamp:float"]
    body = rows[1:]
    assert len(body) == dataset.n_interactions
    assert all(len(r) == 3 and all(cell != "" for cell in r) for r in body)
    for user, sequence in enumerate(dataset.sequences):
        mine = [r for r in body if r[0] == str(user)]
        assert [int(r[1]) for r in mine] == sequence.tolist()
        assert [float(r[2]) for r in mine] == list(range(len(sequence)))
    assert [p.name for p in tmp_path.iterdir()] == ["synth-x"]  # no staging folders left
