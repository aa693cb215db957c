"""The Ray Tune trainable: one trial = one ``bench.runner.run`` = one run record.

It lives in the installed package because Ray workers are fresh interpreters that import it by
name (a function defined in a script or a test file cannot be imported there). A trial writes no
file of the results store: its record (completed, or failed with its error) travels home in its last
report (``record_json``) and the driver writes it (``sweeps.ray_runner.RecordsHome``), so trials on
other nodes need no shared results folder. The dataset comes from the driver through Ray's object
store (``datasets``, keyed by :func:`dataset_key`), so worker nodes need no data files.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from bench.config import with_values
from bench.config_schema import RunConfig
from bench.records import _jsonable, iter_sweep_records
from sweeps.spec import record_trial_key, resolve_trial_config, trial_key
from bench import runner
from bench.runner import WORK_RUN_FILE
from bench.atomic import is_running
from bench.identity import stable_hash
from bench.device import CORE_SHARE_ENV


def flat_metrics(metrics: dict) -> dict:
    """``{"valid": {"ndcg@10": x}, "test": {...}}`` -> ``{"valid_ndcg@10": x, "test_...": ...}``."""
    return {f"{stage}_{name}": value for stage, values in metrics.items() for name, value in values.items()}


def find_completed(results_dir: str, key: str) -> dict | None:
    """The newest completed record in the store (and the published store next to it) whose config
    is this trial's (see ``trial_key``)."""
    found = None
    for record in iter_sweep_records(results_dir):
        if record.get("status") == "completed" and record_trial_key(record) == key:
            found = record
    return found


def trial_folders(work_dir: str, key: str) -> list[Path]:
    """Work folders of earlier runs of this trial (their ``run.json`` names its config), oldest first.
    Only folders this machine can see."""
    found = []
    for run_file in sorted(Path(work_dir).glob(f"*/{WORK_RUN_FILE}")):  # run ids start with their start time
        try:
            run = json.loads(run_file.read_text())
            if trial_key(run["config"], run["components"]) == key:
                found.append(run_file.parent)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def find_running(work_dir: str, key: str) -> Path | None:
    """The work folder of a run of this trial that is running now, in another process (another
    sweep sharing the trial, a ``bench run``): starting it again would do the work twice."""
    return next((folder for folder in trial_folders(work_dir, key) if is_running(folder)), None)


def find_interrupted(work_dir: str, key: str) -> Path | None:
    """The newest work folder of an earlier run of this trial that left a checkpoint, is not running
    and left no record (a sweep killed mid-training, a session that ended): the trial resumes from
    it instead of starting again. The caller has checked there is no record."""
    # defer: torch; a Ray worker imports this module to unpickle the trainable, and trials of
    # pop/random/RecBole methods never need TIGER's trainer (as before the layering)
    from recommenders.trainer import CHECKPOINT

    folders = [f for f in trial_folders(work_dir, key) if (f / CHECKPOINT).is_file() and not is_running(f)]
    return folders[-1] if folders else None


def dataset_key(config: RunConfig) -> str:
    """Which loaded dataset a trial needs: its name, folder and generator options."""
    return stable_hash([config.dataset, config.data_dir, config.plain(f"data.{config.dataset}")], 16)


def run_trial(trial: dict, datasets: dict | None = None) -> None:
    """Ray calls this with ``{"base": ..., "point": {dimension: value}, "metric": name}`` and the
    datasets the driver loaded (``{dataset_key: SequenceDataset}``)."""
    from ray import tune

    # defer: torch, as above
    from recommenders.trainer import ResumeError

    config = resolve_trial_config(trial["base"], trial["point"])
    metric = trial.get("metric", "valid_ndcg@10")
    existing = find_completed(config.results_dir, trial_key(config))
    if existing is not None:  # e.g. Optuna proposed a config that is already in the store
        tune.report(final_result(existing, metric) | {"skipped": True})
        return

    last = {}

    def report(step: int, metrics: dict) -> None:
        # intermediate validation metrics, so a scheduler (ASHA) can stop a bad trial early; Tune
        # requires the sweep metric in every result, so a report without it carries the last value
        values = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if metric in values:
            last[metric] = values[metric]
        elif metric in last:
            values[metric] = last[metric]
        else:
            return
        tune.report({**values, "step": int(step), "final": False})

    sweep = trial.get("sweep")
    dataset = (datasets or {}).get(dataset_key(config))
    share_cores_ray_reserved()
    interrupted = find_interrupted(config.work_dir, trial_key(config))
    if interrupted is not None:
        print(f"resuming this trial from its interrupted run's checkpoint: {interrupted}", flush=True)
        config = with_values(config, {"train": {"resume_from": str(interrupted)}})
    annotations = {"sweep": sweep} if sweep else None
    try:
        try:
            record = runner.run(config, report=report, write=False, annotations=annotations, dataset=dataset)
        except ResumeError as err:  # e.g. the checkpoint is for semantic IDs this machine no longer has
            if interrupted is None:
                raise
            print(f"cannot resume ({err}); training this trial from the start", flush=True)
            config = with_values(config, {"train": {"resume_from": None}})
            record = runner.run(config, report=report, write=False, annotations=annotations, dataset=dataset)
    except Exception as err:
        failed = getattr(err, "run_record", None)
        if failed is not None:  # home through Ray; the driver writes it if no retry succeeds
            tune.report({metric: math.nan, "final": False, "failed_record_json": json.dumps(_plain(failed))})
        raise
    tune.report(final_result(record, metric) | {"skipped": False, "record_json": json.dumps(_plain(record))})


def share_cores_ray_reserved() -> None:
    """``train.num_threads: auto`` in a trial = the CPUs Ray reserved for it, not the machine's."""
    import os

    import ray

    if not ray.is_initialized():  # called outside Ray (tests of the trainable)
        return
    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except AssertionError:  # Ray's answer when this process is the driver, not a worker
        return
    if cpus:
        os.environ[CORE_SHARE_ENV] = str(max(1, int(cpus)))


def _plain(record: dict) -> dict:
    return _jsonable({k: v for k, v in record.items() if not k.startswith("_")})


def final_result(record: dict, metric: str) -> dict:
    result = {k: v for k, v in flat_metrics(record["metrics"]).items() if isinstance(v, (int, float))}
    result.setdefault(metric, math.nan)
    return result | {
        "final": True,
        "run_id": record["run_id"],
        "record_path": record.get("_path", ""),
        "config_hash": record.get("config_hash", ""),
    }
