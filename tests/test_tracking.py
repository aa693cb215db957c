"""Training progress goes to TensorBoard event files in the run's work folder (on by default, off
with track.tensorboard=false), read back here with TensorBoard's own event reader."""
from __future__ import annotations

import json

import pytest

from bench.cli import main
from bench.config import resolve_config
from bench.identity import config_identity
from bench.tracking import TENSORBOARD_DIR


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.slow
def test_a_tiger_run_writes_its_loss_and_validation_curve_to_tensorboard(tmp_path):
    store, work = tmp_path / "runs", tmp_path / "work"
    args = ["run", "--tokenizer", "random_id", "--dataset", "synthetic", "--profile", "smoke", "--results-dir", str(store),
            "--set", f"work_dir={work}", "train.progress=false", "embed.progress=false"]
    assert main(args) == 0
    [record] = [json.loads(p.read_text()) for p in store.glob("*.json")]
    [folder] = list(work.glob(f"*/{TENSORBOARD_DIR}"))
    assert folder.parent.name == record["run_id"]
    scalars = _scalars(folder)
    assert {"train/loss", "train/lr", "train/examples_per_s", "valid/ndcg@10"} <= set(scalars)
    assert scalars["tokenizer/random_id/utilisation_l1"][0][1] == pytest.approx(
        record["method_info"]["tokenizer"]["stats"]["utilisation"][0])  # the tokenizer's codebook use
    curve = record["method_info"]["training"]["curve"]
    assert [(step, round(value, 5)) for step, value in scalars["valid/ndcg@10"]] == \
        [(p["step"], p["valid_ndcg@10"]) for p in curve]  # the record's validation curve, point for point
    losses = [value for _, value in scalars["train/loss"]]
    assert len(losses) >= record["budget"]["optimizer_steps"] // 20 and losses[-1] < losses[0]

    assert main(args + ["track.tensorboard=false", "seed=7"]) == 0
    assert len(list(work.glob(f"*/{TENSORBOARD_DIR}"))) == 1  # off: no event files


def test_tracking_is_not_part_of_a_runs_identity():
    on = resolve_config("smoke", overrides={"method": "tiger"}).to_record()
    off = resolve_config("smoke", assignments=["track.tensorboard=false"], overrides={"method": "tiger"}).to_record()
    assert config_identity(on) == config_identity(off)
    stored = {k: v for k, v in on.items() if k != "track"}  # a record from before tracking existed
    assert config_identity(stored) == config_identity(on)


@pytest.mark.slow
def test_a_recbole_run_writes_its_epochs_to_tensorboard(tmp_path):
    store, work = tmp_path / "runs", tmp_path / "work"
    assert main(["run", "--baseline", "sasrec", "--dataset", "ml-100k", "--profile", "smoke", "--results-dir", str(store),
                 "--set", f"work_dir={work}"]) == 0
    [record] = [json.loads(p.read_text()) for p in store.glob("*.json")]
    [folder] = list(work.glob(f"*/{TENSORBOARD_DIR}"))
    scalars = _scalars(folder)
    assert {"train/loss", "valid/ndcg@10"} <= set(scalars)
    assert len(scalars["valid/ndcg@10"]) == record["budget"]["epochs"]


def test_a_tokenizer_fit_curve_goes_to_the_tracker_epoch_by_epoch():
    import numpy as np

    from bench.tracking import Tracker, track_tokenizer_fit
    from tokenizers_zoo import TOKENIZERS

    class Recorder(Tracker):
        def __init__(self):
            self.points = []

        def scalars(self, step, values):
            self.points += [(tag, step, value) for tag, value in values.items()]

    emb = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    tokenizer = TOKENIZERS.get("rqvae")({"levels": 2, "codebook_size": 4, "code_dim": 4, "hidden": [8], "epochs": 6,
                                         "batch_size": 32, "optimizer": "adamw", "lr": 0.01}, progress=False).fit(emb)
    recorder = Recorder()
    track_tokenizer_fit(recorder, "rqvae", tokenizer.info, tokenizer.stats())
    losses = [(step, value) for tag, step, value in recorder.points if tag == "tokenizer/rqvae/loss"]
    assert losses == [(entry["epoch"], entry["loss"]) for entry in tokenizer.info["history"]] and len(losses) == 6
    assert {"tokenizer/rqvae/recon", "tokenizer/rqvae/util_l1", "tokenizer/rqvae/utilisation_l2",
            "tokenizer/rqvae/collision_rate"} <= {tag for tag, _, _ in recorder.points}


def _mlflow_runs(uri):
    from mlflow.tracking import MlflowClient

    from bench.tracking import MLFLOW_EXPERIMENT

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(MLFLOW_EXPERIMENT)
    return client, {run.data.tags["bench.run_id"]: run for run in client.search_runs([experiment.experiment_id])}


@pytest.mark.slow
def test_with_mlflow_on_a_run_is_in_the_sqlite_store_and_an_interrupted_one_is_marked_killed(tmp_path):
    pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store, work = tmp_path / "runs", tmp_path / "work"
    args = ["run", "--tokenizer", "random_id", "--dataset", "synthetic", "--profile", "smoke", "--results-dir", str(store),
            "--set", f"work_dir={work}", "train.progress=false", "embed.progress=false", f"track.mlflow={uri}"]
    assert main(args) == 0
    [record] = [json.loads(p.read_text()) for p in store.glob("*.json")]
    client, runs = _mlflow_runs(uri)
    run = runs[record["run_id"]]
    assert run.info.status == "FINISHED"
    assert run.data.params["model.d_model"] == str(record["config"]["model"]["d_model"])  # the resolved config
    assert run.data.tags["bench.label"] == record["label"] and run.data.tags["git.commit"] == str(record["git"]["commit"])
    assert run.data.tags["budget.optimizer_steps"] == str(record["budget"]["optimizer_steps"])
    assert run.data.metrics["final/test/ndcg_at_10"] == pytest.approx(record["metrics"]["test"]["ndcg@10"])
    curve = client.get_metric_history(run.info.run_id, "valid/ndcg_at_10")  # MLflow names allow no '@'

    assert [(m.step, round(m.value, 5)) for m in curve] == \
        [(p["step"], p["valid_ndcg@10"]) for p in record["method_info"]["training"]["curve"]]
    artifact = client.download_artifacts(run.info.run_id, "record.json", str(tmp_path))
    assert json.loads(open(artifact).read())["run_id"] == record["run_id"]  # the JSON record itself

    from bench.runner import run as run_method

    config = resolve_config("smoke", overrides={"method": "tiger", "dataset": "synthetic",
                                                "tokenizer": {"name": "random_id"}, "results_dir": str(store)},
                            assignments=[f"work_dir={work}", "train.progress=false", f"track.mlflow={uri}"])

    def stop(step, metrics):  # Ctrl-C (or SIGTERM, bench.cli.Terminated) at the first validation
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_method(config, report=stop)
    _, runs = _mlflow_runs(uri)
    [killed] = [r for r in runs.values() if r.info.status != "FINISHED"]
    assert killed.info.status == "KILLED"

    def crash(step, metrics):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run_method(config, report=crash)
    _, runs = _mlflow_runs(uri)
    [failed] = [r for r in runs.values() if r.info.status == "FAILED"]
    assert "boom" in failed.data.tags["error"]


def test_a_tracking_store_that_fails_during_a_run_stops_tracking_not_the_run(tmp_path, capsys):
    pytest.importorskip("mlflow")
    from bench.tracking import MLflowRun

    with MLflowRun(f"sqlite:///{tmp_path / 'mlflow.db'}", "r1", {"a.b": 1}, {"bench.run_id": "r1"}) as run:
        run.scalars(1, {"train/loss": 2.0})

        def down(*args, **kwargs):
            raise ConnectionError("the tracking server went away")

        run.client.log_batch = down
        run.scalars(2, {"train/loss": 1.0})  # warns, does not raise
        run.scalars(3, {"train/loss": 0.5})
        run.finish({"metrics": {"test": {"ndcg@10": 0.1}}})
    assert run.broken
    err = capsys.readouterr().err
    assert err.count("MLflow tracking stopped") == 1 and "went away" in err
