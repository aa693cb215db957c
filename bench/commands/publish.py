"""`bench publish`: copy chosen run records from the scratch store into the curated store."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.config import ConfigError
from bench.records import (
    PUBLISHED_STORE, SCRATCH_STORE, RecordExistsError, read_record, schema_errors, upgrade_record,
    write_json_atomic,
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
    candidate = Path(source) / f"{run}.json"
    if candidate.is_file():
        return candidate
    raise ConfigError(f"no record {run!r}: neither a record file nor a run id in {source}")


def publishable(record: dict, allow_smoke: bool = False) -> dict:
    """The schema-1 record to publish; ConfigError saying why when it cannot be."""
    record = upgrade_record(record)
    run_id = record.get("run_id")
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
    records = [(run, read_record(_locate(run, args.source))) for run in args.runs]
    ready = [(run, publishable(record, args.allow_smoke)) for run, record in records]  # all checked first
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
            write_json_atomic(target, record)
        except RecordExistsError:
            existing = read_record(target)
            same = json.dumps(upgrade_record(existing), sort_keys=True) == json.dumps(record, sort_keys=True, default=str)
            print(f"already published: {target}" + ("" if same else " (a different record with this run id: left as is)"))
            continue
        print(f"published {target}" + (f" ({'; '.join(notes)})" if notes else ""))
    return 0
