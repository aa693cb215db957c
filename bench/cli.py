"""The `bench` command line."""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from bench.errors import UserError

COMMANDS = ["run", "data", "tokenize", "cf_embed", "table", "sweep", "publish", "plot", "select", "render", "report"]  # modules under bench/commands, in --help order

USER_ERRORS = (UserError, FileNotFoundError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench",
        description="genrec-bench: benchmark generative recommenders (item tokenizers + TIGER) against "
        "RecBole baselines under one leave-one-out protocol and one evaluator.",
        epilog="Run `bench COMMAND --help` for a command's options.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"bench.commands.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    return dispatch(build_parser().parse_args(argv))


class Terminated(KeyboardInterrupt):
    """SIGTERM (what schedulers, `timeout` and Ray send), handled like Ctrl-C: a training saves its
    checkpoint and says how to resume."""


def _terminate(signum, frame):
    raise Terminated()


def dispatch(args: argparse.Namespace) -> int:
    """Run a parsed command: a user error becomes one line on stderr and exit status 2; SIGINT and
    SIGTERM stop it cleanly (exit 130 / 143)."""
    previous = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() else None
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        print(f"bench: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a folder one may not write: the user's to fix, one line
        where = f": {err.filename}" if err.filename else ""
        print(f"bench: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    except Terminated:
        print("bench: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
