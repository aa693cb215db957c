"""The `bench` command line."""
from __future__ import annotations

import argparse
import importlib
import sys

from bench.errors import UserError

COMMANDS = ["run", "data", "tokenize", "cf_embed", "table", "sweep", "publish", "plot", "render"]  # modules under bench/commands, in --help order

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


def dispatch(args: argparse.Namespace) -> int:
    """Run a parsed command: a user error becomes one line on stderr and exit status 2."""
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        print(f"bench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
