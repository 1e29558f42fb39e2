"""`tierflow run GRAPH`: run a graph with live progress, durable checkpoints and resume."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langgraph.types import Command
from rich.console import Console

from tierflow.graphs.catalog import SHIPPED_GRAPHS, GraphEntry, resolve_graph
from tierflow.graphs.studio import register as register_studio
from tierflow.graphs.run_output import clip, describe_event, final_panel, ledger_table, question_line, question_panel
from tierflow.model_tiers import ConfigError, TierRunContext, load_tier_config, summarize
from tierflow.model_tiers.home import corrupt_database_message, home_dir, write_crash_log

__all__ = ["register", "data_dir", "read_input", "sqlite_checkpointer", "parse_answer"]

console = Console()


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


@contextmanager
def sqlite_checkpointer(path: Path) -> Iterator[Any]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(str(path), check_same_thread=False)
    try:
        try:
            # sqlite opens any file; reading the header is what finds one that is not a database.
            conn.execute("PRAGMA schema_version").fetchone()
        except sqlite3.DatabaseError as err:
            raise ConfigError(corrupt_database_message(path, err, what="checkpoint database")) from None
        yield SqliteSaver(conn)
    finally:
        conn.close()


def _stream(graph: Any, payload: Any, config: dict[str, Any], context: TierRunContext | None, out: Console) -> None:
    # "sync" durability: each step's checkpoint is on disk before the next step starts, so a
    # run killed at any point resumes from the step it was in.
    for mode, chunk in graph.stream(
        payload, config, context=context, stream_mode=["updates", "custom"], durability="sync"
    ):
        if mode == "custom" and isinstance(chunk, dict):
            line = describe_event(chunk)
            if line:
                out.print(line, highlight=False)


def _pending_interrupt(graph: Any, config: dict[str, Any]) -> Any:
    state = graph.get_state(config)
    for task in state.tasks:
        if task.interrupts:
            return task.interrupts[0].value
    return None


_BARE_ANSWERS: dict[str, Any] = {
    "approve": {"action": "approve"},
    "reject": {"action": "reject"},
    "yes": "yes",
    "y": "yes",
    "no": "no",
    "n": "no",
}
ANSWER_FORMS = "approve, reject, yes, no, or JSON such as '{\"action\": \"edit\", \"value\": {...}}'"


def parse_answer(text: str) -> Any:
    """A human's answer: a bare word (approve, reject, yes, no) or a JSON value."""
    word = text.strip()
    if word.lower() in _BARE_ANSWERS:
        return _BARE_ANSWERS[word.lower()]
    try:
        return json.loads(word)
    except json.JSONDecodeError as err:
        raise ConfigError(f"the answer {clip(word, 60)!r} is neither a known word nor JSON ({err.msg}); give {ANSWER_FORMS}", source="--answer") from None


def _ask(question: Any, out: Console) -> Any:
    out.print(question_panel(question))
    while True:
        text = out.input("answer: ").strip()
        try:
            return parse_answer(text)
        except ConfigError as err:
            out.print(f"[red]{err}[/red]", highlight=False)


def _functions_payload(args: argparse.Namespace, entry: GraphEntry) -> dict[str, Any]:
    """`--functions JSON|@FILE` for graphs whose requests carry the caller's functions."""
    takes = entry.workflow.takes_functions
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
    entry = resolve_graph(args.graph)
    # --json: stdout carries one JSON document and nothing else; progress goes to stderr.
    out = Console(stderr=True) if args.json else console
    context = TierRunContext(
        policy=args.policy,
        max_frontier_calls=args.max_frontier_calls,
        max_cost_usd=args.max_cost,
        on_budget_exhausted=args.on_budget,
    )
    tier_config = load_tier_config(args.tiers, context=context)
    thread = args.thread or f"{entry.name}-{uuid.uuid4().hex[:8]}"
    config = {"configurable": {"thread_id": thread}}
    with sqlite_checkpointer(data_dir() / "checkpoints.sqlite") as saver:
        graph = entry.build(checkpointer=saver, tiers_file=args.tiers)
        if args.resume:
            if not graph.get_state(config).next:
                raise ConfigError(f"thread '{thread}' has nothing to resume (finished, or never started)")
            out.print(f"[bold]resuming[/bold] {entry.name} thread={thread}")
            payload: Any = Command(resume=parse_answer(args.answer)) if args.answer and _pending_interrupt(graph, config) is not None else None
        else:
            if args.input is None:
                raise ConfigError("give the request with --input TEXT or --input @FILE (or --resume a thread)")
            out.print(f"[bold]{entry.name}[/bold] thread={thread} policy={tier_config.policy}")
            payload = {"request": read_input(args.input), **_functions_payload(args, entry)}
        _stream(graph, payload, config, context, out)
        while (question := _pending_interrupt(graph, config)) is not None:
            if not sys.stdin.isatty():
                resume = f"tierflow run {args.graph} --thread {thread} --resume"
                out.print(f"[yellow]{question_line(question, resume)}[/yellow]", highlight=False)
                if args.json:
                    _print_json({"thread": thread, "status": "needs_human", "question": question, "resume": f"{resume} --answer ..."})
                return 3
            _stream(graph, Command(resume=_ask(question, out)), config, context, out)
        state = graph.get_state(config).values
    ledger = [u for u in state.get("ledger", []) if u.get("run_id") == state.get("run_id")]
    out.print(final_panel(state.get("final", {})))
    ledger_table(ledger, tier_config, out)
    if args.json:
        _print_json(_run_document(thread, state, ledger, tier_config))
    if state.get("status") == "error":
        return _report_run_error(state.get("failure") or {}, thread, out)
    return 0 if state.get("status") == "done" else 1


def _run_document(thread: str, state: Mapping[str, Any], ledger: list[dict[str, Any]], tier_config: Any) -> dict[str, Any]:
    """What `--json` prints: the run's end state, its ledger and its totals."""
    totals = summarize(ledger, tier_config)
    return {
        "thread": thread,
        "run_id": state.get("run_id"),
        "status": state.get("status"),
        "final": state.get("final", {}),
        "results": state.get("results", {}),
        "decided_by": state.get("decided_by", {}),
        "failure": state.get("failure"),
        "ledger": ledger,
        "cost_usd": totals.cost_usd,
        "all_frontier_cost_usd": totals.all_frontier_cost_usd,
    }


def _print_json(document: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(document, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _report_run_error(failure: Mapping[str, Any], thread: str, out: Console) -> int:
    """A run that stopped on a misconfigured tier (exit 2) or a crashed check or tool (1)."""
    if failure.get("kind") == "configuration":
        # Raised, so the command's guard prints it as every configuration error is printed.
        raise ConfigError(f"{failure.get('reason')} (the run's state is kept in thread '{thread}'; run again once it is fixed)")
    log = write_crash_log(str(failure.get("traceback") or failure.get("reason")), prefix="step-bug")
    where = f"; the traceback is in {log}" if log else ""
    out.print(f"[red]error:[/red] step '{failure.get('step')}' stopped on a bug: {failure.get('reason')}{where}", highlight=False)
    return 1


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


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("run", help="run a graph on one request (checkpointed, resumable)")
    p.add_argument("graph", help=f"a graph name ({', '.join(sorted(SHIPPED_GRAPHS))}, or one of the project's) or a reference: package.module:WORKFLOW, path/to/file.py:WORKFLOW")
    p.add_argument("--input", help="the request: TEXT, or @FILE to read it from a file")
    p.add_argument("--functions", help="the caller's functions (function_calling): a JSON list, or @FILE.json")
    p.add_argument("--thread", help="thread id (default: a new one); reuse it with --resume")
    p.add_argument("--resume", action="store_true", help="continue the thread from its last checkpoint")
    p.add_argument("--answer", help="answer to the pending question (with --resume): approve, reject, yes, no, or JSON")
    p.add_argument("--policy", choices=["tiered", "all-slm", "all-frontier"], help="routing policy for this run")
    p.add_argument("--max-frontier-calls", type=int, help="budget: frontier calls for this run")
    p.add_argument("--max-cost", type=float, help="budget: USD for this run")
    p.add_argument("--on-budget", choices=["stop", "interrupt", "cheaper_only"], help="what to do when a budget is spent")
    p.add_argument("--json", action="store_true", help="print the final state as one JSON document on stdout (progress on stderr)")
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
    register_studio(subparsers)
