"""The `tierflow` command: one CLI package over the public API. Each module here registers
its subcommands and imports what its handler needs only when the handler runs, so
`tierflow --help` stays fast. This package sits at the top of the dependency chain
(cli -> evals -> graphs -> agents -> model_tiers) so it may compose them all."""

from __future__ import annotations

import argparse
import sqlite3
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from tierflow.cli import calibrate as calibrate_cli
from tierflow.cli import eval as harness_cli
from tierflow.cli import finetune as finetune_cli
from tierflow.cli import models as model_tiers_cli
from tierflow.cli import run as graphs_cli
from tierflow.model_tiers.errors import TierflowError
from tierflow.model_tiers.home import write_crash_log
from tierflow.model_tiers.secrets import redact

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tierflow", description=__doc__)
    parser.add_argument(
        "--tiers", metavar="FILE", default=None,
        help="tiers file (default: $TIERFLOW_TIERS, else ./tiers.toml, else built-in defaults)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    model_tiers_cli.register(sub)
    graphs_cli.register(sub)
    harness_cli.register(sub)
    finetune_cli.register(sub)
    calibrate_cli.register(sub)
    return parser


def crash_log(err: BaseException) -> Path | None:
    """Write `err`'s traceback to a log file under the data folder (see `write_crash_log`)."""
    return write_crash_log("".join(traceback.format_exception(err)))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Exit 2 on a configuration or environment problem, 1 on anything
    unexpected (its traceback goes to a log file, never to the terminal), 130 on Ctrl-C."""
    args = build_parser().parse_args(argv)
    err_console = Console(stderr=True, soft_wrap=True)
    try:
        return int(args.handler(args) or 0)
    except TierflowError as err:
        err_console.print(f"[red]error:[/red] {redact(str(err))}", highlight=False)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted", highlight=False)
        return 130
    except (OSError, sqlite3.DatabaseError) as err:
        # the machine, not tierflow: a full disk, a permission, a file that is not a database
        log = crash_log(err)
        where = f" (traceback: {log})" if log else ""
        err_console.print(f"[red]error:[/red] {type(err).__name__}: {redact(str(err))}{where}", highlight=False)
        return 2
    except Exception as err:
        log = crash_log(err)
        where = f"the traceback is in {log}" if log else "no log file could be written"
        err_console.print(
            f"[red]error:[/red] tierflow {args.command} failed unexpectedly: {type(err).__name__}: {redact(str(err))} "
            f"({where}; please report it)",
            highlight=False,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
