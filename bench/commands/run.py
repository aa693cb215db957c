"""`bench run`: one method on one dataset, scored by the shared evaluator, recorded in the store."""
from __future__ import annotations

import argparse
import statistics

from tabulate import tabulate

from bench.commands.common import add_config_options, config_from_args, seed_list
from bench.config import ConfigError
from bench.config_schema import RunConfig
from bench.plugins import METHODS, TOKENIZED_METHOD, TOKENIZERS
from bench.tables import budget_text, metric_header
from bench.runner import RecordNotWritten, run


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="train and evaluate one method on one dataset, write its run record",
        description="Train and evaluate one method on one dataset under the leave-one-out protocol, "
        "print its validation and test metrics and write one JSON run record to the results store.",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--baseline", help="a baseline method: "
                       + ", ".join(n for n in METHODS.names() if not METHODS.info(n).generative))
    which.add_argument("--tokenizer", help="run the generative recommender (TIGER) with this item tokenizer: "
                       + ", ".join(TOKENIZERS.names()))
    add_config_options(parser)
    parser.add_argument("--results-dir", help="folder of the results store [default: results/runs, the git-ignored "
                        "scratch store; `bench publish RUN_ID` copies a run into the curated results/published]")
    parser.add_argument("--resume", metavar="CHECKPOINT",
                        help="generative runs: resume training from a checkpoint.pt (or the run work folder "
                        "holding it), e.g. results/work/<run_id>/ after a crash")
    parser.add_argument("--seeds", type=seed_list, metavar="S1,S2,...",
                        help="run once per seed (one record each), e.g. 2024,2025,2026: a claim that one setting "
                        "beats another needs >= 3 seeds per row (tables test across runs)")
    parser.add_argument("--no-record", action="store_true", help="print metrics but write no record")
    parser.set_defaults(func=main)


def method_overrides(args: argparse.Namespace) -> dict:
    overrides: dict = {}
    if args.baseline:
        overrides["method"] = args.baseline
    if args.tokenizer:
        overrides["method"] = TOKENIZED_METHOD
        overrides["tokenizer"] = {"name": args.tokenizer}
    if args.results_dir:
        overrides["results_dir"] = args.results_dir
    if args.resume:
        overrides["train"] = {"resume_from": args.resume}
    return overrides


def format_metrics(metrics: dict) -> str:
    names = list(metrics["test"])
    stages = [stage for stage in ("valid", "test", "test_cold") if stage in metrics]  # test_cold: cold-start users
    rows = [[stage] + [f"{metrics[stage][n]:.4f}" for n in names] for stage in stages]
    return tabulate(rows, ["split"] + [metric_header(n) for n in names], tablefmt="github")


def main(args: argparse.Namespace) -> int:
    overrides = method_overrides(args)
    if args.seeds and (args.resume or any(a.split("=", 1)[0].strip() == "seed" for a in args.assignments)):
        raise ConfigError("--seeds runs one record per seed: it cannot be combined with --resume (a checkpoint is "
                          "one seed's) or with --set seed=...")
    # every seed's config is resolved (and checked) before the first run starts
    configs = [config_from_args(args, {**overrides, "seed": seed}) for seed in args.seeds] if args.seeds \
        else [config_from_args(args, overrides)]
    if args.resume and not METHODS.info(configs[0].method).generative:
        raise ConfigError(f"--resume continues a generative (TIGER) training; {configs[0].method} has no "
                          "checkpoints to resume from")
    records = []
    for config in configs:
        try:
            record = run(config, write=not args.no_record)
        except RecordNotWritten as err:  # a full disk at the end: show what the run found, then the error
            show(err.record, config)
            raise
        show(record, config)
        records.append(record)
    if len(records) > 1:
        print(seed_summary(records))
    return 0


def seed_summary(records: list[dict]) -> str:
    """Mean ± sample std over the seeds' test metrics, with n: the number a table shows for them."""
    names = [n for n in records[0]["metrics"]["test"] if all(n in r["metrics"]["test"] for r in records)]
    cells = []
    for name in names:
        values = [float(r["metrics"]["test"][name]) for r in records]
        cells.append(f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}")
    seeds = ", ".join(str(r["seed"]) for r in records)
    table = tabulate([[f"test (n={len(records)})"] + cells], ["seeds " + seeds] + [metric_header(n) for n in names],
                     tablefmt="github")
    return f"{records[0]['label']} over {len(records)} seeds (mean ± sample std):\n{table}"


def show(record: dict, config: RunConfig) -> None:
    print(f"{record['label']} on {record['dataset']} (profile {config.profile}, seed {record['seed']})")
    print(format_metrics(record["metrics"]))
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in record["timings_s"].items())
    print(f"timings: {timings}")
    seen = record["protocol"]["max_history"]
    print(f"budget: {budget_text([record['budget']]) or 'unknown'}; history items seen: "
          f"{'none (ignores histories)' if seen is None else seen} (split.max_history {record['protocol']['split_max_history']})")
    if "_path" in record:
        print(f"record: {record['_path']} (publish it with: bench publish {record['run_id']})")
