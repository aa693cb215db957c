"""The `bench` command end to end on the embedded default dataset (offline)."""
import json
import urllib.error

import numpy as np
import pytest

from bench.cli import main
from bench.data import load_dataset
from bench.split import LeaveOneOutSplit


def test_bench_run_pop_on_ml100k_writes_a_complete_record(tmp_path, capsys):
    results = tmp_path / "runs"
    assert main(["run", "--baseline", "pop", "--dataset", "ml-100k", "--results-dir", str(results),
                 "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "Pop on ml-100k" in out and "R@10" in out
    [path] = list(results.glob("*.json"))
    record = json.loads(path.read_text())
    assert record["status"] == "completed" and record["method"] == "pop"
    assert record["config"]["dataset"] == "ml-100k" and record["config"]["profile"] == "smoke"
    assert record["dataset_fingerprint"]["users"] == 943 and len(record["dataset_fingerprint"]["sha256"]) == 64
    assert set(record["timings_s"]) >= {"load_data", "fit", "rank_valid", "rank_test"}
    assert record["versions"]["numpy"] and "cpu_count" in record["hardware"]
    assert "commit" in record["git"]
    # most-popular's recall@10, recomputed independently from the split
    split = LeaveOneOutSplit(load_dataset("ml-100k"))
    counts = np.bincount(np.concatenate(split.train_sequences), minlength=split.n_items)
    top10 = np.argsort(-counts, kind="stable")[:10]
    assert record["metrics"]["test"]["recall@10"] == pytest.approx(np.isin(split.test_targets, top10).mean())
    assert 0 < record["metrics"]["test"]["recall@10"] < 0.2
    ranks = np.array(record["per_user_test_rank"])
    assert len(ranks) == 943 and ((ranks >= 1) & (ranks <= 10)).mean() == pytest.approx(
        record["metrics"]["test"]["recall@10"])


def test_table_renders_the_store(tmp_path, capsys):
    results = str(tmp_path / "runs")
    for baseline in ("pop", "random"):
        main(["run", "--baseline", baseline, "--dataset", "synthetic", "--results-dir", results, "--profile", "smoke"])
    capsys.readouterr()
    assert main(["table", "--results-dir", results]) == 0
    out = capsys.readouterr().out
    assert "| Pop" in out and "| Random" in out and "**" in out
    assert main(["table", "--results-dir", results, "--format", "latex"]) == 0
    assert r"\toprule" in capsys.readouterr().out


def test_unknown_names_list_the_valid_ones(capsys):
    assert main(["run", "--baseline", "nope", "--no-record"]) == 2
    assert "valid method names: " in capsys.readouterr().err
    assert main(["data", "stats", "nope"]) == 2
    assert "beauty, ml-100k, sports, synthetic, toys" in capsys.readouterr().err


def test_bad_set_is_a_clear_error(capsys):
    assert main(["run", "--baseline", "pop", "--set", "eval.kz=3", "--no-record"]) == 2
    assert "unknown config key 'eval.kz'" in capsys.readouterr().err


def test_data_stats(capsys):
    assert main(["data", "stats", "ml-100k"]) == 0
    out = capsys.readouterr().out
    assert "943" in out and "1682" in out and "100000" in out


def test_data_stats_beauty(amazon_dir, capsys):
    assert main(["data", "stats", "beauty", "--data-dir", str(amazon_dir)]) == 0
    out = capsys.readouterr().out
    assert "22363" in out and "12101" in out and "198502" in out


def test_download_offline_fails_at_once_with_a_clear_message(tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    assert main(["data", "download", "beauty", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot download" in err and "offline" in err
    assert not any(tmp_path.rglob("*.gz")) and not any(tmp_path.rglob("*.part"))


@pytest.mark.parametrize(
    "command",
    [[], ["run"], ["data"], ["data", "stats"], ["data", "download"], ["tokenize"], ["cf-embed"], ["table"],
     ["sweep"], ["plot"], ["render"]],
)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(command + ["--help"])
    assert exit_.value.code == 0
    assert "usage: bench" in capsys.readouterr().out


def test_a_failing_run_leaves_a_failed_record(tmp_path, monkeypatch):
    from baselines.simple import MostPopular

    def boom(self, split):
        raise RuntimeError("exploded in fit")

    monkeypatch.setattr(MostPopular, "fit", boom)
    with pytest.raises(RuntimeError):
        main(["run", "--baseline", "pop", "--dataset", "synthetic", "--results-dir", str(tmp_path), "--profile", "smoke"])
    [path] = list(tmp_path.glob("*.json"))
    record = json.loads(path.read_text())
    assert record["status"] == "failed" and "exploded in fit" in record["error"]
    assert "metrics" not in record


def test_resume_sets_the_checkpoint_path():
    from bench.commands.run import method_overrides
    from bench.cli import build_parser

    args = build_parser().parse_args(["run", "--tokenizer", "rqvae", "--resume", "results/work/x"])
    assert method_overrides(args) == {
        "method": "tiger", "tokenizer": {"name": "rqvae"}, "train": {"resume_from": "results/work/x"}}
