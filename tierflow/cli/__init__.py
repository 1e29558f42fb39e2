"""The `tierflow` command: one CLI package over the public API. Each module here registers
its subcommands and imports what its handler needs only when the handler runs, so
`tierflow --help` stays fast. Every command runs behind `tierflow.cli.guard`: one line and
a log file, never a traceback. This package sits at the top of the dependency chain
(cli -> evals -> graphs -> agents -> model_tiers) so it may compose them all."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tierflow.cli.guard import guard

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    from tierflow.cli import calibrate, eval, finetune, models, run, studio

    parser = argparse.ArgumentParser(prog="tierflow", description=__doc__)
    parser.add_argument(
        "--tiers", metavar="FILE", default=None,
        help="tiers file, or the name of a shipped one (default: $TIERFLOW_TIERS, else ./tiers.toml, else built-in defaults)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (models, run, studio, eval, finetune, calibrate):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Exit 2 on a configuration or environment problem, 1 on anything
    unexpected (its traceback goes to a log file, never to the terminal), 130 on Ctrl-C."""
    parsed: list[argparse.Namespace] = []
    # Building the parser imports the command modules: a broken install is a line too.
    status = guard("tierflow", lambda: parsed.append(build_parser().parse_args(argv)))
    if not parsed:
        return status
    args = parsed[0]
    return guard(f"tierflow {args.command}", lambda: args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
