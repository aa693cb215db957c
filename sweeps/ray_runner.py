"""The Ray side of a sweep: a Ray session (local or a cluster), the Tune experiment over the trials
still to run, a progress line per finished trial, and what each trial came to (``TrialOutcome``)."""
from __future__ import annotations

import json
import logging
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable

from bench.config import ConfigError
from sweeps.spec import SweepSpec

if TYPE_CHECKING:
    from sweeps.launcher import SweepOptions


class SweepError(ConfigError):
    """A sweep that cannot start (bad spec, unreachable cluster)."""


@dataclass
class TrialOutcome:
    point: dict
    status: str  # completed | skipped | failed | stopped | running (in another process: not started)
    value: float | None = None
    run_id: str = ""
    error: str = ""


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


def _records_home(results_dir: str, out: Callable, stored_keys: set[str]):
    """A Tune callback that writes each trial's record, sent home in its last report, to the store:
    a completed record once per trial key (a retried trial that had already reported is not written
    twice); a failed record only when the trial fails for good (after its retries). ``stored_keys``:
    the trial keys of the completed records already in the store."""
    from ray import tune

    from bench.records import RecordExistsError, write_record
    from sweeps.spec import record_trial_key

    class RecordsHome(tune.Callback):
        def __init__(self):
            self.written = set(stored_keys)
            self.failed: dict[str, dict] = {}

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get("record_json"):
                record = json.loads(result["record_json"])
                key = record_trial_key(record)
                if key in self.written:
                    return
                try:
                    write_record(record, results_dir)
                except RecordExistsError:
                    pass
                self.written.add(key)
                self.failed.pop(trial.trial_id, None)
            elif result.get("failed_record_json"):
                self.failed[trial.trial_id] = json.loads(result["failed_record_json"])

        def on_trial_error(self, iteration, trials, trial, **info):
            record = self.failed.pop(trial.trial_id, None)
            if record is not None:
                try:
                    write_record(record, results_dir)
                except RecordExistsError:
                    pass

    return RecordsHome()


def ship_datasets(configs: list[dict], out: Callable) -> dict:
    """The datasets of the trials' ``configs``, loaded once here (the driver) and sent to the trials
    through Ray's object store, so worker nodes need no data files."""
    from bench.data import load_dataset
    from sweeps.trainable import dataset_key

    shipped, failed = {}, set()
    for config in configs:
        key = dataset_key(config)
        if key in shipped or key in failed:
            continue
        try:
            shipped[key] = load_dataset(config["dataset"], config.get("data_dir"),
                                        (config.get("data") or {}).get(config["dataset"]))
        except Exception as err:  # noqa: BLE001 - the trial loads it itself, and fails with its record
            failed.add(key)
            out(f"note: {config['dataset']} not shipped ({type(err).__name__}: {err}); its trials load it themselves")
    if shipped:
        out(f"datasets shipped to the trials: {', '.join(sorted({d.name for d in shipped.values()}))}")
    return shipped


def gpu_request(requested: float, out: Callable) -> float:
    """GPUs per trial: as asked where the cluster has GPUs; none (trials on CPU) where it has none."""
    import ray

    if requested and not ray.cluster_resources().get("GPU", 0):
        out(f"note: --gpus-per-trial {requested:g} but the cluster has no GPU: trials run on CPU")
        return 0.0
    return requested


def sweep_facts(spec: SweepSpec) -> dict:
    """What every trial's record says about the sweep that ran it (the record's ``sweep`` field)."""
    return {"name": spec.name, "budget": spec.budget, "metric": spec.metric, "mode": spec.mode,
            "search": spec.search, "test_metric_allowed": bool(spec.allow_test_metric)}


def _optuna_search(seed: int, told: list[dict], rewards: list[float], enqueue: list[dict]):
    """Ray's OptunaSearch told the stored trials' results *and* given points to try next (Ray's class
    takes evaluated points or points to try, not both: the rest are enqueued once its study exists)."""
    from ray.tune.search.optuna import OptunaSearch

    class WarmOptunaSearch(OptunaSearch):
        def _setup_study(self, mode):
            super()._setup_study(mode)
            for point in enqueue:
                self._ot_study.enqueue_trial(point)

    if not told:
        return OptunaSearch(seed=seed, points_to_evaluate=enqueue or None)
    return WarmOptunaSearch(seed=seed, points_to_evaluate=told, evaluated_rewards=rewards)


def run_tuner(spec: SweepSpec, points: list[dict] | None, options: SweepOptions, storage: str,
              out: Callable, evaluated: list[tuple[dict, float]] | None = None, stored_keys: set[str] = frozenset(),
              configs: list[dict] = ()) -> list[TrialOutcome]:
    """Run ``points`` (grid; ``configs`` their resolved configs) or Optuna's proposals (``configs``:
    a representative one) on Ray; ``stored_keys``: trial keys already completed in the store."""
    from ray import tune

    base = spec.base()
    search_alg = None
    if points is not None:  # grid: the explicit, not yet done trials
        param_space = {"base": base, "metric": spec.metric, "sweep": sweep_facts(spec),
                       "point": tune.grid_search(points)}
        num_samples, total = 1, len(points)
    else:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        param_space = {"base": base, "metric": spec.metric, "sweep": sweep_facts(spec),
                       "point": spec.ray_space("optuna")}
        # TPE sampler. Trials of this spec already in the store are told to Optuna with their results,
        # so a search goes on where an earlier session left it; the spec's initial points not yet in
        # the store run first (an initial point added to the spec later runs next). (Keys as Ray
        # flattens the nested space.)
        def flat(point):
            return {f"point/{name}": value for name, value in point.items()}

        done = evaluated or []
        done_points = [point for point, _ in done]
        pending = [point for point in spec.initial_points if point not in done_points]
        if done:
            out(f"optuna: {len(done)} trial(s) of this spec already in the store are given to TPE"
                + (f"; {len(pending)} initial point(s) not yet run go first" if pending else ""))
        search_alg = _optuna_search(spec.search_seed, [flat(p) for p, _ in done], [v for _, v in done],
                                    [flat(p) for p in pending])
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

    resources = {"cpu": float(spec.resources.get("cpu", 1)),
                 "gpu": gpu_request(float(spec.resources.get("gpu", 0)), out),
                 # any other key is a custom Ray resource (e.g. trial_node: 1 keeps trials on the
                 # nodes started with --resources '{"trial_node": N}')
                 **{k: float(v) for k, v in spec.resources.items() if k not in ("cpu", "gpu")}}
    trainable = tune.with_parameters(run_trial, datasets=ship_datasets(list(configs), out))
    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
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
            callbacks=[_records_home(spec.fixed["results_dir"], out, stored_keys),
                       _make_progress_callback(total, spec.metric, out)],
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
