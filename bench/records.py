"""Results stores: one JSON record per run, written atomically and never overwritten.

Two stores: the scratch store that ``bench run`` and sweeps write to (``results/runs``, git-ignored)
and the curated store (``results/published``, committed) that ``bench render`` turns into the
published tables; only ``bench publish`` writes there. Every record follows
``bench/schemas/run_record.schema.json`` (``schema_version`` 1); :func:`upgrade_record` turns a record
from before schema 1 into one, marking what it derived and what is unknown.
"""
from __future__ import annotations

import copy
import json
import os
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np

from bench.atomic import atomic_write
from bench.errors import UserError

SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).parent / "schemas" / "run_record.schema.json"
SCRATCH_STORE = "results/runs"
PUBLISHED_STORE = "results/published"


def refuse_curated_store(results_dir: str | os.PathLike) -> None:
    """UserError when a run would write straight into the curated store: records get there only
    through ``bench publish``, which checks them."""
    path = Path(results_dir).expanduser().resolve()
    curated = Path(PUBLISHED_STORE).resolve()
    if path == curated or (path.name == curated.name and path.parent.name == curated.parent.name):
        raise UserError(f"--results-dir {results_dir} is the curated store: runs write to a scratch store "
                        f"(default {SCRATCH_STORE}) and `bench publish RUN_ID` copies a checked record there")


class RecordExistsError(FileExistsError):
    """A record with this run id is already in the store."""


class RecordError(UserError, ValueError):
    """A file that is not a readable run record (cut short, not JSON, not an object with a run_id)."""


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def write_json_atomic(path: Path, payload: dict, overwrite: bool = False) -> Path:
    """A JSON file written atomically (``bench.atomic``); never overwrites unless asked."""
    text = json.dumps(_jsonable(payload), indent=1, sort_keys=False, allow_nan=True) + "\n"
    try:
        return atomic_write(path, text, overwrite=overwrite)
    except FileExistsError:
        raise RecordExistsError(f"a run record already exists at {path}") from None


def write_record(record: dict, results_dir: str | os.PathLike) -> Path:
    return write_json_atomic(Path(results_dir) / f"{record['run_id']}.json", record)


def read_record(path: str | os.PathLike) -> dict:
    """One record file; :class:`RecordError` (a ValueError and a user error) naming the file when it
    is not a JSON object with a run_id."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        reason = "not UTF-8 text" if isinstance(err, UnicodeDecodeError) else (
            f"JSON cut short or malformed: {err}" if isinstance(err, json.JSONDecodeError) else
            (err.strerror or str(err)))
        raise RecordError(f"{path}: not a readable JSON record ({reason})") from None
    except RecursionError:
        raise RecordError(f"{path}: not a readable JSON record (nested too deeply)") from None
    if not isinstance(record, dict):
        raise RecordError(f"{path}: not a run record (a JSON object with a run_id; the file holds a "
                          f"JSON {type(record).__name__})")
    if "run_id" not in record:
        raise RecordError(f"{path}: not a run record (a JSON object with a run_id; this object has no run_id)")
    return record


# top-level fields tables and plots read, and the JSON type each must have where present (not null)
_FIELD_TYPES = {
    **dict.fromkeys(("config", "git", "budget", "hardware", "protocol", "dataset_fingerprint", "method_info",
                     "components", "timings_s", "coldstart", "sweep", "versions"), (dict, "an object")),
    **dict.fromkeys(("method", "profile"), (str, "a string")),
    "per_user_test_rank": (list, "a list"),
}


def record_problem(record: dict) -> str | None:
    """Why a completed record cannot be shown in a table or a plot (None when it can): the fields the
    tables read (``dataset``, ``label``, ``metrics``: split -> metric -> number) and the JSON type of
    the others they look into. A failed run has no metrics by design and is not a problem here. Cheap
    checks only: the full schema (``schema_errors``) takes seconds on a store of real records."""
    status = record.get("status", "completed")
    if status not in ("completed", "failed"):
        return f"status {status!r} (not 'completed' or 'failed')"
    if status != "completed":
        return None
    for key in ("dataset", "label"):
        if not isinstance(record.get(key), str) or not record.get(key):
            return f"no {key}"
    metrics = record.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        return "no metrics"
    for split, values in metrics.items():
        if not isinstance(values, dict):
            return f"metrics.{split} is not an object of metric values"
        for name, value in values.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                return f"metrics.{split}.{name} is not a number"
    for key, (kind, what) in _FIELD_TYPES.items():
        if record.get(key) is not None and not isinstance(record[key], kind):
            return f"{key} is not {what}"
    if not isinstance(record.get("seed"), (int, type(None))) or isinstance(record.get("seed"), bool):
        return "seed is not an integer"
    ranks = record.get("per_user_test_rank")
    if ranks and not all(isinstance(rank, int) and not isinstance(rank, bool) for rank in ranks):
        return "per_user_test_rank holds something other than integers"
    return None


def iter_records(results_dir: str | os.PathLike, skipped: list | None = None) -> Iterator[dict]:
    """Every record in the store, oldest first; hidden temp files are skipped, an unreadable file
    is named in a warning and skipped (and ``(path, why)`` appended to ``skipped`` when given)."""
    folder = Path(results_dir)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            record = read_record(path)
        except ValueError as err:
            print(f"warning: skipping {err}", file=sys.stderr)
            if skipped is not None:
                skipped.append((str(path), str(err).removeprefix(f"{path}: ")))
            continue
        record.setdefault("_path", str(path))
        yield record


@dataclass
class Store:
    """The records of a results store that tables and plots can use, and what was left out.

    ``records``: every readable record whose fields the tables need (failed runs included: tables
    leave them out and say so); ``skipped``: ``(file or run id, why)`` for each record file left out;
    ``files``: how many record files were read."""

    folder: Path
    records: list[dict] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    files: int = 0

    @property
    def completed(self) -> list[dict]:
        return [r for r in self.records if r.get("status", "completed") == "completed"]

    def summary(self, used: int | None = None, extra: list[tuple[str, int]] = ()) -> str:
        """``N record files read in DIR: U used, S skipped (why: count [files], ...)``; ``used``
        defaults to the completed runs, ``extra`` adds (why, count) for records a command left out."""
        completed = self.completed
        used = len(completed) if used is None else used
        reasons: dict[str, list[str]] = {}
        for name, why in self.skipped:
            reasons.setdefault(why.split(" (")[0], []).append(Path(name).name)
        parts = [f"{why}: {len(names)} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
                 for why, names in reasons.items()]
        failed = len(self.records) - len(completed)
        parts += [f"{why}: {count}" for why, count in [("failed runs", failed), *extra] if count]
        left = self.files - used
        return (f"{self.files} record file{'' if self.files == 1 else 's'} read in {self.folder}: "
                f"{used} used, {left} skipped"
                + (f" ({'; '.join(parts)})" if parts else ""))


def _problem_kind(problem: str) -> str:
    return "completed without metrics" if problem == "no metrics" else "malformed record"


def load_store(results_dir: str | os.PathLike, option: str = "--results-dir") -> Store:
    """The usable records of a results store, for tables, plots and renders. A folder that does not
    exist is a user error naming ``option``; a file that is not a run record, and a completed record
    without the fields a table needs (``metrics``, ``dataset``, ``label``), is named in a warning on
    stderr and left out (:attr:`Store.skipped` says why)."""
    folder = Path(results_dir)
    if not folder.exists():
        raise UserError(f"{option} {folder}: no such folder")
    if not folder.is_dir():
        raise UserError(f"{option} {folder}: not a folder (a results store is a folder of JSON run records)")
    store = Store(folder)
    for record in iter_records(folder, store.skipped):
        problem = record_problem(record)
        if problem:
            name = record.get("_path", record.get("run_id"))
            print(f"warning: skipping {name}: run {record.get('run_id')!r}: {problem}; a table cannot show it",
                  file=sys.stderr)
            store.skipped.append((str(name), f"{_problem_kind(problem)} ({problem})"))
            continue
        store.records.append(record)
    store.files = len(store.records) + len(store.skipped)
    return store


def sweep_stores(results_dir: str | os.PathLike) -> list[Path]:
    """The stores whose completed records a sweep counts as done: the curated store next to
    ``results_dir`` (``<results_dir>/../published``, where it exists) and ``results_dir`` itself.
    A fresh clone holds only the published records; a trial published there is not run again."""
    scratch = Path(results_dir)
    published = scratch.parent / Path(PUBLISHED_STORE).name
    stores = [published] if published.is_dir() and published.resolve() != scratch.resolve() else []
    return stores + [scratch]


def iter_sweep_records(results_dir: str | os.PathLike) -> Iterator[dict]:
    """Every record of :func:`sweep_stores`, the published store first (a later record of the same
    trial, in the scratch store, wins wherever records are indexed by trial)."""
    for store in sweep_stores(results_dir):
        yield from iter_records(store)


# ---------------------------------------------------------------------- schema
@lru_cache(maxsize=1)
def record_schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def schema_errors(record: dict) -> list[str]:
    """Every way ``record`` breaks the documented schema (empty when it is valid)."""
    import jsonschema

    payload = {k: v for k, v in record.items() if not k.startswith("_")}
    validator = jsonschema.Draft202012Validator(record_schema())
    return [f"{'.'.join(map(str, e.absolute_path)) or '(record)'}: {e.message}"
            for e in sorted(validator.iter_errors(_jsonable(payload)), key=lambda e: list(map(str, e.path)))]


# ---------------------------------------------------------------------- schema 0 -> 1
MIGRATION_NOTE = (
    "written before schema 1; bench.records.upgrade_record derived schema-1 fields from the original ones "
    "(budget from method_info, protocol.max_history from the config); unknown values are null: components "
    "(the code then declared no versions) and git.untracked_files (its dirty flag ignored untracked files)"
)


def record_budget(record: dict) -> dict:
    """A record's ``budget`` (derived from a schema-0 record's fields where it has none)."""
    budget = record.get("budget")
    return budget if isinstance(budget, dict) else _legacy_budget(record)


def record_machine(record: dict) -> str:
    """Where a run computed, in a few words: the GPU's name for a CUDA run, else the CPU model and
    generation; training times are comparable only between runs on one machine."""
    hardware = record.get("hardware") or {}  # its "device" is the run's own (cuda only when it used the GPU)
    if hardware.get("gpu") and str(hardware.get("device") or "").startswith("cuda"):
        return str(hardware["gpu"])
    model, generation = hardware.get("cpu_model"), hardware.get("cpu_generation")
    if not model:
        return "unrecorded CPU"
    return f"{model} ({generation or 'generation not recorded'})"


def record_max_history(record: dict) -> tuple[int | None, int | None]:
    """(history items the method saw, the split's max_history) of a record; None where unknown."""
    protocol = record.get("protocol") or {}
    config = record.get("config") or {}
    split_max = protocol.get("split_max_history", (config.get("split") or {}).get("max_history"))
    if "max_history" in protocol:
        return protocol["max_history"], split_max
    try:
        return _legacy_max_history(record), split_max
    except (KeyError, TypeError, ValueError):
        return None, split_max


def _legacy_budget(record: dict) -> dict:
    config, info = record.get("config") or {}, record.get("method_info") or {}
    hardware = record.get("hardware") or {}
    budget = {"optimizer_steps": None, "epochs": None, "examples_seen": None, "train_seconds": None,
              "device": hardware.get("device", "cpu"), "threads": hardware.get("torch_threads"),
              "stop_reason": None}
    if "training" in info:  # the generative model
        training = info["training"]
        budget.update(optimizer_steps=training.get("steps"), epochs=training.get("epochs"),
                      train_seconds=training.get("train_seconds"), stop_reason=training.get("stop_reason"))
        threads = (config.get("train") or {}).get("num_threads")
        budget["threads"] = int(threads) if threads else budget["threads"]
    elif "epochs_run" in info:  # RecBole baselines
        epochs = int(info["epochs_run"])
        cap = int((config.get("baseline") or {}).get("epochs", epochs))
        budget.update(epochs=epochs, train_seconds=info.get("train_seconds"),
                      stop_reason="early stopping" if epochs < cap else "max epochs", best_epoch=info.get("best_epoch"))
    elif record.get("method") in ("pop", "random"):
        budget.update(optimizer_steps=0, epochs=0, examples_seen=0, stop_reason="no training (closed form)",
                      train_seconds=(record.get("timings_s") or {}).get("fit"))
    budget["time_limit_hit"] = budget["stop_reason"] == "time limit"
    return budget


def _legacy_max_history(record: dict) -> int | None:
    config, info = record.get("config") or {}, record.get("method_info") or {}
    if "training" in info:
        return int(config["split"]["max_history"])
    if "epochs_run" in info:
        return int(config["baseline"]["max_seq_len"])
    return None


def upgrade_record(record: dict) -> dict:
    """A schema-1 copy of ``record`` (unchanged when it already is one)."""
    if record.get("schema_version") == SCHEMA_VERSION:
        return record
    if record.get("schema_version") is not None:
        raise ValueError(f"record {record.get('run_id')}: unknown schema_version {record['schema_version']!r}")
    old = copy.deepcopy({k: v for k, v in record.items() if not k.startswith("_")})
    config = old.get("config") or {}
    upgraded = {"schema_version": SCHEMA_VERSION, **old}
    upgraded["profile"] = config.get("profile")
    upgraded["components"] = None
    upgraded.setdefault("finished_at", old.get("started_at"))
    git = dict(old.get("git") or {})
    git.setdefault("commit", None)
    git.setdefault("dirty", None)
    git.setdefault("modified_files", None)
    git.setdefault("untracked_files", None)
    upgraded["git"] = git
    if old.get("status", "completed") == "completed":
        upgraded["status"] = "completed"
        protocol = dict(old.get("protocol") or {})
        protocol.setdefault("split_max_history", int(config["split"]["max_history"]))
        protocol.setdefault("max_history", _legacy_max_history(old))
        upgraded["protocol"] = protocol
        upgraded["budget"] = _legacy_budget(old)
    upgraded["migrated"] = {"from_schema": 0, "note": MIGRATION_NOTE}
    return upgraded
