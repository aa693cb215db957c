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
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np

from bench.atomic import atomic_write

SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).parent / "schemas" / "run_record.schema.json"
SCRATCH_STORE = "results/runs"
PUBLISHED_STORE = "results/published"


class RecordExistsError(FileExistsError):
    """A record with this run id is already in the store."""


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
    """One record file; ValueError naming the file when it is not a JSON object."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable JSON record ({err})") from None
    if not isinstance(record, dict) or "run_id" not in record:
        raise ValueError(f"{path}: not a run record (a JSON object with a run_id)")
    return record


def iter_records(results_dir: str | os.PathLike) -> Iterator[dict]:
    """Every record in the store, oldest first; hidden temp files are skipped, an unreadable file
    is named in a warning and skipped."""
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
            continue
        record.setdefault("_path", str(path))
        yield record


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
