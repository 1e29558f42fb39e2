"""The `tierflow` command. Each package registers its own subcommands; this module sits at
the top of the dependency chain (evals -> graphs -> agents -> model_tiers) so it may
compose them all."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console

from evals import finetune_cli, harness_cli
from graphs import cli as graphs_cli
from model_tiers import cli as model_tiers_cli
from model_tiers.errors import TierflowError

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except TierflowError as err:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {err}", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
