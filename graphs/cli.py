"""`tierflow run GRAPH`: run a graph with live progress, durable checkpoints and resume."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langgraph.types import Command
from rich.console import Console
from rich.table import Table

from graphs.catalog import graph_names, load_graph_module
from graphs.studio import register as register_studio
from model_tiers import ConfigError, TierRunContext, load_tier_config, summarize

__all__ = ["register", "data_dir", "read_input", "sqlite_checkpointer"]

console = Console()


def data_dir() -> Path:
    """Where checkpoints and business data live: $TIERFLOW_HOME, else ./.tierflow."""
    home = os.environ.get("TIERFLOW_HOME", "").strip()
    path = Path(home).expanduser() if home else Path.cwd() / ".tierflow"
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_input(value: str) -> str:
    """`TEXT` as is, or `@FILE` read as UTF-8 (a clear error names the bad byte)."""
    if not value.startswith("@"):
        return value
    path = Path(value[1:])
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read the input file: {err}", source=str(path)) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"the input is not valid UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start}); "
            "convert it, e.g. `iconv -f latin1 -t utf-8`",
            source=str(path),
        ) from None


@contextmanager
def sqlite_checkpointer(path: Path) -> Iterator[Any]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(str(path), check_same_thread=False)
    try:
        yield SqliteSaver(conn)
    finally:
        conn.close()


def _describe(event: dict[str, Any]) -> str | None:
    kind = event.get("type")
    where = f"[bold]{event.get('step', '')}[/bold]"
    if kind == "model_call":
        err = f" [red]{event['error']}[/red]" if event.get("error") else ""
        return f"  {where} attempt {event.get('attempt')} on [cyan]{event.get('tier')}[/cyan]{err}"
    if kind == "verdict":
        colour = "green" if event["verdict"] == "pass" else "red"
        why = f": {event['reason']}" if event.get("reason") else ""
        return f"  {where} verifier [{colour}]{event['verdict']}[/{colour}]{why}"
    if kind in ("retry", "escalate", "fallback", "top"):
        return f"  {where} [yellow]{kind}[/yellow] {event.get('from')} -> {event.get('to') or 'human/policy'}"
    if kind in ("route", "tool_executed", "human_decision", "budget_downgrade", "budget_approved", "declined", "rejected_input", "judge_fault"):
        rest = {k: v for k, v in event.items() if k != "type"}
        return f"  [magenta]{kind}[/magenta] {json.dumps(rest, default=str)}"
    return None


def _stream(graph: Any, payload: Any, config: dict[str, Any], context: TierRunContext | None) -> None:
    # "sync" durability: each step's checkpoint is on disk before the next step starts, so a
    # run killed at any point resumes from the step it was in.
    for mode, chunk in graph.stream(
        payload, config, context=context, stream_mode=["updates", "custom"], durability="sync"
    ):
        if mode == "custom" and isinstance(chunk, dict):
            line = _describe(chunk)
            if line:
                console.print(line, highlight=False)


def _pending_interrupt(graph: Any, config: dict[str, Any]) -> Any:
    state = graph.get_state(config)
    for task in state.tasks:
        if task.interrupts:
            return task.interrupts[0].value
    return None


def _ask(question: Any) -> Any:
    console.print("[bold yellow]The run is waiting for a human:[/bold yellow]")
    console.print_json(json.dumps(question, default=str))
    text = console.input("answer (JSON, or yes/no): ").strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _ledger_table(state: dict[str, Any], config: Any) -> None:
    records = [u for u in state.get("ledger", []) if u.get("run_id") == state.get("run_id")]
    table = Table(title="Ledger (this run)")
    for col in ("tier", "calls", "tokens in", "tokens out", "latency s", "cost $"):
        table.add_column(col, justify="right")
    summary = summarize(records, config)
    for t in summary.per_tier:
        table.add_row(t.tier, str(t.calls), str(t.input_tokens), str(t.output_tokens), f"{t.latency_s:.2f}", f"{t.cost_usd:.6f}")
    table.add_row("[bold]total", str(summary.calls), "", "", f"{summary.latency_s:.2f}", f"[bold]{summary.cost_usd:.6f}")
    console.print(table)
    if summary.all_frontier_cost_usd:
        saved = summary.savings_vs_frontier or 0.0
        console.print(
            f"Same calls all on the frontier tier ('{config.frontier.name}'): ${summary.all_frontier_cost_usd:.6f}"
            f"  -> this run cost {100 * (1 - saved):.1f}% of that ({100 * saved:.1f}% saved)"
        )


def _functions_payload(args: argparse.Namespace, module: Any) -> dict[str, Any]:
    """`--functions JSON|@FILE` for graphs whose requests carry the caller's functions."""
    takes = module.WORKFLOW.takes_functions
    if args.functions is None:
        if takes:
            raise ConfigError(f"graph '{args.graph}' needs the functions it may call: --functions @FILE.json (a JSON list, OpenAI tool format)")
        return {}
    if not takes:
        raise ConfigError(f"graph '{args.graph}' uses its own tools; --functions is for graphs that take the caller's functions")
    text = read_input(args.functions)
    try:
        functions = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--functions is not valid JSON: {err}", source=args.functions) from None
    return {"functions": functions}


def _run(args: argparse.Namespace) -> int:
    module = load_graph_module(args.graph)
    context = TierRunContext(
        policy=args.policy,
        max_frontier_calls=args.max_frontier_calls,
        max_cost_usd=args.max_cost,
        on_budget_exhausted=args.on_budget,
    )
    tier_config = load_tier_config(args.tiers, context=context)
    thread = args.thread or f"{args.graph}-{uuid.uuid4().hex[:8]}"
    config = {"configurable": {"thread_id": thread}}
    with sqlite_checkpointer(data_dir() / "checkpoints.sqlite") as saver:
        graph = module.build(checkpointer=saver, tiers_file=args.tiers)
        if args.resume:
            if not graph.get_state(config).next:
                raise ConfigError(f"thread '{thread}' has nothing to resume (finished, or never started)")
            console.print(f"[bold]resuming[/bold] {args.graph} thread={thread}")
            payload: Any = Command(resume=json.loads(args.answer)) if args.answer and _pending_interrupt(graph, config) is not None else None
        else:
            if args.input is None:
                raise ConfigError("give the request with --input TEXT or --input @FILE (or --resume a thread)")
            console.print(f"[bold]{args.graph}[/bold] thread={thread} policy={tier_config.policy}")
            payload = {"request": read_input(args.input), **_functions_payload(args, module)}
        _stream(graph, payload, config, context)
        while (question := _pending_interrupt(graph, config)) is not None:
            if not sys.stdin.isatty():
                console.print_json(json.dumps(question, default=str))
                console.print(f"[yellow]waiting for a human.[/yellow] Resume with: tierflow run {args.graph} --thread {thread} --resume --answer '<JSON>'")
                return 3
            _stream(graph, Command(resume=_ask(question)), config, context)
        state = graph.get_state(config).values
    console.print_json(json.dumps(state.get("final", {}), default=str))
    _ledger_table(state, tier_config)
    return 0 if state.get("status") == "done" else 1


def _ingest(args: argparse.Namespace) -> int:
    from tools.knowledge_base import KnowledgeBase

    kb = KnowledgeBase(args.kb)
    chunks = kb.ingest(args.docs)
    console.print(f"ingested {chunks} policy paragraphs into {kb.path} ({kb.count()} in the collection)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("run", help="run a graph on one request (checkpointed, resumable)")
    p.add_argument("graph", help=f"one of: {', '.join(graph_names())}")
    p.add_argument("--input", help="the request: TEXT, or @FILE to read it from a file")
    p.add_argument("--functions", help="the caller's functions (function_calling): a JSON list, or @FILE.json")
    p.add_argument("--thread", help="thread id (default: a new one); reuse it with --resume")
    p.add_argument("--resume", action="store_true", help="continue the thread from its last checkpoint")
    p.add_argument("--answer", help="JSON answer to the pending interrupt (with --resume)")
    p.add_argument("--policy", choices=["tiered", "all-slm", "all-frontier"], help="routing policy for this run")
    p.add_argument("--max-frontier-calls", type=int, help="budget: frontier calls for this run")
    p.add_argument("--max-cost", type=float, help="budget: USD for this run")
    p.add_argument("--on-budget", choices=["stop", "interrupt", "cheaper_only"], help="what to do when a budget is spent")
    p.set_defaults(handler=_run)
    p = subparsers.add_parser("ingest", help="(re)build the policy knowledge base used by ticket_triage")
    p.add_argument("--docs", help="folder of policy markdown files (default: the corpus shipped in tools/policies)")
    p.add_argument("--kb", help="knowledge-base folder (default: $TIERFLOW_HOME/kb)")
    p.set_defaults(handler=_ingest)
    register_studio(subparsers)
