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
    curve = record["method_info"]["training"]["curve"]
    assert [(step, round(value, 5)) for step, value in scalars["valid/ndcg@10"]] == \
        [(p["step"], p["valid_ndcg@10"]) for p in curve]  # the record's validation curve, point for point
    losses = [value for _, value in scalars["train/loss"]]
    assert len(losses) >= record["budget"]["optimizer_steps"] // 20 and losses[-1] < losses[0]

    assert main(args + ["track.tensorboard=false", "seed=7"]) == 0
    assert len(list(work.glob(f"*/{TENSORBOARD_DIR}"))) == 1  # off: no event files


def test_tracking_is_not_part_of_a_runs_identity():
    on = resolve_config("smoke", overrides={"method": "tiger"})
    off = resolve_config("smoke", assignments=["track.tensorboard=false"], overrides={"method": "tiger"})
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
