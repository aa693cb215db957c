"""Run a sweep spec as a Ray Tune experiment: one trial = one run = one record in the store.

- Grid search: the trials are enumerated here (see ``SweepSpec.grid_points``); trials whose
  completed record is already in the store (same config, paths aside: ``spec.trial_key``) are
  skipped before Ray starts, so re-running a spec only runs what is missing. A trial interrupted
  mid-training goes on from its checkpoint (``sweeps.trainable.find_interrupted``).
- Optuna (TPE, ``ray.tune.search.optuna.OptunaSearch``): Optuna proposes ``num_samples`` points; a
  proposed config that is already in the store is answered from its record instead of re-run.
- ASHA (``--scheduler asha``) stops trials early on the intermediate validation metrics that
  methods report through ``RunContext.report``; a stopped trial writes no record.
- Trials send their records home through Ray and this process writes them (``ray_runner``): a
  failing trial is retried ``max_failures`` times, leaves one ``failed`` record if it never
  succeeds, and never stops the sweep.
- Every config is resolved (and unknown keys rejected) before Ray starts; the datasets are loaded
  here once and shipped to the trials.
- Paths (results, work dir, data dir) are made absolute here.
"""
from __future__ import annotations

import itertools
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tabulate import tabulate

from bench.config import _check_known_keys, deep_merge, default_layer, get_path, parse_assignment
from bench.config_schema import keys_with_role, method_budget_keys
from bench.plugins import METHODS
from bench.provenance import cpu_generation
from bench.records import iter_sweep_records, refuse_curated_store
from sweeps.ray_runner import DEFAULT_CONNECT_TIMEOUT_S, TrialOutcome, _fmt, _format_point, ray_session, run_tuner
from sweeps.spec import check_choices, check_metric, Dimension, point_key, point_of, record_trial_key, resolve_trial_config, SweepSpec, trial_key
from sweeps.trainable import find_interrupted, find_running
from recommenders.trainer import checkpoint_step


@dataclass
class SweepOptions:
    search: str | None = None
    num_samples: int | None = None
    scheduler: str | None = None
    max_failures: int | None = None
    metric: str | None = None
    mode: str | None = None
    results_dir: str | None = None
    data_dir: str | None = None
    address: str | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S  # seconds joining the cluster at `address` may take
    storage_path: str | None = None
    num_cpus: int | None = None
    cpus_per_trial: float | None = None
    gpus_per_trial: float | str | None = None  # None: the spec's resources.gpu (default "auto")
    max_concurrent: int | None = None
    assignments: list[str] = field(default_factory=list)
    profile: str | None = None
    seeds: list[int] | None = None
    dry_run: bool = False
    verbose: bool = False
    allow_test_metric: bool = False


@dataclass
class SweepSummary:
    spec: SweepSpec
    metric: str
    mode: str
    outcomes: list[TrialOutcome]
    results_dir: str
    storage_path: str | None = None

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def ok(self) -> bool:
        return self.count("failed") == 0

    def best(self) -> TrialOutcome | None:
        scored = [o for o in self.outcomes if o.value is not None and not math.isnan(o.value)]
        if not scored:
            return None
        pick = max if self.mode == "max" else min
        return pick(scored, key=lambda o: o.value)


# ---------------------------------------------------------------------- preparing
def apply_options(spec: SweepSpec, options: SweepOptions) -> SweepSpec:
    """The spec with the command line's choices layered on (CLI wins)."""
    if options.profile:
        spec.profile = options.profile
    if options.allow_test_metric:
        spec.allow_test_metric = True
    if options.seeds:
        spec.dimensions = [d for d in spec.dimensions if d.keys != ["seed"]]
        spec.dimensions.append(Dimension("seed", ["seed"], "grid", values=list(options.seeds)))
    for name in ("search", "scheduler", "metric", "mode", "num_samples", "max_failures"):
        value = getattr(options, name)
        if value is not None:
            setattr(spec, name, value)
    if options.cpus_per_trial is not None:
        spec.resources["cpu"] = options.cpus_per_trial
    if options.gpus_per_trial is not None:  # a number, or "auto"
        spec.resources["gpu"] = options.gpus_per_trial
    for text in options.assignments:
        layer = parse_assignment(text)
        _check_known_keys(default_layer(), layer, "", f"--set {text}")
        spec.fixed = deep_merge(spec.fixed, layer)
    if options.results_dir:
        spec.fixed["results_dir"] = options.results_dir
    if options.data_dir:
        spec.fixed["data_dir"] = options.data_dir
    check_choices(spec, f"sweep {spec.name}")
    check_metric(spec, f"sweep {spec.name}")
    return spec


def absolutize_paths(spec: SweepSpec) -> None:
    """Results, work and data folders as absolute paths (trials run in other working directories)."""
    probe = resolve_trial_config(spec.base(), spec.representative_point())
    for key in ("results_dir", "work_dir", "data_dir"):
        value = probe.get(key)
        if value:
            spec.fixed[key] = str(Path(value).expanduser().resolve())


def validate(spec: SweepSpec, points: list[dict] | None) -> list[dict] | None:
    """Resolve every grid trial (or, for Optuna, every categorical value) before Ray starts, so an
    unknown key, name or value fails the sweep at once with the config error (``resolve_config``
    checks them all). Returns the grid trials' configs, in the order of ``points``."""
    base = spec.base()
    if points is not None:
        return [resolve_trial_config(base, point) for point in points]
    probe = spec.representative_point()
    resolve_trial_config(base, probe)
    for dim in spec.dimensions:
        for value in dim.values:
            resolve_trial_config(base, probe | {dim.name: value})
    return None


def completed_index(results_dir: str) -> dict[str, dict]:
    """trial key -> newest completed record in the store (``results_dir`` and the published store
    next to it, see ``bench.records.sweep_stores``)."""
    index = {}
    for record in iter_sweep_records(results_dir):
        if record.get("status") == "completed" and isinstance(record.get("config"), dict):
            index[record_trial_key(record)] = record
    return index


# ---------------------------------------------------------------------- Ray
def launch(spec: SweepSpec, options: SweepOptions | None = None, out: Callable = print) -> SweepSummary:
    options = options or SweepOptions()
    spec = apply_options(spec, options)
    absolutize_paths(spec)
    if spec.allow_test_metric and not spec.metric.startswith("valid_"):
        out(f"warning: selecting on {spec.metric} tunes on the test set (allowed for diagnostics; "
            "every record of this sweep says so)")

    points = spec.grid_points() if spec.search == "grid" else None
    configs = validate(spec, points)
    results_dir = spec.fixed["results_dir"]
    work_dir = spec.fixed.get("work_dir") or str(Path(results_dir).parent / "work")
    storage = str(Path(options.storage_path).resolve()) if options.storage_path else str(Path(work_dir) / "ray")

    outcomes: list[TrialOutcome] = []
    evaluated: list[tuple[dict, float]] = []
    index = completed_index(results_dir)
    if points is not None:
        todo, todo_configs, running = [], [], []
        for point, config in zip(points, configs):
            record = index.get(trial_key(config))
            live = find_running(work_dir, trial_key(config)) if record is None else None
            if record is not None:
                value = _record_metric(record, spec.metric)
                outcomes.append(TrialOutcome(point, "skipped", value, run_id=record["run_id"]))
            elif live is not None:  # e.g. the default trial that several sweeps share
                running.append(point)
                outcomes.append(TrialOutcome(point, "running", None, run_id=live.name))
                out(f"  running in another process: {_format_point(point)} ({live}); its record counts when it lands")
            else:
                todo.append(point)
                todo_configs.append(config)
        elsewhere = f", {len(running)} running in another process" if running else ""
        out(f"sweep {spec.name} (grid): {len(points)} trials, {len(points) - len(todo) - len(running)} already in the "
            f"store{elsewhere}, {len(todo)} to run")
    else:
        todo, todo_configs = None, [resolve_trial_config(spec.base(), spec.representative_point())]
        evaluated = stored_results(spec, index)
        out(f"sweep {spec.name} (optuna/TPE): {spec.num_samples or 10} new trials over "
            f"{', '.join(d.describe() for d in spec.dimensions)}; {len(evaluated)} already in the store")
    out(f"records: {results_dir}")
    if not options.dry_run:  # a listing may read the curated store; trials write only to a scratch one
        refuse_curated_store(results_dir)

    if options.dry_run:
        planned = todo_configs if todo is not None else todo_configs * int(spec.num_samples or 10)

        timed, here = list(index.values()), cpu_generation()
        stated = spec.minutes_per_trial * 60 if spec.minutes_per_trial else None
        interrupted = [find_interrupted(work_dir, trial_key(config)) for config in planned] if todo is not None else []
        done_steps = [checkpoint_step(folder) if folder else None for folder in interrupted]
        timings = [estimate_seconds(config, timed, here, done) for config, done in
                   itertools.zip_longest(planned, done_steps)]
        estimates = [seconds or stated for seconds, _ in timings]
        for point, seconds, (_, basis), folder, done in zip(todo or [], estimates, timings, interrupted, done_steps):
            detail = f"  (~{seconds / 60:.0f} min, {basis or 'the spec states it'})" if seconds else ""
            if folder:
                at = f" (step {done})" if done is not None else ""
                detail += f"\n      resumes from the checkpoint{at} of its interrupted run {folder}"
            out(f"  would run: {_format_point(point)}{detail}")
        out(format_estimate(estimates, spec, options))
        return SweepSummary(spec, spec.metric, spec.mode, outcomes, results_dir)

    if todo is None or todo:
        where = f"cluster at {options.address}" if options.address else \
            f"local Ray ({options.num_cpus or os.cpu_count()} CPUs)"
        out(f"Ray: {where}; Ray's own files: {storage}")
        with ray_session(options.address, options.num_cpus, options.verbose, out, options.connect_timeout):
            outcomes += run_tuner(spec, todo, options, storage, out, evaluated if todo is None else None,
                                  stored_keys=set(index), configs=todo_configs)
    order = {point_key(p): i for i, p in enumerate(points or [])}
    outcomes.sort(key=lambda o: order.get(point_key(o.point), len(order)))
    return SweepSummary(spec, spec.metric, spec.mode, outcomes, results_dir, storage)


# test-time settings whose cost can match the training's: decoding studies and the beam's width
_TEST_TIME_COST = keys_with_role("test_time_cost")


def estimate_seconds(config: RunConfig, records: list[dict], generation: str | None = None,
                     done_steps: int | None = None) -> tuple[float | None, str]:
    """Wall seconds a trial with ``config`` should take, and what they were timed on: the median total
    time of the completed ``records`` of the same method, dataset, profile and tokenizer, their training
    time scaled to the trial's optimizer steps where the trial has a step budget. Records of this
    machine's CPU ``generation`` are preferred: one generation trained TIGER 2.2x as fast as another
    under the same model name; so are records of the same test-time study (sampling 100 items per user
    at three temperatures took as long as the training). A record resumed from another run's
    checkpoint counts the training done there too. (None, "") without such records."""
    import statistics

    def study(record_config: dict) -> tuple:
        return tuple(repr(get_path(record_config, key)) for key in _TEST_TIME_COST)

    method = METHODS.info(config.method)  # what the method reads and which keys fix its budget
    reads_tokenizer = "tokenizer" in method.extras.get("sections", ())
    step_budget = "train.max_steps" in method_budget_keys(config.method)
    plain = config.to_record()  # compared with stored records' configs, value for value

    def same(record: dict) -> bool:
        other = record.get("config") or {}
        keys = ("method", "dataset", "profile")
        if any(other.get(k) != plain.get(k) for k in keys):
            return False
        return not reads_tokenizer or get_path(other, "tokenizer.name") == config.tokenizer.name

    def seconds_of(record: dict) -> float:
        timings = record.get("timings_s") or {}
        seconds = sum(timings.values())
        budget = record.get("budget") or {}
        steps, train = budget.get("optimizer_steps"), budget.get("train_seconds")
        if train and "fit" in timings:  # training seconds of all sessions, the fit only this one's
            seconds += max(float(train) - float(timings["fit"]), 0.0)
        planned = config.train.max_steps if step_budget else None
        if steps and planned and train:  # the training part scales with the steps, whatever stopped it
            left = max(float(planned) - float(done_steps or 0), 0.0)  # a resumed trial: the steps it has left
            seconds += train * (left / float(steps) - 1.0)
        return seconds

    similar = list(filter(same, records))
    if not similar:
        return None, ""
    alike = [r for r in similar if study(r.get("config") or {}) == study(plain)]
    similar = alike or similar
    local = [r for r in similar if generation and (r.get("hardware") or {}).get("cpu_generation") == generation]
    if local:
        return statistics.median(map(seconds_of, local)), f"timed on this CPU ({len(local)} run(s))"
    return statistics.median(map(seconds_of, similar)), (
        f"timed on other or unrecorded CPUs ({len(similar)} run(s)): this CPU may differ")


def format_estimate(estimates: list[float | None], spec: SweepSpec, options: SweepOptions) -> str:
    """One line: trials, and the estimated wall time with the trials that run side by side."""
    known = [e for e in estimates if e]
    if not estimates:
        return "estimated wall time: nothing to run"
    cpus = options.num_cpus or os.cpu_count() or 1
    parallel = max(1, int(cpus // max(float(spec.resources.get("cpu", 1)), 1e-9)))
    if options.max_concurrent:
        parallel = min(parallel, options.max_concurrent)
    if not known:
        return (f"{len(estimates)} trials; estimated wall time unknown (no completed run of the same method, "
                f"dataset and profile in the store to time them by, and the spec states no minutes_per_trial)")
    mean = sum(known) / len(known)
    total = max(sum(e or mean for e in estimates) / parallel, max(known))  # never below the longest trial
    basis = "" if len(known) == len(estimates) else f" ({len(estimates) - len(known)} without a timed run: at the mean)"
    return (f"{len(estimates)} trials; estimated wall time {total / 3600:.1f} h with {parallel} at a time "
            f"(from the timings of earlier runs in the store, this CPU's where there are any, or the spec's "
            f"minutes_per_trial{basis})")


def stored_results(spec: SweepSpec, index: dict[str, dict]) -> list[tuple[dict, float]]:
    """(point, metric value) of every completed record in the store that is a trial of ``spec``
    (same resolved config and component versions as the point would give)."""
    found = []
    for key, record in index.items():
        point = point_of(spec, record["config"])
        if point is None or trial_key(resolve_trial_config(spec.base(), point)) != key:
            continue
        value = _record_metric(record, spec.metric)
        if value is not None:
            found.append((point, value))
    return found


def _record_metric(record: dict, metric: str) -> float | None:
    stage, _, name = metric.partition("_")
    value = get_path(record.get("metrics", {}), f"{stage}.{name}") if name else None
    return float(value) if isinstance(value, (int, float)) else None


def format_summary(summary: SweepSummary) -> str:
    dims = [d.name for d in summary.spec.dimensions]
    rows = []
    for i, o in enumerate(summary.outcomes, 1):
        value = "" if o.value is None or math.isnan(o.value) else f"{o.value:.4f}"
        rows.append([i] + [_fmt(o.point.get(d, "")) for d in dims] + [o.status, value, o.run_id or o.error])
    table = tabulate(rows, ["#"] + dims + ["status", summary.metric, "run / error"], tablefmt="github",
                     disable_numparse=True)
    counts = ", ".join(
        f"{summary.count(s)} {label}" for s, label in (
            ("completed", "completed"), ("skipped", "skipped (already in the store)"),
            ("running", "running in another process"),
            ("failed", "failed"), ("stopped", "stopped early"))
    )
    lines = [f"sweep {summary.spec.name}: {len(summary.outcomes)} trials: {counts}", table]
    best = summary.best()
    if best is not None:
        lines.append(f"best ({summary.mode} {summary.metric}): {_format_point(best.point)} -> {best.value:.4f}"
                     + (f" [{best.run_id}]" if best.run_id else ""))
    if summary.count("failed"):
        lines.append(f"failed trials left records with status 'failed' (error and traceback) in {summary.results_dir}")
    return "\n".join(lines)


def print_flush(text: str = "") -> None:
    print(text, flush=True)
    sys.stdout.flush()
