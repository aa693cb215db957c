"""Where a training's progress goes besides its record: TensorBoard event files in the run's work
folder (``track.tensorboard``, on by default), so ``tensorboard --logdir results/work`` shows every
run's curves, and, opt-in, an MLflow tracking store (``track.mlflow``: a tracking URI such as
``sqlite:///results/mlflow.db``), where each run is one MLflow run with its config, tags, curves,
final metrics and record. The JSON record stays the harness's source of truth: nothing here decides
a table."""
from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from pathlib import Path

from bench.config_schema import RunConfig
from bench.errors import UserError, first_line

TENSORBOARD_DIR = "tensorboard"  # under the run's work folder
MLFLOW_EXPERIMENT = "genrec-bench"  # every run goes to this experiment of the tracking store
MLFLOW_ARTIFACTS = "mlartifacts"  # a SQLite store's artifacts: this folder beside its database file


class Tracker:
    """Scalars of one training: ``scalars(step, {"train/loss": ...})``; ``close()`` when it ends."""

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Nothing is tracked."""

    def close(self) -> None:
        """Nothing to flush."""


class TensorBoardTracker(Tracker):
    def __init__(self, folder: Path):
        # deferred: tensorboard takes a second to import and only training needs it
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(folder)
        self.writer = SummaryWriter(log_dir=str(self.folder))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, float(value), int(step))

    def close(self) -> None:
        self.writer.close()


class Trackers(Tracker):
    """Several trackers as one."""

    def __init__(self, trackers: list[Tracker]):
        self.trackers = trackers

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for tracker in self.trackers:
            tracker.scalars(step, values)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()


class NoMLflowRun:
    """``track.mlflow`` off: a run's end goes nowhere."""

    def finish(self, record: dict) -> None:
        """Nothing to log."""


_ACTIVE_MLFLOW: list["MLflowRun"] = []  # the MLflow run of the harness run now going in this process


class MLflowRun(Tracker):
    """One harness run as one MLflow run (a context manager around the run): params (the resolved
    config, flattened), tags, every training curve the run's trackers see, and at the end the final
    metrics and the JSON record as an artifact. Leaving on an exception marks it FAILED, on an
    interrupt (Ctrl-C, SIGTERM) KILLED. Uses ``MlflowClient`` (no process-global MLflow state)."""

    def __init__(self, uri: str, run_name: str, params: dict, tags: dict):
        self.uri, self.run_name, self.params, self.tags = uri, run_name, params, tags
        self.client = self.run_id = None
        self.broken = False  # the store failed during the run: tracking stopped, the run goes on

    def __enter__(self) -> "MLflowRun":
        try:
            from mlflow.tracking import MlflowClient  # defer: seconds to import, and only for track.mlflow
        except ImportError:
            raise UserError("track.mlflow needs MLflow: pip install 'genrec-bench[track]' (or mlflow)") from None
        from mlflow.entities import Param

        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            experiment = self.client.get_experiment_by_name(MLFLOW_EXPERIMENT)
            if experiment is None:
                experiment_id = self.client.create_experiment(MLFLOW_EXPERIMENT,
                                                              artifact_location=_artifact_root(self.uri))
            else:
                experiment_id = experiment.experiment_id
            run = self.client.create_run(experiment_id, tags={k: str(v) for k, v in self.tags.items()},
                                         run_name=self.run_name)
            self.run_id = run.info.run_id
            params = [Param(key, _param_text(value)) for key, value in self.params.items()]
            for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                self.client.log_batch(self.run_id, params=params[start:start + 100])
        except Exception as err:  # noqa: BLE001 - any store problem: one line, before the run starts
            raise UserError(f"track.mlflow={self.uri}: cannot open the MLflow tracking store "
                            f"({first_line(err, 300)})") from None
        _ACTIVE_MLFLOW.append(self)
        return self

    @contextlib.contextmanager
    def _logging(self, what: str):
        """A store that fails during the run costs its tracking, not the run: one warning, then off."""
        try:
            yield
        except Exception as err:  # noqa: BLE001 - any store failure; KeyboardInterrupt still stops the run
            self.broken = True
            print(f"warning: MLflow tracking stopped: logging {what} to {self.uri} failed "
                  f"({first_line(err, 200)}); the run goes on and its record is written as usual", file=sys.stderr)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        if self.broken:
            return
        now = int(time.time() * 1000)
        metrics = [Metric(mlflow_metric_name(name), float(value), now, int(step)) for name, value in values.items()]
        with self._logging("metrics"):
            for start in range(0, len(metrics), 1000):
                self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])

    def finish(self, record: dict) -> None:
        """The run's final metrics (``final/<stage>/<metric>``: the training curve has ``valid/...``
        too, on its validation sample), its budget as tags, and the record as an artifact."""
        final = {f"final/{stage}/{name}": value for stage, values in (record.get("metrics") or {}).items()
                 for name, value in values.items() if isinstance(value, (int, float))}
        self.scalars(0, final)
        if self.broken:
            return
        with self._logging("the record"):
            for key, value in (record.get("budget") or {}).items():
                self.client.set_tag(self.run_id, f"budget.{key}", str(value))
            self.client.log_text(self.run_id, json.dumps({k: v for k, v in record.items() if not k.startswith("_")},
                                                         indent=1, default=str), "record.json")

    def close(self) -> None:
        """A training's tracker closing: the MLflow run goes on until the harness run ends."""

    def __exit__(self, exc_type, exc, tb) -> None:
        if self in _ACTIVE_MLFLOW:
            _ACTIVE_MLFLOW.remove(self)
        if self.run_id is None or self.broken:
            return
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "KILLED"
        else:
            status = "FAILED"
        with self._logging("the run's end"):
            if status == "FAILED":
                self.client.set_tag(self.run_id, "error", f"{exc_type.__name__}: {exc}"[:5000])
                failed = getattr(exc, "run_record", None)  # the failed record the runner wrote
                if isinstance(failed, dict):
                    self.client.log_text(self.run_id, json.dumps(failed, indent=1, default=str), "record.json")
            self.client.set_terminated(self.run_id, status)


def mlflow_metric_name(name: str) -> str:
    """``valid/ndcg@10`` -> ``valid/ndcg_at_10``: MLflow allows letters, digits and ``_-. :/`` only."""
    return re.sub(r"[^\w\-. :/]", "_", name.replace("@", "_at_"))


def _param_text(value) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."  # MLflow's limit on a param value


def _artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store go beside its database file (MLflow's default is ./mlruns of the
    working folder); other stores keep their own default."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).expanduser().resolve().parent / MLFLOW_ARTIFACTS).as_uri()
    return None


def open_tracker(config: RunConfig, work_dir: str | Path | None) -> Tracker:
    """The trackers ``config.track`` asks for: TensorBoard under ``work_dir`` (none without one),
    and the MLflow run of the harness run now going, where there is one."""
    trackers: list[Tracker] = list(_ACTIVE_MLFLOW[-1:])
    if config.track.tensorboard and work_dir is not None:
        trackers.append(TensorBoardTracker(Path(work_dir) / TENSORBOARD_DIR))
    return trackers[0] if len(trackers) == 1 else Trackers(trackers)


def track_tokenizer_fit(tracker: Tracker, name: str, info: dict, stats: dict) -> None:
    """A fitted tokenizer's curve (``info["history"]``: losses and level-1 utilisation per logged
    epoch) under ``tokenizer/<name>/``, and its final codebook utilisation and collision rate per
    level; a fit loaded from the cache replays the curve it was fitted with."""
    for entry in info.get("history") or []:
        tracker.scalars(int(entry["epoch"]), {f"tokenizer/{name}/{key}": value for key, value in entry.items()
                                              if key != "epoch" and isinstance(value, (int, float))})
    final = {f"tokenizer/{name}/utilisation_l{level + 1}": value
             for level, value in enumerate(stats.get("utilisation") or [])}
    if "collision_rate" in stats:
        final[f"tokenizer/{name}/collision_rate"] = stats["collision_rate"]
    tracker.scalars(int(info.get("epochs") or 0), final)
