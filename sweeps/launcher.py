"""Run a sweep spec as a Ray Tune experiment: one trial = one run = one record in the store.

- Grid search: the trials are enumerated here (see ``SweepSpec.grid_points``); trials whose
  completed record is already in the store (same config, paths aside: ``spec.trial_key``) are
  skipped before Ray starts, so re-running a spec only runs what is missing.
- Optuna (TPE, ``ray.tune.search.optuna.OptunaSearch``): Optuna proposes ``num_samples`` points; a
  proposed config that is already in the store is answered from its record instead of re-run.
- ASHA (``--scheduler asha``) stops trials early on the intermediate validation metrics that
  methods report through ``RunContext.report``; a stopped trial writes no record.
- A failing trial writes a ``failed`` record (the runner does that), is retried ``max_failures``
  times, and never stops the sweep.
- Every config is resolved (and unknown keys rejected) before Ray starts.
- Paths (results, work dir, data dir) are made absolute here, so trials write to the same store
  whatever their working directory; on a cluster those folders must be shared storage.
"""
from __future__ import annotations

import logging
import math
import os
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from tabulate import tabulate

from bench.config import ConfigError, deep_merge, get_path
from sweeps.spec import SweepSpec, check_choices, check_metric, record_trial_key, resolve_trial_config, trial_key


class SweepError(ConfigError):
    """A sweep that cannot start (bad spec, unreachable cluster)."""


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
    storage_path: str | None = None
    num_cpus: int | None = None
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None
    assignments: list[str] = field(default_factory=list)
    profile: str | None = None
    seeds: list[int] | None = None
    dry_run: bool = False
    verbose: bool = False
    allow_test_metric: bool = False


@dataclass
class TrialOutcome:
    point: dict
    status: str  # completed | skipped | failed | stopped
    value: float | None = None
    run_id: str = ""
    error: str = ""


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
    from bench.config import parse_assignment
    from sweeps.spec import Dimension

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
    if options.gpus_per_trial is not None:
        spec.resources["gpu"] = options.gpus_per_trial
    for text in options.assignments:
        spec.fixed = deep_merge(spec.fixed, parse_assignment(text))
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


def check_config(config: dict) -> None:
    from bench.data import DATASETS
    from bench.methods import METHODS

    METHODS.get(config["method"])
    DATASETS.get(config["dataset"])


def validate(spec: SweepSpec, points: list[dict] | None) -> None:
    """Resolve every grid trial (or, for Optuna, every categorical value) before Ray starts, so an
    unknown key or name fails the sweep at once with the config error."""
    base = spec.base()
    if points is not None:
        for point in points:
            check_config(resolve_trial_config(base, point))
        return
    probe = spec.representative_point()
    check_config(resolve_trial_config(base, probe))
    for dim in spec.dimensions:
        for value in dim.values:
            check_config(resolve_trial_config(base, probe | {dim.name: value}))


def completed_index(results_dir: str) -> dict[str, dict]:
    """trial key -> newest completed record in the store."""
    from bench.records import iter_records

    index = {}
    for record in iter_records(results_dir):
        if record.get("status") == "completed" and isinstance(record.get("config"), dict):
            index[record_trial_key(record)] = record
    return index


# ---------------------------------------------------------------------- Ray
@contextmanager
def ray_session(address: str | None, num_cpus: int | None, verbose: bool, out: Callable):
    """A local Ray sized to this machine, or the cluster at ``address``; reuses a connected session."""
    import ray

    if ray.is_initialized():
        out("using the Ray session this process is already connected to")
        yield
        return
    kwargs = dict(logging_level=logging.INFO if verbose else logging.ERROR, log_to_driver=verbose)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            # "local": always a fresh instance, never a cluster left running on this machine
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        hint = (" (is `ray start --head` running there? A head started without RAY_AUTH_MODE=disabled "
                "needs RAY_AUTH_MODE=token and its token here)") if address else ""
        raise SweepError(f"cannot start or join {where}: {err}{hint}") from err
    try:
        yield
    finally:
        ray.shutdown()


def _short_error(error) -> str:
    cause = getattr(error, "cause", None)
    text = (f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else str(error)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else type(error).__name__


def _format_point(point: dict) -> str:
    return " ".join(f"{k}={_fmt(v)}" for k, v in point.items())


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _make_progress_callback(total: int, metric: str, out: Callable):
    from ray import tune

    class Progress(tune.Callback):
        """One line per finished trial."""

        def __init__(self):
            self.done = 0

        def _line(self, trial, status: str, extra: str = "") -> None:
            self.done += 1
            total_text = f"/{total}" if total else ""
            point = trial.config.get("point", {})
            out(f"  [{self.done}{total_text}] {_format_point(point)}: {status}{extra}")

        def on_trial_complete(self, iteration, trials, trial, **info):
            result = trial.last_result or {}
            if not result.get("final"):
                self._line(trial, "stopped early")
                return
            value = result.get(metric)
            status = "skipped (in the store)" if result.get("skipped") else "completed"
            self._line(trial, status, f" {metric}={value:.4f}" if isinstance(value, (int, float)) else "")

        def on_trial_error(self, iteration, trials, trial, **info):
            try:
                error = _short_error(trial.get_error())
            except Exception:  # the message is in the summary and the failed record anyway
                error = "error"
            self._line(trial, "FAILED", f" ({error})")

        def on_trial_recover(self, iteration, trials, trial, **info):
            out(f"  retrying after a failure: {_format_point(trial.config.get('point', {}))}")

    return Progress()


def sweep_facts(spec: SweepSpec) -> dict:
    """What every trial's record says about the sweep that ran it (the record's ``sweep`` field)."""
    return {"name": spec.name, "metric": spec.metric, "mode": spec.mode, "search": spec.search,
            "test_metric_allowed": bool(spec.allow_test_metric)}


def run_tuner(spec: SweepSpec, points: list[dict] | None, options: SweepOptions, storage: str,
              out: Callable) -> list[TrialOutcome]:
    from ray import tune

    base = spec.base()
    search_alg = None
    if points is not None:  # grid: the explicit, not yet done trials
        param_space = {"base": base, "metric": spec.metric, "sweep": sweep_facts(spec),
                       "point": tune.grid_search(points)}
        num_samples, total = 1, len(points)
    else:
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        param_space = {"base": base, "metric": spec.metric, "sweep": sweep_facts(spec),
                       "point": spec.ray_space("optuna")}
        search_alg = OptunaSearch(seed=spec.search_seed)  # TPE sampler
        num_samples = total = int(spec.num_samples or 10)
    scheduler = None
    if spec.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            grace_period=int(spec.asha.get("grace_period", 1)),
            reduction_factor=float(spec.asha.get("reduction_factor", 3)),
            # a trial that reaches max_t results is stopped before its final report (and record):
            # keep it above the number of validations a trial reports
            max_t=int(spec.asha.get("max_t", 10_000)),
        )
    from sweeps.trainable import run_trial

    resources = {"cpu": float(spec.resources.get("cpu", 1)), "gpu": float(spec.resources.get("gpu", 0))}
    tuner = tune.Tuner(
        tune.with_resources(run_trial, resources),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=spec.metric, mode=spec.mode, num_samples=num_samples, search_alg=search_alg,
            scheduler=scheduler, max_concurrent_trials=options.max_concurrent,
        ),
        run_config=tune.RunConfig(
            name=f"{spec.name}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}",
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures, fail_fast=False),
            verbose=2 if options.verbose else 0,
            callbacks=[_make_progress_callback(total, spec.metric, out)],
        ),
    )
    quiet = not options.verbose
    previous_env = os.environ.get("RAY_AIR_NEW_OUTPUT")
    tune_logger = logging.getLogger("ray.tune")
    previous_level = tune_logger.level
    with warnings.catch_warnings():
        if quiet:
            warnings.filterwarnings("ignore", module=r"ray(\.|$)")  # Ray's own deprecation chatter only
            os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # the new output engine prints even at verbose=0
            tune_logger.setLevel(logging.CRITICAL)  # trial tracebacks: in the records and the summary
        try:
            grid = tuner.fit()
        finally:
            tune_logger.setLevel(previous_level)
            if quiet:
                if previous_env is None:
                    os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
                else:
                    os.environ["RAY_AIR_NEW_OUTPUT"] = previous_env

    outcomes = []
    for result in grid:
        point = dict((result.config or {}).get("point", {}))
        metrics = result.metrics or {}
        value = metrics.get(spec.metric)
        value = float(value) if isinstance(value, (int, float)) else None
        if result.error is not None:
            outcomes.append(TrialOutcome(point, "failed", None, error=_short_error(result.error)))
        elif metrics.get("final"):
            status = "skipped" if metrics.get("skipped") else "completed"
            outcomes.append(TrialOutcome(point, status, value, run_id=str(metrics.get("run_id", ""))))
        else:
            outcomes.append(TrialOutcome(point, "stopped", value))
    return outcomes


# ---------------------------------------------------------------------- the sweep
def launch(spec: SweepSpec, options: SweepOptions | None = None, out: Callable = print) -> SweepSummary:
    options = options or SweepOptions()
    spec = apply_options(spec, options)
    absolutize_paths(spec)
    if spec.allow_test_metric and not spec.metric.startswith("valid_"):
        out(f"warning: selecting on {spec.metric} tunes on the test set (allowed for diagnostics; "
            "every record of this sweep says so)")

    points = spec.grid_points() if spec.search == "grid" else None
    validate(spec, points)
    results_dir = spec.fixed["results_dir"]
    work_dir = spec.fixed.get("work_dir") or str(Path(results_dir).parent / "work")
    storage = str(Path(options.storage_path).resolve()) if options.storage_path else str(Path(work_dir) / "ray")

    outcomes: list[TrialOutcome] = []
    if points is not None:
        index = completed_index(results_dir)
        todo = []
        for point in points:
            record = index.get(trial_key(resolve_trial_config(spec.base(), point)))
            if record is None:
                todo.append(point)
            else:
                value = _record_metric(record, spec.metric)
                outcomes.append(TrialOutcome(point, "skipped", value, run_id=record["run_id"]))
        out(f"sweep {spec.name} (grid): {len(points)} trials, {len(points) - len(todo)} already in the store, "
            f"{len(todo)} to run")
    else:
        todo = None
        out(f"sweep {spec.name} (optuna/TPE): {spec.num_samples or 10} trials over "
            f"{', '.join(d.describe() for d in spec.dimensions)}")
    out(f"records: {results_dir}")

    if options.dry_run:
        for point in (todo if todo is not None else []):
            out(f"  would run: {_format_point(point)}")
        return SweepSummary(spec, spec.metric, spec.mode, outcomes, results_dir)

    if todo is None or todo:
        where = f"cluster at {options.address}" if options.address else \
            f"local Ray ({options.num_cpus or os.cpu_count()} CPUs)"
        out(f"Ray: {where}; Ray's own files: {storage}")
        with ray_session(options.address, options.num_cpus, options.verbose, out):
            outcomes += run_tuner(spec, todo, options, storage, out)
    order = {repr(sorted(p.items())): i for i, p in enumerate(points or [])}
    outcomes.sort(key=lambda o: order.get(repr(sorted(o.point.items())), len(order)))
    return SweepSummary(spec, spec.metric, spec.mode, outcomes, results_dir, storage)


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
