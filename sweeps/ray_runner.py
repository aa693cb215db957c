"""The Ray side of a sweep: a Ray session (local or a cluster), the Tune experiment over the trials
still to run, a progress line per finished trial, and what each trial came to (``TrialOutcome``)."""
from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Iterable

from bench.config import ConfigError
from bench.errors import first_line
from sweeps.spec import DEFAULT_CONNECT_TIMEOUT_S, record_trial_key, SweepSpec
from bench.records import RecordExistsError, write_record
from bench.data import load_dataset
from sweeps.trainable import dataset_key, run_trial

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


class ClusterUnreachableError(SweepError):
    """The Ray cluster at --address did not answer, or did not finish connecting, within the
    deadline. ``init_stuck``: ``ray.init`` itself is still waiting in a background thread (it cannot
    be interrupted), so the process should not wait for it at exit."""

    def __init__(self, message: str, init_stuck: bool = False):
        super().__init__(message)
        self.init_stuck = init_stuck


def split_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``HOST:PORT``, ``[IPv6]:PORT`` or ``ray://HOST:PORT``; None for ``auto``
    (Ray looks the address up itself). SweepError for anything else."""
    text = str(address).strip()
    _, sep, rest = text.partition("://")
    rest = rest if sep else text
    if rest == "auto":
        return None
    host, colon, port = rest.rpartition(":")
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        number = int(port)
    except ValueError:
        number = 0
    if not colon or not host or not 0 < number < 65536:
        raise SweepError(f"--address {address!r}: expected HOST:PORT, e.g. 10.0.0.5:6379 (the address "
                         "`ray start --head` prints on the head machine)")
    return host, number


def probe_tcp(host: str, port: int, timeout: float) -> str | None:
    """None when ``host:port`` accepts a TCP connection within ``timeout`` seconds, else why not."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=max(float(timeout), 0.01)):
            return None
    except ConnectionRefusedError:
        return f"connection refused: nothing listens on {host}:{port}"
    except socket.timeout:
        return f"no answer from {host}:{port} within {timeout:g} s"
    except socket.gaierror as err:
        return f"cannot resolve host {host!r} ({err.strerror or err})"
    except OSError as err:
        return f"cannot connect to {host}:{port} ({err.strerror or err})"


def _ray_hosts(host: str) -> list[str]:
    """The host as given, and the one Ray dials for it (Ray turns 127.0.0.1/localhost into this
    node's IP address)."""
    hosts = [host]
    try:
        from ray._private.services import resolve_ip_for_localhost

        resolved = resolve_ip_for_localhost(host)
        if resolved and resolved not in hosts:
            hosts.append(resolved)
    except Exception:  # noqa: BLE001 - an internal helper of Ray: only a second candidate
        pass
    return hosts


def cluster_hint(address: str) -> str:
    """What to check when the cluster at ``address`` cannot be joined."""
    where = ("on the cluster this machine last started or joined (address auto)" if str(address).strip() == "auto"
             else f"at {address}")
    return (f"Check that a Ray head is running {where} (`ray start --head` on that machine prints the "
            "address to pass) and that this machine can reach that host and port; a head started without "
            "RAY_AUTH_MODE=disabled needs RAY_AUTH_MODE=token here with its token in ~/.ray/auth_token")


def join_cluster(address: str, timeout: float, init: Callable[[], None], probe: Callable = probe_tcp) -> None:
    """Run ``init`` (``ray.init(address=...)``) with a deadline of ``timeout`` seconds for the whole
    connection: first a TCP check that the address's port accepts connections (a refused port fails at
    once), then ``init`` in a daemon thread (Ray retries an unreachable GCS for many minutes and cannot
    be interrupted). ClusterUnreachableError when the deadline passes or the port does not answer; an
    ``init`` that finishes after the deadline disconnects again."""
    timeout = float(timeout)
    if not timeout > 0:
        raise SweepError(f"--connect-timeout must be a positive number of seconds, got {timeout:g}")
    target = split_address(address)
    lock = threading.Lock()
    finished = threading.Event()
    state: dict = {"phase": "probe", "error": None, "abandoned": False, "connected": False}

    def work() -> None:
        try:
            if target is not None:
                host, port = target
                problems = []
                for candidate in _ray_hosts(host):
                    problem = probe(candidate, port, timeout)
                    if problem is None:
                        break
                    problems.append(problem)
                else:
                    raise _Unreachable(problems[0])
            state["phase"] = "init"
            init()
            with lock:
                state["connected"] = True
                abandoned = state["abandoned"]
            if abandoned:  # connected after the caller gave up: leave the cluster again
                import ray

                ray.shutdown()
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            state["error"] = err
        finally:
            finished.set()

    worker = threading.Thread(target=work, name="bench-ray-connect", daemon=True)
    worker.start()
    finished.wait(timeout)
    with lock:
        if not finished.is_set() and not state["connected"]:
            state["abandoned"] = True
            if state["phase"] == "probe":
                reason = f"no answer within {timeout:g} s"
            else:
                reason = (f"its port accepts connections but Ray did not finish connecting within {timeout:g} s "
                          "(not a Ray head's port, a head that is still starting, or an auth-token mismatch?)")
            raise ClusterUnreachableError(
                f"cannot join the Ray cluster at {address}: {reason}. {cluster_hint(address)} "
                f"(--connect-timeout SECONDS waits longer)", init_stuck=state["phase"] == "init")
    error = state["error"]
    if isinstance(error, _Unreachable):
        raise ClusterUnreachableError(f"cannot join the Ray cluster at {address}: {first_line(error, 300).rstrip('.')}. "
                                      f"{cluster_hint(address)}")
    if isinstance(error, (ConnectionError, RuntimeError, ValueError, OSError)):
        raise SweepError(f"cannot join the Ray cluster at {address}: {first_line(error, 300).rstrip('.')}. {cluster_hint(address)}") from error
    if error is not None:
        raise error


class _Unreachable(Exception):
    """The TCP check failed (its message says how)."""


@contextmanager
def ray_session(address: str | None, num_cpus: int | None, verbose: bool, out: Callable,
                connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S):
    """A local Ray sized to this machine, or the cluster at ``address`` (joined within
    ``connect_timeout`` seconds, see :func:`join_cluster`); reuses a connected session."""
    import ray

    if ray.is_initialized():
        out("using the Ray session this process is already connected to")
        yield
        return
    kwargs = dict(logging_level=logging.INFO if verbose else logging.ERROR, log_to_driver=verbose)
    if address:
        with _quiet_thread_warning():
            join_cluster(address, connect_timeout, lambda: ray.init(address=address, **kwargs))
    else:
        try:
            # "local": always a fresh instance, never a cluster left running on this machine
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise SweepError(f"cannot start a local Ray instance: {err}") from err
    try:
        yield
    finally:
        ray.shutdown()


@contextmanager
def _quiet_thread_warning():
    """``ray.init`` off the main thread logs that it set no SIGTERM handler (it would have set one
    that exits): the process keeps its own (``bench.cli.dispatch``'s), so drop that line."""

    class Drop(logging.Filter):
        def filter(self, record):
            return "SIGTERM handler is not set" not in record.getMessage()

    worker_logger = logging.getLogger("ray._private.worker")
    quiet = Drop()
    worker_logger.addFilter(quiet)
    try:
        yield
    finally:
        worker_logger.removeFilter(quiet)


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


def ship_datasets(configs: list[RunConfig], out: Callable) -> dict:
    """The datasets of the trials' ``configs``, loaded once here (the driver) and sent to the trials
    through Ray's object store, so worker nodes need no data files."""
    shipped, failed = {}, set()
    for config in configs:
        key = dataset_key(config)
        if key in shipped or key in failed:
            continue
        try:
            shipped[key] = load_dataset(config.dataset, config.data_dir, config.plain(f"data.{config.dataset}"))
        except Exception as err:  # noqa: BLE001 - the trial loads it itself, and fails with its record
            failed.add(key)
            out(f"note: {config.dataset} not shipped ({type(err).__name__}: {err}); its trials load it themselves")
    if shipped:
        out(f"datasets shipped to the trials: {', '.join(sorted({d.name for d in shipped.values()}))}")
    return shipped


AUTO = "auto"


def gpus_per_trial(requested: float | str | None, cluster_gpus: float, devices: Iterable[str | None]) -> float:
    """GPUs each trial reserves. ``requested``: ``"auto"`` (or None): 1 when the cluster has a GPU
    (``cluster_gpus`` >= 1) and some trial's config may use it (its ``device`` is not ``cpu``), else
    0; a number (--gpus-per-trial, the spec's ``resources.gpu``) is taken as it is, except on a cluster
    without any GPU, where a trial asking for one would wait for ever: there it is 0."""
    if requested is None or requested == AUTO:
        devices = list(devices)
        wants_gpu = not devices or any(str(device).lower() != "cpu" for device in devices)
        return 1.0 if float(cluster_gpus) >= 1 and wants_gpu else 0.0
    requested = float(requested)
    return requested if float(cluster_gpus) > 0 else 0.0


def gpu_request(requested: float | str | None, configs: list[dict], out: Callable) -> float:
    """:func:`gpus_per_trial` on the connected cluster and the trials' ``configs``, said when it is not
    what was asked."""
    import ray

    cluster = float(ray.cluster_resources().get("GPU", 0) or 0)
    gpus = gpus_per_trial(requested, cluster, [config.device for config in configs])
    if requested is None or requested == AUTO:
        if gpus:
            out(f"GPUs per trial: {gpus:g} (auto: the cluster has {cluster:g} GPU(s); --gpus-per-trial 0 keeps "
                "trials on CPU)")
        elif cluster >= 1:
            out("GPUs per trial: 0 (auto: the trials' configs set device: cpu)")
    elif float(requested) and not gpus:
        out(f"note: --gpus-per-trial {float(requested):g} but the cluster has no GPU: trials run on CPU")
    return gpus


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
    from ray.tune.logger import TBXLoggerCallback

    base = spec.base()
    tensorboard = any(config.track.tensorboard for config in configs) if configs else True
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

    resources = {"cpu": float(spec.resources.get("cpu", 1)),
                 "gpu": gpu_request(spec.resources.get("gpu", AUTO), list(configs), out),
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
                       _make_progress_callback(total, spec.metric, out),
                       # every trial's reported validation curve: tensorboard --logdir <the sweep's Ray folder>
                       *([TBXLoggerCallback()] if tensorboard else [])],
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
