"""The results store: one JSON record per run, written atomically and never overwritten."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np


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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, payload: dict, overwrite: bool = False) -> Path:
    """Write via a temp file in the same folder + rename: readers see all of it or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_jsonable(payload), indent=1, sort_keys=False, allow_nan=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a record is for everyone to read
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the record exists: never overwrite
            except FileExistsError:
                raise RecordExistsError(f"a run record already exists at {path}") from None
            except OSError:  # filesystems without hard links
                if path.exists():
                    raise RecordExistsError(f"a run record already exists at {path}") from None
                os.replace(tmp, path)
            else:
                os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_record(record: dict, results_dir: str | os.PathLike) -> Path:
    return write_json_atomic(Path(results_dir) / f"{record['run_id']}.json", record)


def iter_records(results_dir: str | os.PathLike) -> Iterator[dict]:
    """Every complete record in the store, oldest first; hidden temp files are skipped."""
    folder = Path(results_dir)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith("."):
            continue
        with path.open(encoding="utf-8") as handle:
            record = json.load(handle)
        record.setdefault("_path", str(path))
        yield record
