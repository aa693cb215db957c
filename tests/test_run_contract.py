"""`bench run` keeps its contract on the paths a hostile tester tried (issue 29): no code runs from a
checkpoint, a wrong --resume fails first and names what differs, a full disk at the end still shows
the metrics, SIGTERM checkpoints like Ctrl-C, seeds have one range, runs never write into the
curated store, work folders sit beside their results store, and the record says what beam decoded."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import bench.runner
from bench.cli import main

REPO = Path(__file__).resolve().parent.parent
# the fastest generative run: random IDs need no text encoder
SMOKE = ["run", "--tokenizer", "random_id", "--dataset", "synthetic", "--profile", "smoke"]


def _store(tmp_path) -> list[str]:
    return ["--results-dir", str(tmp_path / "runs")]


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    last = err[-1] if err else ""
    assert last.startswith("bench: error: "), err
    assert not any("Traceback" in line for line in err), err
    for needle in needles:
        assert needle in last, last
    return last


class Payload:
    """A pickle that runs a command when loaded: what a crafted checkpoint in a shared folder does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished smoke run: its record and its work folder (checkpoint.pt, best.pt)."""
    folder = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCH_CACHE_DIR", str(folder / "cache"))
        assert main([*SMOKE, "--results-dir", str(folder / "runs"), "--set", "train.max_steps=40",
                     "train.eval_every=20", "train.progress=false"]) == 0
    record = json.loads(next((folder / "runs").glob("*.json")).read_text())
    return record, folder / "work" / record["run_id"]


def test_a_crafted_checkpoint_runs_no_code(tmp_path, capsys):
    import torch

    from recommenders.trainer import checkpoint_step

    marker = tmp_path / "owned"
    work = tmp_path / "evil"
    work.mkdir()
    torch.save({"format": 2, "state": {"step": 3}, "x": Payload(marker)}, work / "checkpoint.pt")
    # what `bench sweep --dry-run` does with every checkpoint it finds
    assert checkpoint_step(work) is None
    assert main([*SMOKE, *_store(tmp_path), "--resume", str(work)]) == 2
    _one_line_error(capsys, "refused to read checkpoint", "could run code")
    assert not marker.exists()
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*.json"))


def test_a_mismatched_resume_fails_before_any_data_and_names_the_keys(finished, tmp_path, capsys, monkeypatch):
    _, work = finished

    def refuse(*args, **kwargs):
        raise AssertionError("the dataset was loaded before the resume was checked")

    monkeypatch.setattr(bench.runner, "load_dataset", refuse)
    assert main([*SMOKE, *_store(tmp_path), "--resume", str(work), "--set", "train.eval_every=20", "model.d_model=64"]) == 2
    _one_line_error(capsys, "model.d_model: 32 -> 64")
    assert main(["run", "--tokenizer", "lsh", "--dataset", "synthetic", "--profile", "smoke", *_store(tmp_path),
                 "--resume", str(work)]) == 2
    _one_line_error(capsys, "tokenizer.name: 'random_id' -> 'lsh'")
    assert main([*SMOKE, *_store(tmp_path), "--resume", str(tmp_path / "nothing-here")]) == 2
    _one_line_error(capsys, "no checkpoint at")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "checkpoint.pt").write_bytes(b"\x80\x04truncated")
    assert main([*SMOKE, *_store(tmp_path), "--resume", str(tmp_path / "corrupt")]) == 2
    _one_line_error(capsys, "checkpoint")
    # nothing was left behind: no failed record, no work folder
    assert not list((tmp_path / "runs").glob("*.json"))
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())


def test_a_checkpoint_a_live_run_holds_is_not_resumed(finished, tmp_path, capsys):
    _, work = finished
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; "
         f"lock = FileLock({str(work / '.running.lock')!r}); lock.acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main([*SMOKE, *_store(tmp_path), "--resume", str(work)]) == 2
        _one_line_error(capsys, "still going")
    finally:
        holder.kill()
        holder.wait()


def test_a_full_disk_at_the_end_shows_the_metrics_then_how_to_recover(finished, tmp_path, capsys, monkeypatch):
    _, work = finished
    store = tmp_path / "runs"
    store.mkdir()
    (store / "earlier.json").write_text('{"run_id": "earlier"}')

    def full(record, results_dir):
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(results_dir) / f"{record['run_id']}.json"))

    monkeypatch.setattr(bench.runner, "write_record", full)
    assert main([*SMOKE, *_store(tmp_path), "--resume", str(work), "--set", "train.eval_every=20", "train.progress=false"]) == 2
    out = capsys.readouterr()
    assert "recall@10" in out.out.lower() or "R@10" in out.out, out.out
    last = out.err.strip().splitlines()[-1]
    assert last.startswith("bench: error: ") and "No space left on device" in last and "--resume" in last, out.err
    assert "Traceback" not in out.err
    assert [p.name for p in store.iterdir()] == ["earlier.json"]  # the store is as it was


@pytest.mark.parametrize("seed", ["-1", "99999999999999999999", "4294967296"])
@pytest.mark.parametrize("method", [["run", "--baseline", "pop"], SMOKE[:3]])
def test_seeds_have_one_range_everywhere(method, seed, tmp_path, capsys):
    assert main([*method, "--dataset", "synthetic", *_store(tmp_path), "--set", f"seed={seed}"]) == 2
    _one_line_error(capsys, "seed")
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*.json"))


def test_no_run_writes_into_the_curated_store(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--baseline", "pop", "--dataset", "synthetic", "--results-dir", "results/published"]) == 2
    _one_line_error(capsys, "curated store", "bench publish")
    assert not (tmp_path / "results" / "published").exists()


def test_work_folders_sit_beside_their_store_and_are_named_only_when_made(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "elsewhere" / "runs"
    assert main(["run", "--baseline", "pop", "--dataset", "synthetic", "--results-dir", str(elsewhere)]) == 0
    assert "work folder" not in capsys.readouterr().err  # Pop makes none
    assert main([*SMOKE, "--results-dir", str(elsewhere), "--set", "train.max_steps=5", "train.progress=false"]) == 0
    err = capsys.readouterr().err
    record = json.loads(sorted(elsewhere.glob("*tiger*.json"))[-1].read_text())
    assert (tmp_path / "elsewhere" / "work" / record["run_id"] / "checkpoint.pt").is_file()
    assert f"work folder {tmp_path / 'elsewhere' / 'work' / record['run_id']}" in err
    assert not (tmp_path / "results").exists()  # nothing in ./results


def test_the_record_says_what_beam_decoded(finished, tmp_path):
    record, work = finished
    assert record["method_info"]["decoding"]["test_beam"] == max(record["config"]["decode"]["beam_size"], 20)
    assert main([*SMOKE, *_store(tmp_path), "--resume", str(work), "--set", "train.eval_every=20", "eval.ks=[5,30]",
                 "eval.max_k=30"]) == 0
    wide = json.loads(next((tmp_path / "runs").glob("*.json")).read_text())
    assert wide["config"]["decode"]["beam_size"] < 30
    assert wide["method_info"]["decoding"]["test_beam"] == 30


def test_sigterm_checkpoints_and_says_how_to_resume(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", *SMOKE, *_store(tmp_path), "--set", "train.max_steps=1000000",
         "train.eval_every=1000000", "train.time_limit_min=5"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    lines: list[str] = []

    def read():
        for line in iter(proc.stderr.readline, ""):
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 240
    while not any("train TIGER" in line for line in lines) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # some steps taken
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    reader.join(timeout=10)
    text = "".join(lines)
    assert "Traceback" not in text, text
    assert "bench: terminated" in text and "--resume" in text, text
    work = next((tmp_path / "work").iterdir())
    assert (work / "checkpoint.pt").is_file()


def test_no_sweep_writes_into_the_curated_store(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "smoke", "--results-dir", "results/published"]) == 2
    _one_line_error(capsys, "curated store")
    assert main(["sweep", "smoke", "--results-dir", "results/published", "--dry-run"]) == 0  # a listing reads only
