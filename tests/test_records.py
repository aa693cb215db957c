import json

import pytest

from bench.records import RecordExistsError, iter_records, write_json_atomic, write_record


def test_write_then_read(tmp_path):
    write_record({"run_id": "r1", "metrics": {"test": {"recall@10": 0.5}}}, tmp_path)
    records = list(iter_records(tmp_path))
    assert records[0]["run_id"] == "r1" and records[0]["metrics"]["test"]["recall@10"] == 0.5


def test_never_overwrites(tmp_path):
    write_record({"run_id": "r1", "v": 1}, tmp_path)
    with pytest.raises(RecordExistsError):
        write_record({"run_id": "r1", "v": 2}, tmp_path)
    assert json.loads((tmp_path / "r1.json").read_text())["v"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["r1.json"]


def test_a_crash_while_serialising_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "r2.json", {"run_id": "r2", "bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_temp_files_are_not_read_as_records(tmp_path):
    (tmp_path / ".r3.json.abc.tmp").write_text("{half")
    write_record({"run_id": "r4"}, tmp_path)
    assert [r["run_id"] for r in iter_records(tmp_path)] == ["r4"]


def test_records_are_readable_by_others(tmp_path):
    path = write_record({"run_id": "r5"}, tmp_path)
    assert path.stat().st_mode & 0o044 == 0o044
