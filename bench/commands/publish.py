"""`bench publish`: copy chosen run records from the scratch store into the curated store."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.commands.common import check_output, writing
from bench.config import ConfigError
from bench.records import (
    PUBLISHED_STORE, SCHEMA_VERSION, SCRATCH_STORE, RecordExistsError, read_record, schema_errors,
    upgrade_record, write_json_atomic,
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "publish", help="copy run records into the curated store that `bench render` publishes",
        description="Copy completed run records from the scratch store (where `bench run` and sweeps "
        f"write, {SCRATCH_STORE}) into the curated store ({PUBLISHED_STORE}), the only input of "
        "`bench render`. Each record is checked against bench/schemas/run_record.schema.json; a record "
        "from before schema 1 is upgraded on the way (its `migrated` field says what was derived). "
        "Smoke-profile runs are refused unless --allow-smoke. Published records are never overwritten.",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="a run id (looked up in --from) or the path of a record file")
    parser.add_argument("--from", dest="source", default=SCRATCH_STORE,
                        help=f"store the run ids are looked up in [default: {SCRATCH_STORE}]")
    parser.add_argument("--to", dest="target", default=PUBLISHED_STORE,
                        help=f"the curated store [default: {PUBLISHED_STORE}]")
    parser.add_argument("--allow-smoke", action="store_true",
                        help="also publish smoke-profile runs (they check the pipeline, not a method)")
    parser.set_defaults(func=main)


def _locate(run: str, source: str) -> Path:
    path = Path(run)
    if path.suffix == ".json" and path.is_file():
        return path
    if path.suffix == ".json" and path.exists():
        raise ConfigError(f"{run}: not a record file (a folder?)")
    candidate = Path(source) / f"{run}.json"
    if candidate.is_file():
        return candidate
    if not Path(source).is_dir():
        raise ConfigError(f"no record {run!r}: not a record file, and --from {source} is not a folder")
    raise ConfigError(f"no record {run!r}: neither a record file nor a run id in {source}")


def _upgraded(record: dict, where: str) -> dict:
    """``upgrade_record``, a record that is neither schema 1 nor a well-formed schema-0 record
    becoming a ConfigError naming it."""
    version = record.get("schema_version")
    if version is not None and version != SCHEMA_VERSION:
        raise ConfigError(f"{where}: unknown schema_version {version!r} (this harness writes and reads "
                          f"schema {SCHEMA_VERSION})")
    try:
        return upgrade_record(record)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ConfigError(f"{where}: not a run record of schema 0 or {SCHEMA_VERSION} (cannot upgrade it: "
                          f"{type(err).__name__} {err})") from None


def publishable(record: dict, allow_smoke: bool = False, where: str | None = None) -> dict:
    """The schema-1 record to publish; ConfigError saying why when it cannot be (``where``: the file
    it came from, for the message)."""
    where = where or str(record.get("run_id"))
    record = _upgraded(record, where)
    run_id = record.get("run_id")
    if not isinstance(run_id, str) or not run_id or run_id != Path(run_id).name or run_id.startswith("."):
        raise ConfigError(f"{where}: run_id {run_id!r} is not a plain file name")
    if record.get("status") != "completed":
        raise ConfigError(f"{run_id}: status {record.get('status')!r}; only completed runs are published")
    if record.get("profile") == "smoke" and not allow_smoke:
        raise ConfigError(f"{run_id}: a smoke-profile run checks the pipeline, not a method "
                          "(--allow-smoke to publish it anyway)")
    errors = schema_errors(record)
    if errors:
        raise ConfigError(f"{run_id}: does not follow the record schema: " + "; ".join(errors[:5]))
    return record


def main(args: argparse.Namespace) -> int:
    check_output(args.target, "--to", folder=True)
    paths = [_locate(run, args.source) for run in args.runs]
    records = [(path, read_record(path)) for path in paths]
    ready = [(path, publishable(record, args.allow_smoke, str(path))) for path, record in records]  # all checked first
    for _, record in ready:
        target = Path(args.target) / f"{record['run_id']}.json"
        notes = []
        if record.get("migrated"):
            notes.append("upgraded from schema 0")
        if record["git"].get("dirty"):
            notes.append("warning: made from a dirty tree")
        if not record["git"].get("commit"):
            notes.append("warning: no git commit")
        try:
            with writing("--to", args.target):
                write_json_atomic(target, record)
        except RecordExistsError:
            existing = read_record(target)
            same = json.dumps(_upgraded(existing, str(target)), sort_keys=True, default=str) == json.dumps(
                record, sort_keys=True, default=str)
            print(f"already published: {target}" + ("" if same else " (a different record with this run id: left as is)"))
            continue
        print(f"published {target}" + (f" ({'; '.join(notes)})" if notes else ""))
    return 0
