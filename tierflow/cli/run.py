"""`tierflow run GRAPH`: run a graph with live progress, durable checkpoints and resume.

The run itself is `tierflow.run` / `tierflow.resume`; this module reads the arguments,
prints the progress, the question, the final answer and the ledger, and with `--json`
prints the `RunResult` as one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

from tierflow._results import RunResult
from tierflow._run import ANSWER_FORMS, RunOptions, parse_answer, resume, run
from tierflow.graphs.catalog import SHIPPED_GRAPHS
from tierflow.graphs.run_output import describe_event, final_panel, ledger_table, question_line, question_panel
from tierflow.model_tiers import ConfigError
from tierflow.model_tiers.home import home_dir

__all__ = ["register", "data_dir", "read_input", "parse_answer", "ANSWER_FORMS"]

console = Console()
EXIT_NEEDS_HUMAN = 3


def data_dir() -> Path:
    """Where checkpoints and business data live (created): $TIERFLOW_HOME, else ./.tierflow."""
    return home_dir()


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


def _ask(out: Console) -> Any:
    def ask(question: Mapping[str, Any]) -> Any:
        out.print(question_panel(question))
        while True:
            text = out.input("answer: ").strip()
            try:
                return parse_answer(text)
            except ConfigError as err:
                out.print(f"[red]{err}[/red]", highlight=False)

    return ask


def _progress(out: Console) -> Any:
    def on_event(event: Mapping[str, Any]) -> None:
        if event.get("type") == "start":
            verb = "resuming" if event.get("resuming") else str(event.get("graph"))
            what = f" {event.get('graph')}" if event.get("resuming") else ""
            out.print(f"[bold]{verb}[/bold]{what} thread={event.get('thread')} policy={event.get('policy')}", highlight=False)
            return
        line = describe_event(event)
        if line:
            out.print(line, highlight=False)

    return on_event


def _functions(args: argparse.Namespace) -> list[Any] | None:
    """`--functions JSON|@FILE`: the caller's functions, for graphs whose requests carry them."""
    if args.functions is None:
        return None
    text = read_input(args.functions)
    try:
        functions = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--functions is not valid JSON: {err}", source=args.functions) from None
    if not isinstance(functions, list):
        raise ConfigError("--functions must be a JSON list of functions (OpenAI tool format)", source=args.functions)
    return functions


def _run(args: argparse.Namespace) -> int:
    # --json: stdout carries one JSON document and nothing else; progress goes to stderr.
    out = Console(stderr=True) if args.json else console
    options: RunOptions = {
        "tiers": args.tiers,
        "policy": args.policy,
        "max_frontier_calls": args.max_frontier_calls,
        "max_cost_usd": args.max_cost,
        "on_budget_exhausted": args.on_budget,
        "on_event": _progress(out),
        "ask": _ask(out) if sys.stdin.isatty() else None,
    }
    if args.resume:
        if not args.thread:
            raise ConfigError("--resume continues a thread: give it with --thread ID")
        result = resume(args.graph, args.thread, args.answer, **options)  # the text is parsed there
    else:
        if args.input is None:
            raise ConfigError("give the request with --input TEXT or --input @FILE (or --resume a thread)")
        if args.answer:
            raise ConfigError("--answer answers the question of a paused run: use it with --resume --thread ID")
        result = run(args.graph, read_input(args.input), thread=args.thread, functions=_functions(args), **options)
    return _report(result, args, out)


def _report(result: RunResult, args: argparse.Namespace, out: Console) -> int:
    """Print how the run ended; the exit status: 0 done, 3 waiting for a human, 1 ended
    without an answer or on a bug, 2 stopped by a misconfigured tier."""
    if result.status == "needs_human":
        resume_with = f"tierflow run {args.graph} --thread {result.thread} --resume"
        out.print(f"[yellow]{question_line(result.question or {}, resume_with)}[/yellow]", highlight=False)
    else:
        out.print(final_panel(result.final))
        ledger_table(result.summary, result.frontier_tier, out)
    if args.json:
        sys.stdout.write(result.model_dump_json() + "\n")
        sys.stdout.flush()
    if result.status == "needs_human":
        return EXIT_NEEDS_HUMAN
    failure = result.failure
    if result.status == "error" and failure is not None:
        if failure.kind == "configuration":
            # Raised, so the command's guard prints it as every configuration error is printed.
            raise ConfigError(f"{failure.reason} (the run's state is kept in thread '{result.thread}'; run again once it is fixed)")
        where = f"; the traceback is in {failure.log}" if failure.log else ""
        out.print(f"[red]error:[/red] step '{failure.step}' stopped on a bug: {failure.reason}{where}", highlight=False)
        return 1
    return 0 if result.status == "done" else 1


def _ingest(args: argparse.Namespace) -> int:
    from tierflow.tools.knowledge_base import KnowledgeBase

    kb = KnowledgeBase(args.kb)
    chunks = kb.ingest(args.docs)
    console.print(f"ingested {chunks} policy paragraphs into {kb.path} ({kb.count()} in the collection)")
    return 0


def _gc(args: argparse.Namespace) -> int:
    from tierflow.graphs.retention import parse_age, prune_checkpoints

    report = prune_checkpoints(
        data_dir() / "checkpoints.sqlite",
        older_than_s=parse_age(args.older_than) if args.older_than else None,
        keep_threads=args.keep_threads,
        keep_history=args.keep_history,
        dry_run=args.dry_run,
    )
    console.print(report.line(), highlight=False)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("run", help="run a graph on one request (checkpointed, resumable)")
    p.add_argument(
        "graph",
        help=f"a graph name ({', '.join(sorted(SHIPPED_GRAPHS))}, or one of the project's) or a reference: "
        "package.module:WORKFLOW, path/to/file.py:WORKFLOW",
    )
    p.add_argument("--input", help="the request: TEXT, or @FILE to read it from a file")
    p.add_argument("--functions", help="the caller's functions (function_calling): a JSON list, or @FILE.json")
    p.add_argument("--thread", help="thread id (default: a new one); reuse it with --resume")
    p.add_argument("--resume", action="store_true", help="continue the thread from its last checkpoint")
    p.add_argument("--answer", help="answer to the pending question (with --resume): approve, reject, yes, no, or JSON")
    p.add_argument("--policy", choices=["tiered", "all-slm", "all-frontier"], help="routing policy for this run")
    p.add_argument("--max-frontier-calls", type=int, help="budget: frontier calls for this run")
    p.add_argument("--max-cost", type=float, help="budget: USD for this run")
    p.add_argument("--on-budget", choices=["stop", "interrupt", "cheaper_only"], help="what to do when a budget is spent")
    p.add_argument(
        "--json", action="store_true",
        help="print the run's result (tierflow.RunResult) as one JSON document on stdout (progress on stderr)",
    )
    p.set_defaults(handler=_run)
    p = subparsers.add_parser("ingest", help="(re)build the policy knowledge base used by ticket_triage")
    p.add_argument("--docs", help="folder of policy markdown files (default: the corpus shipped in tools/policies)")
    p.add_argument("--kb", help="knowledge-base folder (default: $TIERFLOW_HOME/kb)")
    p.set_defaults(handler=_ingest)
    p = subparsers.add_parser("gc", help="prune old checkpoints and threads from $TIERFLOW_HOME/checkpoints.sqlite")
    p.add_argument("--older-than", metavar="AGE", help="delete threads last active longer ago than AGE (30d, 12h, 2w)")
    p.add_argument("--keep-threads", type=int, metavar="N", help="keep only the N most recently active threads")
    p.add_argument(
        "--keep-history", type=int, default=1, metavar="K",
        help="checkpoints kept per thread, latest first (default 1: what get_state and --resume read)",
    )
    p.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    p.set_defaults(handler=_gc)
