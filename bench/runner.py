"""One run: dataset -> split -> method -> rankings -> evaluator -> run record."""
from __future__ import annotations

import os
import random
import tempfile
import time
import traceback
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from bench.atomic import run_lock
from bench.coldstart import apply_coldstart, cold_users, drop_unseen
from bench.config import ConfigError, flatten
from bench.config_schema import RunConfig
from bench.data import load_dataset
from bench.device import resolve_device, torch_state
from bench.errors import UserError
from bench.progress import say
from bench.identity import config_hash
from bench.methods import RunContext
from bench.plugins import METHODS
from bench.metrics import evaluate_rankings, target_ranks
from bench.provenance import git_commit, hardware, package_versions
from bench.records import SCHEMA_VERSION, refuse_curated_store, write_json_atomic, write_record
from bench.split import LeaveOneOutSplit
from bench.tracking import MLflowRun, NoMLflowRun

STAGES = ("valid", "test")
# in a generative run's work folder: its run id, config and components (``sweeps.trainable.find_interrupted``)
WORK_RUN_FILE = "run.json"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


def make_run_id(config: RunConfig, label: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in label.lower()).strip("-")
    return f"{stamp}-{config.dataset}-{slug}-{config_hash(config.to_record())}"


class StageTimer:
    """Wall-clock seconds per named stage, in the order the stages ran."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + time.perf_counter() - start, 4)


def base_record(config: RunConfig, run_id: str, label: str, started: str, components: dict) -> dict:
    """The fields every record has, completed or failed (see ``bench/schemas/run_record.schema.json``)."""
    plain = config.to_record()
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "label": label,
        "method": config.method,
        "dataset": config.dataset,
        "seed": config.seed,
        "profile": config.profile,
        "config_hash": config_hash(plain),
        "components": components,
        "started_at": started,
        "config": plain,
    }


def code_at_end(at_start: dict) -> dict:
    """The record's ``git``: the commit and dirty state when the run started, plus
    ``changed_during_run`` (the state at the end) where the checkout changed while it ran."""
    at_end = git_commit()
    if (at_end.get("commit"), at_end.get("dirty")) == (at_start.get("commit"), at_start.get("dirty")):
        return at_start
    return at_start | {"changed_during_run": {"commit": at_end.get("commit"), "dirty": at_end.get("dirty")}}


def run(config: RunConfig, report: Callable[[int, dict], None] | None = None, write: bool = True,
        annotations: dict | None = None, dataset=None) -> dict:
    """Run the configured method end to end; return (and by default store) its run record.

    ``annotations`` are extra top-level facts for the record (a sweep's name and selection metric);
    ``dataset`` is the loaded dataset when the caller has it (a sweep ships it to its trials).
    A run that raises leaves a record with ``status: failed`` and the error (when ``write``), then
    re-raises; tables skip failed records.
    """
    method_cls = METHODS.get(config.method)
    label = method_cls.label(config)
    components = method_cls.components(config)
    run_id = make_run_id(config, label)
    started = datetime.now(timezone.utc).isoformat()
    timer = StageTimer()
    # the code that runs is the code at the start: a commit made while a long run trains is not it
    head = base_record(config, run_id, label, started, components) | dict(annotations or {}) | {"git": git_commit()}
    # an unusable results folder stops the run before anything else: nowhere to put a record
    generative = METHODS.info(config.method).generative
    if write:
        refuse_curated_store(config.results_dir)
        ensure_writable_dir(config.results_dir, "results folder (results_dir / --results-dir)")
    if generative:
        ensure_writable_dir(config.work_dir, "work folder (work_dir / --set work_dir=...)")
    method_cls.preflight(config)
    work_dir = Path(config.work_dir) / run_id
    with mlflow_run(config, head) as mlflow:
        record = _run_tracked(config, method_cls, head, timer, report, write, dataset, generative, work_dir)
        mlflow.finish(record)
        return record


def mlflow_run(config: RunConfig, head: dict):
    """The run's MLflow run where ``track.mlflow`` names a tracking store (else a no-op context)."""
    uri = config.track.mlflow
    if not uri:
        return nullcontext(NoMLflowRun())
    tags = {"bench.run_id": head["run_id"], "bench.label": head["label"], "bench.method": config.method,
            "bench.dataset": config.dataset, "bench.seed": config.seed, "bench.profile": config.profile,
            "bench.config_hash": head.get("config_hash"), "git.commit": (head.get("git") or {}).get("commit"),
            "git.dirty": (head.get("git") or {}).get("dirty")}
    return MLflowRun(uri, head["run_id"], flatten(config.to_record()), tags)


def _run_tracked(config, method_cls, head, timer, report, write, dataset, generative, work_dir) -> dict:
    run_id, label = head["run_id"], head["label"]
    started_work = False
    try:
        seed_everything(config.seed)
        with timer("load_data"):
            if dataset is None:
                dataset = load_dataset(config.dataset, config.data_dir, config.plain(f"data.{config.dataset}"))
            cold = None
            if config.coldstart.enabled:
                seed = config.coldstart.seed
                cold = apply_coldstart(dataset, config.coldstart.fraction, config.seed if seed is None else seed)
                dataset = cold.dataset
            split = LeaveOneOutSplit(dataset, max_history=config.split.max_history)
        say(f"run {run_id}: {label} on {config.dataset} (profile {config.profile})"
            + (f"; work folder {work_dir}" if generative else ""))
        started_work = True
        if generative:  # what runs here, so an interrupted trial can be resumed (sweeps.trainable)
            write_json_atomic(work_dir / WORK_RUN_FILE, {"run_id": run_id, "started_at": head["started_at"],
                                                         "config": head["config"], "components": head["components"]})
        # torch_state: a method may set threads / TF32 for its run; restored afterwards
        with run_lock(work_dir) if generative else nullcontext(), torch_state():
            return _run(config, method_cls, head, timer, report, write, split, work_dir, cold)
    except KeyboardInterrupt:
        say(f"run {run_id} interrupted: no record written; {resume_hint(work_dir)}")
        raise
    except RecordNotWritten:
        raise  # the run completed: its metrics are shown, no failed record
    except Exception as err:
        # a user error before the work starts (a missing dataset) leaves no record: nothing ran
        if started_work or not isinstance(err, UserError):
            failed = head | {
                "status": "failed",
                "finished_at": datetime.now(timezone.utc).isoformat(),
                "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc(),
                "timings_s": timer.seconds,
                "git": code_at_end(head["git"]),
            }
            err.run_record = failed  # a sweep trial sends it home to the driver
            if write:
                try:
                    write_record(failed, config.results_dir)
                except OSError as write_err:  # a full disk: the run's own error is the one to show
                    say(f"could not write the failed record of {run_id} either ({write_err.strerror or write_err})")
        raise


class RecordNotWritten(UserError):
    """A run finished but its record could not be written (a full disk): the record travels with the
    error, so the metrics are still shown, and the message says how to recover it."""

    def __init__(self, record: dict, err: OSError, results_dir, work_dir: Path):
        self.record = record
        super().__init__(f"run {record['run_id']} finished but its record could not be written to {results_dir} "
                         f"({err.strerror or err}); the metrics above are the finished run's; once there is room, "
                         f"{resume_hint(work_dir, again=True)}")


def resume_hint(work_dir: Path, again: bool = False) -> str:
    """How to get a stopped run back: ``--resume`` where its work folder holds a checkpoint."""
    if any(Path(work_dir).glob("*.pt")):
        return f"the same command with --resume {work_dir} recovers it from its checkpoint"
    return "run it again" if again else "nothing to resume from (no checkpoint was written)"


def _threads() -> int | None:
    try:
        import torch

        return int(torch.get_num_threads())
    except ImportError:
        return None


def run_budget(method, context: RunContext, fit_seconds: float) -> dict:
    """The record's ``budget``: what training cost (the method's own figures, completed here)."""
    budget = {"optimizer_steps": None, "epochs": None, "examples_seen": None, "train_seconds": None,
              "device": context.device, "threads": _threads(), "stop_reason": None}
    budget.update(method.budget())
    if budget["train_seconds"] is None:
        budget["train_seconds"] = round(float(fit_seconds), 2)
    budget["time_limit_hit"] = budget.get("stop_reason") == "time limit"
    return budget


def ensure_writable_dir(folder: str | os.PathLike, what: str) -> Path:
    """``folder``, created if missing; ConfigError unless a file can be written there."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as err:
        raise ConfigError(f"{what} {folder} is not a writable folder ({err.strerror or err})") from None
    return path


def _run(config, method_cls, head, timer, report, write, split, work_dir, cold=None) -> dict:
    fingerprint = split.fingerprint
    id_based = bool(METHODS.info(config.method).extras.get("id_based"))

    context = RunContext(
        work_dir=work_dir,
        device=resolve_device(config.device),
        report=report or (lambda step, metrics: None),
        unseen_items=cold.unseen if cold is not None else None,
    )
    method = method_cls(config, context)
    say(f"fitting {head['label']}")
    with timer("fit"):
        method.fit(split)
    say("ranking the validation and test users")

    ks = tuple(config.eval.ks)
    max_k = max(config.eval.max_k, max(ks))
    metrics, test_ranks = {}, None
    for stage in STAGES:
        with timer(f"rank_{stage}"):
            rankings = method.rank(split, stage, max_k)
        if cold is not None and id_based:  # no learned embedding for an unseen item: not recommendable
            rankings = drop_unseen(rankings, cold.unseen)
        metrics[stage] = evaluate_rankings(rankings, split.targets(stage), ks, n_items=split.n_items)
        if stage == "test":
            test_ranks = target_ranks(rankings, split.test_targets)
            if cold is not None:
                users = cold_users(split.test_targets, cold.unseen)
                if len(users):
                    metrics["test_cold"] = evaluate_rankings(rankings[users], split.test_targets[users], ks,
                                                             n_items=split.n_items)
                coldstart = {**config.plain("coldstart"), **cold.facts(), "cold_users": int(len(users)),
                             "id_based": id_based}
                if id_based:
                    coldstart["note"] = (f"{head['label']} is ID-based: an unseen item has no learned embedding, so "
                                         "unseen items are removed from its rankings (it scores 0 on cold users)")

    record = head | {
        "status": "completed",
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "dataset_fingerprint": fingerprint,
        "protocol": {
            "split": "leave-one-out (last item test, second-to-last valid)",
            "ranking": "full catalogue",
            "ks": list(ks),
            "ranked_list_length": max_k,
            "split_max_history": config.split.max_history,
            # history items this method saw per user (None: it ignores histories)
            "max_history": method.max_history(),
        },
        "budget": run_budget(method, context, timer.seconds.get("fit", 0.0)),
        **({"coldstart": coldstart} if cold is not None else {}),
        "metrics": metrics,
        # 1-based rank of each user's test target (0 = not in the top max_k), users in dataset order;
        # kept for paired per-user significance tests
        "per_user_test_rank": test_ranks,
        "method_info": context.extras,
        "timings_s": timer.seconds,
        "hardware": {**hardware(), "device": context.device},
        "versions": package_versions(),
        "git": code_at_end(head["git"]),
    }
    if write:
        try:
            record["_path"] = str(write_record(record, config.results_dir))
        except OSError as err:
            raise RecordNotWritten(record, err, config.results_dir, work_dir) from None
    return record
