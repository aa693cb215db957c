"""Bad input a new user hit: each is a one-line `bench: error: ...` (exit 2) naming the key, file or
line, found before any heavy work (no dataset loaded), and leaves no record behind."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import bench.runner
from bench.cli import main

SMOKE_TIGER = ["run", "--tokenizer", "rqvae", "--dataset", "ml-100k", "--profile", "smoke"]


@pytest.fixture
def no_data_loading(monkeypatch):
    """Fail the test if a dataset is loaded: the error must come first."""
    def refuse(*args, **kwargs):
        raise AssertionError("a dataset was loaded before the bad input was reported")

    monkeypatch.setattr(bench.runner, "load_dataset", refuse)


def _store(tmp_path) -> list[str]:
    return ["--results-dir", str(tmp_path / "runs"), "--set", f"work_dir={tmp_path / 'work'}"]


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench: error: ") and "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("assignment, names", [
    ("train.batch_size=-5", "train.batch_size"),  # used to hang at 100 % CPU
    ("train.batch_size=0", "train.batch_size"),  # used to be a ZeroDivisionError traceback
    ("model.encoder_layers=abc", "model.encoder_layers"),
    ("seed=abc", "seed"),
    ("split.max_history=0", "split.max_history"),
    ("train.lr=-0.1", "train.lr"),
    ("model.dropout=1.5", "model.dropout"),
    ("decode.beam_size=0", "decode.beam_size"),  # used to run and record 0
    ("tokenizer=rqvae", "'tokenizer' is a section"),
    ("eval.ks=5", "eval.ks"),
    ("tokenizer.rqvae.epochs=abc", "rqvae.epochs"),  # each tokenizer checks its own section
])
def test_bad_values_fail_before_any_work(tmp_path, capsys, no_data_loading, assignment, names):
    assert main(SMOKE_TIGER + _store(tmp_path) + ["--set", assignment]) == 2
    _one_line_error(capsys, names)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_a_baseline_with_zero_epochs_is_refused(tmp_path, capsys, no_data_loading):
    args = ["run", "--baseline", "sasrec", "--dataset", "ml-100k", "--profile", "smoke", "--set", "baseline.epochs=0"]
    assert main(args + _store(tmp_path)) == 2
    _one_line_error(capsys, "baseline.epochs")


def test_typos_suggest_the_name_and_write_no_record(tmp_path, capsys, no_data_loading):
    assert main(["run", "--tokenizer", "rqvea", "--dataset", "ml-100k"] + _store(tmp_path)) == 2
    _one_line_error(capsys, "did you mean 'rqvae'")
    assert main(["run", "--baseline", "sasrex", "--dataset", "ml-100k"] + _store(tmp_path)) == 2
    _one_line_error(capsys, "did you mean 'sasrec'")
    assert main(["run", "--baseline", "pop", "--dataset", "ml100k"] + _store(tmp_path)) == 2
    _one_line_error(capsys, "did you mean 'ml-100k'")
    assert main(["run", "--baseline", "pop", "--set", "model.encoder_layerz=3"] + _store(tmp_path)) == 2
    _one_line_error(capsys, "did you mean 'model.encoder_layers'")
    assert not (tmp_path / "runs").exists()


def test_several_pairs_after_one_set_flag(tmp_path, capsys):
    args = ["run", "--baseline", "pop", "--dataset", "synthetic", "--profile", "smoke", "--set", "seed=7",
            "split.max_history=5"]
    assert main(args + _store(tmp_path)) == 0
    record = json.loads(next((tmp_path / "runs").glob("*.json")).read_text())
    assert record["seed"] == 7 and record["config"]["split"]["max_history"] == 5


@pytest.mark.parametrize("kind", ["file", "proc"])
def test_an_unusable_results_folder_fails_before_training(tmp_path, capsys, no_data_loading, kind):
    target = tmp_path / "a-file" if kind == "file" else Path("/proc/genrec-bench-results")
    if kind == "file":
        target.write_text("not a folder")
    args = ["run", "--baseline", "pop", "--dataset", "ml-100k", "--results-dir", str(target)]
    assert main(args) == 2
    _one_line_error(capsys, "not a writable folder", str(target))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_results_folder_fails_before_training(tmp_path, capsys, no_data_loading):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    assert main(["run", "--baseline", "pop", "--dataset", "ml-100k", "--results-dir", str(folder)]) == 2
    _one_line_error(capsys, "not a writable folder")


def test_resume_on_a_baseline_is_refused(tmp_path, capsys, no_data_loading):
    args = ["run", "--baseline", "sasrec", "--dataset", "ml-100k", "--resume", str(tmp_path)]
    assert main(args + _store(tmp_path)) == 2
    _one_line_error(capsys, "--resume")


def test_a_missing_data_dir_is_an_error_even_for_embedded_datasets(tmp_path, capsys):
    args = ["run", "--baseline", "pop", "--dataset", "ml-100k", "--data-dir", str(tmp_path / "nowhere")]
    assert main(args + _store(tmp_path)) == 2
    _one_line_error(capsys, "does not exist", "nowhere")
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_a_broken_file_in_the_store_is_named_and_skipped(tmp_path, capsys):
    store = tmp_path / "runs"
    assert main(["run", "--baseline", "pop", "--dataset", "synthetic", "--profile", "smoke", "--results-dir",
                 str(store)]) == 0
    (store / "truncated.json").write_text('{"run_id": "x", "metr')
    (store / "empty.json").write_text("")
    (store / "list.json").write_text("[1, 2]")
    capsys.readouterr()
    assert main(["table", "--results-dir", str(store), "--profile", "smoke"]) == 0
    captured = capsys.readouterr()
    assert "| Pop" in captured.out
    for name in ("truncated.json", "empty.json", "list.json"):
        assert f"skipping {store / name}" in captured.err
    assert main(["select", "--results-dir", str(store), "--out", str(tmp_path / "out")]) == 0
    assert main(["render", "--results-dir", str(store), "--out", str(tmp_path / "out")]) == 0
    assert main(["plot", "curve", "--param", "data.synthetic.p_next", "--results-dir", str(store),
                 "--output", str(tmp_path / "curve.png")]) == 0
    assert "skipping" in capsys.readouterr().err
    assert main(["sweep", str(Path(__file__).parent.parent / "sweeps" / "smoke.yaml"), "--results-dir", str(store),
                 "--dry-run"]) == 0


def test_table_filters_and_metrics_must_exist(tmp_path, capsys):
    store = tmp_path / "runs"
    assert main(["run", "--baseline", "pop", "--dataset", "synthetic", "--profile", "smoke", "--results-dir",
                 str(store)]) == 0
    capsys.readouterr()
    assert main(["table", "--results-dir", str(store), "--where", "model.layerz=3"]) == 2
    _one_line_error(capsys, "unknown --where key 'model.layerz'", "encoder_layers")
    assert main(["table", "--results-dir", str(store), "--metrics", "recall@7"]) == 2
    _one_line_error(capsys, "recall@7", "available")
    assert main(["table", "--results-dir", str(store), "--kind", "ablation", "--param", "model.encoder_layerz"]) == 2
    _one_line_error(capsys, "did you mean 'model.encoder_layers'")


def test_an_interrupted_run_names_its_run_and_writes_no_record(tmp_path, capsys, monkeypatch):
    from baselines.simple import MostPopular

    def interrupted(self, split):
        raise KeyboardInterrupt

    monkeypatch.setattr(MostPopular, "fit", interrupted)
    assert main(["run", "--baseline", "pop", "--dataset", "synthetic", "--profile", "smoke"] + _store(tmp_path)) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "-synthetic-pop-" in err
    assert not list((tmp_path / "runs").glob("*.json"))
