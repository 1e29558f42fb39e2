"""CLI commands owned by model_tiers: `tierflow models` and `tierflow doctor`."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from tierflow.model_tiers.config import load_tier_config
from tierflow.model_tiers.doctor import diagnose
from tierflow.model_tiers.providers.model_files import MODEL_FILES, adapter_file_status, model_file_status
from tierflow.model_tiers.spec import ROLES

__all__ = ["register"]


def _models(args: argparse.Namespace) -> int:
    config = load_tier_config(args.tiers)
    console = Console()
    table = Table(title=f"Tier ladder (cheapest first) - policy: {config.policy}")
    for col in ("#", "tier", "provider", "model", "local", "$/Mtok in", "$/Mtok out", "structured", "tools", "ctx"):
        table.add_column(col)
    for i, t in enumerate(config.tiers):
        table.add_row(
            str(i), t.name, t.provider, t.model_label, "yes" if t.local else "no",
            f"{t.price_input_per_mtok:g}", f"{t.price_output_per_mtok:g}",
            t.capabilities.structured_output, "yes" if t.capabilities.tools else "no",
            str(t.capabilities.context_window),
        )
    console.print(table)
    embedded = [t for t in config.tiers if t.provider == "embedded"]
    if embedded:
        files = Table(title="Embedded model files")
        for col in ("tier", "model", "params", "licence", "file", "adapter"):
            files.add_column(col, overflow="fold")
        for t in embedded:
            known = MODEL_FILES.get(t.model)
            adapter = "-" if t.adapter is None else adapter_file_status(t.adapter)
            if known is None:
                files.add_row(t.name, t.model, "?", "?", "a file you named (no published hash)", adapter)
            else:
                files.add_row(t.name, t.model, known.params, known.licence, model_file_status(t.model), adapter)
        console.print(files)
    roles = Table(title="Roles -> starting tier (ceiling)")
    roles.add_column("role")
    roles.add_column("starts on")
    roles.add_column("may escalate to")
    for role in [*ROLES, *sorted(set(config.roles) - set(ROLES))]:
        roles.add_row(role, config.start_tier(role), config.ceiling(role))
    console.print(roles)
    e, b = config.escalation, config.budget
    console.print(
        f"escalation: retries={e.max_retries} on_top_failure={e.on_top_failure} "
        f"confidence_threshold={e.confidence_threshold}  |  budget: max_cost_usd={b.max_cost_usd} "
        f"max_frontier_calls={b.max_frontier_calls} on_exhausted={b.on_exhausted}"
    )
    return 0


def _doctor(args: argparse.Namespace) -> int:
    config = load_tier_config(args.tiers)
    checks = diagnose(config, probe=not args.no_probe)
    table = Table(title="tierflow doctor")
    for col in ("tier", "provider", "model", "status", "detail", "how to fix"):
        table.add_column(col, overflow="fold")
    for c in checks:
        table.add_row(
            c.tier, c.provider, c.model,
            "[green]ok[/green]" if c.ok else "[red]UNUSABLE[/red]", c.detail, c.fix,
        )
    Console().print(table)
    broken = [c.tier for c in checks if not c.ok]
    if broken:
        Console(stderr=True).print(f"[red]unusable tiers: {', '.join(broken)}[/red]")
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("models", help="show the tier ladder and the role map")
    p.set_defaults(handler=_models)
    p = subparsers.add_parser("doctor", help="probe every tier and say how to fix what is broken")
    p.add_argument("--no-probe", action="store_true", help="skip the structured-output call")
    p.set_defaults(handler=_doctor)
