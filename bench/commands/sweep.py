"""`bench sweep SPEC.yaml`: a Ray Tune sweep of `bench run` trials, each writing a run record."""
from __future__ import annotations

import argparse

from bench.commands.common import seed_list
from bench.config import profile_names
from sweeps.spec import DEFAULT_CONNECT_TIMEOUT_S, SCHEDULERS, SEARCHES, load_spec


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _gpus(text: str) -> float | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected auto or a number >= 0, got {text!r}")
    return value


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep", help="run a sweep spec (grid or Optuna) on a local Ray instance or a Ray cluster",
        description="Run every trial of a sweep spec (sweeps/*.yaml: base config + search space over "
        "dotted config keys + seeds) as a Ray Tune trial; each trial is one `bench run` and writes one "
        "run record to the results store. Trials already in the store are skipped, a TIGER trial "
        "interrupted mid-training goes on from its checkpoint in the work folder, and a trial that another "
        "process is running now is not started again; so an interrupted sweep is resumed by running it "
        "again. Without --address a "
        "local Ray instance sized to this machine is started; with --address the sweep joins that Ray "
        "cluster (results, work and data folders must then be on storage every node shares).",
        epilog="Exit status: 0 when no trial failed, 1 when some did (their records say why), 2 for a bad "
        "spec or config (nothing runs).",
    )
    parser.add_argument("spec", help="sweep spec YAML file, or the name of a shipped one (smoke, layers, ...)")
    parser.add_argument("--address", help="join the Ray cluster at HOST:PORT (see `ray start --head`) "
                        "instead of starting a local instance")
    parser.add_argument("--connect-timeout", type=_seconds, default=DEFAULT_CONNECT_TIMEOUT_S, metavar="SECONDS",
                        help="with --address: give up joining the cluster after this long, with an error "
                        f"[default: {DEFAULT_CONNECT_TIMEOUT_S:g}]")
    parser.add_argument("--search", choices=SEARCHES, help="grid (every combination) or optuna (TPE) "
                        "[default: the spec's, else grid]")
    parser.add_argument("--num-samples", type=int, metavar="N", help="optuna: number of trials; grid: draws "
                        "per grid point of the spec's distributions [default: the spec's]")
    parser.add_argument("--scheduler", choices=SCHEDULERS, help="asha: stop bad trials early on their "
                        "intermediate validation metric [default: the spec's, else none]")
    parser.add_argument("--max-failures", type=int, metavar="N", help="retries of a failing trial [default: the spec's, else 0]")
    parser.add_argument("--metric", help="result to optimise and summarise [default: the spec's, else valid_ndcg@10]")
    parser.add_argument("--mode", choices=("max", "min"))
    parser.add_argument("--results-dir", help="results store every trial writes to [default: the config's, "
                        "results/runs]; made absolute")
    parser.add_argument("--data-dir", help="dataset folder for every trial; made absolute")
    parser.add_argument("--profile", choices=profile_names(), help="compute profile of every trial [default: the spec's]")
    parser.add_argument("--seeds", type=seed_list, metavar="S1,S2,...", help="replace the spec's seeds")
    parser.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", dest="assignments",
                        help="fix config values for every trial, e.g. --set train.max_steps=2000 (several pairs after one flag; repeatable)")
    parser.add_argument("--storage-path", help="Ray Tune's own experiment folder [default: <work_dir>/ray]")
    parser.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance [default: all of this machine's]")
    parser.add_argument("--cpus-per-trial", type=float, help="CPUs each trial reserves [default: the spec's, else 1]")
    parser.add_argument("--gpus-per-trial", type=_gpus, metavar="N|auto",
                        help="GPUs each trial reserves; auto: 1 when the Ray cluster has a GPU and the trials' "
                        "device is not cpu, else 0 [default: the spec's resources.gpu, else auto]")
    parser.add_argument("--max-concurrent", type=int, help="at most this many trials at once")
    parser.add_argument("--dry-run", action="store_true", help="check the spec and list the trials; run nothing")
    parser.add_argument("-v", "--verbose", action="store_true", help="Ray's own progress output and trial logs")
    parser.add_argument("--budget", metavar="NAME",
                        help="run the spec's reduced grid NAME (its `budgets:` section, e.g. cpu: 1 seed, fewer "
                        "values, a fixed step budget); default: the full grid")
    parser.add_argument("--allow-test-metric", action="store_true",
                        help="diagnostics only: let --metric be a test_ metric (tunes on test; every record "
                        "says so). Without it a test_ metric is an error")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    # defer: the launcher imports torch and Ray (seconds); `bench --help` and the other commands need neither
    from sweeps.launcher import SweepOptions, format_summary, launch, print_flush
    from sweeps.ray_runner import ClusterUnreachableError

    spec = load_spec(args.spec, budget=args.budget)
    options = SweepOptions(
        search=args.search, num_samples=args.num_samples, scheduler=args.scheduler,
        max_failures=args.max_failures, metric=args.metric, mode=args.mode, results_dir=args.results_dir,
        data_dir=args.data_dir, address=args.address, connect_timeout=args.connect_timeout,
        storage_path=args.storage_path, num_cpus=args.num_cpus,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent, assignments=args.assignments, profile=args.profile,
        seeds=args.seeds, dry_run=args.dry_run,
        verbose=args.verbose, allow_test_metric=args.allow_test_metric,
    )
    try:
        summary = launch(spec, options, out=print_flush)
    except ClusterUnreachableError as err:
        if err.init_stuck:
            exit_without_waiting_for_ray(2)
        raise
    if args.dry_run:
        return 0
    print_flush(format_summary(summary))
    return 0 if summary.ok else 1


def exit_without_waiting_for_ray(status: int) -> None:
    """After a cluster join given up mid-``ray.init`` (its thread still waits inside Ray and cannot
    be stopped): when this process exits, end it at once with ``status``, skipping Ray's exit
    handlers, which could wait on that half-made connection. The error is printed before then."""
    import atexit
    import os
    import sys

    def leave() -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)

    atexit.register(leave)  # registered after Ray's: runs first
