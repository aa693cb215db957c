"""`bench table`: render the results store as paper-style tables (Markdown, LaTeX booktabs, CSV)."""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.atomic import atomic_write_text
from bench.commands.common import check_output, significance_level, writing
from bench.config import ConfigError, check_key, load_yaml_text
from bench.records import PUBLISHED_STORE, SCRATCH_STORE, Store, load_store
from bench.tables import (
    MAIN_METRICS, build_table, filter_records, records_frame, render, render_table,
)
from bench.tables.sweep import build_sweep_table
from sweeps.spec import load_spec
from bench.tables.coldstart import build_coldstart_table
from bench.tables.decoding import build_decoding_table

KINDS = ("main", "tokenizers", "architectures", "ablation", "sweep", "diversity", "invalid", "coldstart", "simple")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "table", help="render run records as a paper-style table",
        description="Render the completed runs of the results store as a table. "
        "main: TIGER Table 1 (methods x datasets x R@5 N@5 R@10 N@10, an 'Improvement over best baseline' "
        "row); tokenizers: TIGER Table 2 (one row per item tokenizer of the generative model); architectures: "
        "per tokenizer, TIGER's encoder-decoder against the decoder-only variants (model.arch, "
        "train.loss_positions), each row with its own budget; ablation: "
        "one row per value of --param (e.g. model.encoder_layers, TIGER Table 5); sweep: one row per setting of "
        "--spec, compared with its default; diversity: TIGER Table 3 (category entropy by decoding temperature); "
        "invalid: invalid-ID rate of unconstrained decoding; coldstart: Recall@K on cold users under the "
        "cold-start protocol; simple: one table per "
        "dataset, one row per method. Cells: mean ± std over the n seeds, with how many configurations each row was "
        "chosen among; best per column bold, second underlined; † / ‡ mark a row significantly better / worse than "
        "the table's reference row by Welch's t-test on per-seed values, Holm-corrected over the table "
        "(p < --alpha), only where each compared row has at least 3 seeds.",
    )
    parser.add_argument("--kind", choices=KINDS, default="main", help="which table [default: main]")
    parser.add_argument("--param", help="ablation: the dotted config key whose values make the rows")
    parser.add_argument("--spec", help="sweep: the sweep spec (file or shipped name) whose settings make the rows, "
                        "compared with its default setting")
    parser.add_argument("--budget", help="sweep: the spec's budget (reduced grid) the trials ran with")
    parser.add_argument("--results-dir", default=SCRATCH_STORE,
                        help=f"folder of the results store [default: {SCRATCH_STORE}, where bench run writes; "
                        f"the curated store is {PUBLISHED_STORE}]")
    parser.add_argument("--profile", help="only runs of this compute profile [default: per dataset the most "
                        "common profile of its runs; the title names it]")
    parser.add_argument("--format", choices=("md", "latex", "csv"), default="md")
    parser.add_argument("--split", choices=("test", "valid"), default="test", help="which metrics to show")
    parser.add_argument("--dataset", action="append", help="only these datasets (repeatable)")
    parser.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                        help="only runs whose config has this value, e.g. --where tokenizer.name=rqvae (repeatable)")
    parser.add_argument("--metrics", help=f"comma-separated metrics [default: {','.join(MAIN_METRICS)}; "
                        "simple: all of @5/@10/@20]")
    parser.add_argument("--test", choices=("wilcoxon", "ttest"), default="wilcoxon",
                        help="the secondary paired per-user test reported in the CSV (p_users_<test>: test users "
                        "only, ignores training variance; never a mark) [default: wilcoxon]")
    parser.add_argument("--alpha", type=significance_level, default=0.05,
                        help="significance level, between 0 and 1 [default: 0.05]")
    parser.add_argument("--output", metavar="FILE", help="write the table to FILE (atomically) instead of printing it")
    parser.set_defaults(func=main)


def parse_where(items) -> dict:
    """``["a.b=3"]`` -> ``{"a.b": 3}``; every key must be a config key (a typo is an error)."""
    where = {}
    for text in items or []:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--where expects key=value, got {text!r}")
        where[check_key(key.strip(), "--where key")] = load_yaml_text(raw) if raw.strip() else ""
    return where


def check_metrics(records, metrics, split: str, option: str = "--metrics") -> None:
    """ConfigError for a metric that no record of the store holds (``recall@7``)."""
    available = sorted({name for r in records if r.get("status", "completed") == "completed"
                        for name in (r.get("metrics") or {}).get(split, {})})
    missing = [m for m in metrics if m not in available]
    if missing and available:
        raise ConfigError(f"{option}: unknown metric {', '.join(missing)}: not in any {split} record of the store "
                          f"(available in the records: {', '.join(available)})")


def is_scratch_store(results_dir) -> bool:
    return Path(results_dir).resolve() == Path(SCRATCH_STORE).resolve()


def scratch_hint(results_dir, store: Store) -> str:
    """Where the results are when the scratch store (a fresh clone's) holds no records; else ''."""
    if store.files or not is_scratch_store(results_dir):
        return ""
    return (f"; {SCRATCH_STORE} is the scratch store that `bench run` writes to; the published results are in "
            f"{PUBLISHED_STORE}: `bench table --results-dir {PUBLISHED_STORE}`, and `bench render` regenerates "
            "results/tables/ and results/plots/ from them")


def open_store(results_dir) -> Store:
    """The store's usable records (``bench.records.load_store``); a missing scratch store (a fresh
    clone's) is an empty store, whose empty table then says where the published results are."""
    if is_scratch_store(results_dir) and not Path(results_dir).exists():
        return Store(Path(results_dir))
    return load_store(results_dir)


def main(args: argparse.Namespace) -> int:
    if args.output:
        check_output(args.output, "--output")
    store = open_store(args.results_dir)
    records = filter_records(store.records, args.dataset, parse_where(args.where))
    metrics = tuple(m.strip() for m in args.metrics.split(",")) if args.metrics else None
    if metrics:
        check_metrics(records, metrics, args.split)
    if args.kind == "ablation" and not args.param:
        raise ConfigError("--kind ablation needs --param KEY (the config key whose values make the rows)")
    if args.param:
        check_key(args.param, "--param")
    if args.kind == "simple":
        text = render_simple(records, args.format, args.split, metrics)
        if text is None:
            print(f"no completed run records in {args.results_dir}{scratch_hint(args.results_dir, store)}")
            return 1
    else:
        table = build_kind(args, records, metrics)
        if not table.rows:
            print(f"{table.empty_message} in {args.results_dir}{scratch_hint(args.results_dir, store)}")
            return 1
        text = render(table, args.format)
    if args.output:
        with writing("--output", args.output):
            path = atomic_write_text(args.output, text)
        print(f"wrote {path}")
    else:
        print(text)
    return 0


def build_kind(args: argparse.Namespace, records, metrics):
    """The table of ``--kind`` (all but ``simple``) from ``records``."""
    if args.kind == "sweep":
        if not args.spec:
            raise ConfigError("--kind sweep needs --spec SPEC (a sweep spec file or a shipped spec's name)")

        return build_sweep_table(records, load_spec(args.spec, budget=args.budget), split=args.split,
                                 alpha=args.alpha, test=args.test, profile=args.profile,
                                 **({"metrics": metrics} if metrics else {}))
    if args.kind == "coldstart":
        return build_coldstart_table(records, profile=args.profile)
    if args.kind in ("diversity", "invalid"):
        return build_decoding_table(records, args.kind, profile=args.profile)
    options = {"split": args.split, "alpha": args.alpha, "test": args.test}
    if metrics:
        options["metrics"] = metrics
    return build_table(args.kind, records, param=args.param, profile=args.profile, **options)


def render_simple(records, fmt: str, split: str, metrics=None) -> str | None:
    """One table per dataset, one row per method (the original `bench table`)."""
    frame = records_frame(records, split=split)
    if frame.empty:
        return None
    parts = []
    for dataset, part in frame.groupby("dataset", sort=True):
        parts.append(f"{dataset} ({split})" if fmt == "md" else f"% {dataset} ({split})")
        parts.append(render_table(part, fmt, **({"metrics": metrics} if metrics else {})))
        parts.append("")
    return "\n".join(parts)
