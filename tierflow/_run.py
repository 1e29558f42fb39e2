"""`tierflow.run` and `tierflow.resume`: one run of a graph, checkpointed, as a `RunResult`.

`tierflow run` is this module plus printing: the same checkpoints, the same result.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypedDict, Unpack, cast

from langgraph.types import Command

from tierflow._results import RunFailure, RunResult, RunStatus
from tierflow.graphs.builder import Workflow
from tierflow.graphs.catalog import GraphEntry, resolve_graph, workflow_entry
from tierflow.graphs.run_output import clip
from tierflow.model_tiers import ConfigError, TierConfig, TierRegistry, TierRunContext, apply_run_context, load_tier_config, summarize
from tierflow.model_tiers.config import coerce_context
from tierflow.model_tiers.home import corrupt_database_message, home_dir, write_crash_log
from tierflow.model_tiers.ledger_store.scope import ledger_source

__all__ = [
    "ANSWER_FORMS",
    "GraphLike",
    "TiersLike",
    "EventHandler",
    "Asker",
    "RunOptions",
    "run",
    "resume",
    "parse_answer",
    "resolve_entry",
    "sqlite_checkpointer",
]

# A graph: a Workflow object, a catalog name ("ticket_triage") or a reference
# ("my_pkg.agent:WORKFLOW", "path/to/agent.py:WORKFLOW").
GraphLike = Workflow | str
# Tiers: a tiers file (path, or the name of a shipped one), a loaded config, or a registry
# (one whose models are set, e.g. scripted ones in a test). None: $TIERFLOW_TIERS, else
# ./tiers.toml, else the built-in defaults.
TiersLike = str | os.PathLike[str] | TierConfig | TierRegistry | None
# Called with each event of the run as it happens (verdicts, escalations, tool calls), and
# first with {"type": "start", "graph", "thread", "policy", "resuming"}.
EventHandler = Callable[[Mapping[str, Any]], None]
# Answers a question the run asks a human (returns the answer); without one, a run that
# asks returns with status needs_human.
Asker = Callable[[Mapping[str, Any]], Any]

CHECKPOINTS_FILE = "checkpoints.sqlite"
ANSWER_FORMS = "approve, reject, yes, no, or JSON such as '{\"action\": \"edit\", \"value\": {...}}'"
_BARE_ANSWERS: dict[str, Any] = {
    "approve": {"action": "approve"},
    "reject": {"action": "reject"},
    "yes": "yes",
    "y": "yes",
    "no": "no",
    "n": "no",
}


def parse_answer(text: str) -> Any:
    """A human's answer written as text: a bare word (approve, reject, yes, no) or JSON."""
    word = text.strip()
    if word.lower() in _BARE_ANSWERS:
        return _BARE_ANSWERS[word.lower()]
    try:
        return json.loads(word)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"the answer {clip(word, 60)!r} is neither a known word nor JSON ({err.msg}); give {ANSWER_FORMS}", source="--answer"
        ) from None


@contextlib.contextmanager
def sqlite_checkpointer(path: Path) -> Iterator[Any]:
    """A SQLite checkpointer on `path`, closed on exit; a file that is not a database is a
    clear error naming how to move it aside."""
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


def resolve_entry(graph: GraphLike) -> tuple[GraphEntry, str | None]:
    """The graph's entry, and how the CLI names it (None for a workflow no module holds)."""
    if isinstance(graph, Workflow):
        entry = workflow_entry(graph)
        return entry, entry.ref if entry.module is not None else None
    if isinstance(graph, str):
        return resolve_graph(graph), graph
    raise ConfigError(
        f"a graph is a tierflow Workflow, a graph name or a reference such as 'my_pkg.agent:WORKFLOW'; got {type(graph).__name__}"
    )


@dataclass(frozen=True)
class _Session:
    """What one call runs: the graph, its tiers, its run context and where its checkpoints go."""

    entry: GraphEntry
    cli_name: str | None
    context: TierRunContext | None
    tier_config: TierConfig
    build_options: Mapping[str, Any]
    checkpointer: Any
    on_event: EventHandler | None
    ask: Asker | None


def _run_context(
    context: TierRunContext | Mapping[str, Any] | None,
    policy: str | None,
    max_frontier_calls: int | None,
    max_cost_usd: float | None,
    on_budget_exhausted: str | None,
) -> TierRunContext | None:
    base = coerce_context(context) or TierRunContext()
    merged = replace(
        base,
        policy=policy if policy is not None else base.policy,
        max_frontier_calls=max_frontier_calls if max_frontier_calls is not None else base.max_frontier_calls,
        max_cost_usd=max_cost_usd if max_cost_usd is not None else base.max_cost_usd,
        on_budget_exhausted=on_budget_exhausted if on_budget_exhausted is not None else base.on_budget_exhausted,
    )
    return merged if merged != TierRunContext() else None


def _tiers(tiers: TiersLike, context: TierRunContext | None) -> tuple[TierConfig, dict[str, Any]]:
    """The effective tier config (for the ledger's prices) and how the graph gets its tiers."""
    options: dict[str, Any]
    if isinstance(tiers, TierRegistry):
        config, options = tiers.config, {"registry": tiers}
    elif isinstance(tiers, TierConfig):
        config, options = tiers, {"registry": TierRegistry(tiers)}
    else:
        path = os.fspath(tiers) if tiers is not None else None
        config, options = load_tier_config(path), {"tiers_file": path}
    # The registry applies the context per run; here it prices the ledger and names the policy.
    return (apply_run_context(config, context) if context is not None else config), options


class RunOptions(TypedDict, total=False):
    """How `run` and `resume` run a graph; every key is optional.

    `tiers`: a tiers file (a path, or the name of a shipped one), a loaded `TierConfig` or a
    `TierRegistry` (default: $TIERFLOW_TIERS, else ./tiers.toml, else the built-in tiers).
    `policy` ('tiered', 'all-slm', 'all-frontier'), `max_frontier_calls`, `max_cost_usd` and
    `on_budget_exhausted` override the tiers' settings for this run, as `context` (a
    `TierRunContext` or its fields) does for the rest. `checkpointer`: any LangGraph saver
    (default: $TIERFLOW_HOME/checkpoints.sqlite). `on_event` sees each event as it happens;
    `ask` answers a question the run asks a human.
    """

    tiers: TiersLike
    policy: str | None
    context: TierRunContext | Mapping[str, Any] | None
    max_frontier_calls: int | None
    max_cost_usd: float | None
    on_budget_exhausted: str | None
    checkpointer: Any
    on_event: EventHandler | None
    ask: Asker | None


@contextlib.contextmanager
def _session(graph: GraphLike, options: RunOptions) -> Iterator[_Session]:
    entry, cli_name = resolve_entry(graph)
    run_context = _run_context(
        options.get("context"),
        options.get("policy"),
        options.get("max_frontier_calls"),
        options.get("max_cost_usd"),
        options.get("on_budget_exhausted"),
    )
    tier_config, build_options = _tiers(options.get("tiers"), run_context)
    checkpointer = options.get("checkpointer")
    saver_scope = contextlib.nullcontext(checkpointer) if checkpointer is not None else sqlite_checkpointer(home_dir() / CHECKPOINTS_FILE)
    with saver_scope as saver:
        yield _Session(entry, cli_name, run_context, tier_config, build_options, saver, options.get("on_event"), options.get("ask"))


def _functions_input(entry: GraphEntry, functions: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    takes = entry.workflow.takes_functions
    if functions is None:
        if takes:
            raise ConfigError(
                f"graph '{entry.name}' needs the functions it may call: --functions @FILE.json on the command line, "
                "functions=[...] from Python (a list in OpenAI tool format)"
            )
        return {}
    if not takes:
        raise ConfigError(
            f"graph '{entry.name}' uses its own tools; --functions (functions=) is for graphs that take the caller's functions"
        )
    return {"functions": [dict(f) for f in functions]}


def _pending_question(graph: Any, config: Mapping[str, Any]) -> Any:
    for task in graph.get_state(config).tasks:
        if task.interrupts:
            return task.interrupts[0].value
    return None


def _stream(session: _Session, graph: Any, payload: Any, config: Mapping[str, Any]) -> None:
    # "sync" durability: each step's checkpoint is on disk before the next step starts, so a
    # run killed at any point resumes from the step it was in.
    for mode, chunk in graph.stream(payload, config, context=session.context, stream_mode=["updates", "custom"], durability="sync"):
        if mode == "custom" and isinstance(chunk, Mapping) and session.on_event is not None:
            session.on_event(chunk)


def _drive(session: _Session, thread: str, payload: Any, *, resuming: bool) -> RunResult:
    config = {"configurable": {"thread_id": thread}}
    graph = session.entry.build(checkpointer=session.checkpointer, **session.build_options)
    if resuming and not graph.get_state(config).next:
        raise ConfigError(f"thread '{thread}' has nothing to resume (finished, or never started)")
    if resuming and payload is not None and _pending_question(graph, config) is None:
        payload = None  # an answer with no question pending: the thread simply continues
    if session.on_event is not None:
        start = {"type": "start", "graph": session.entry.name, "thread": thread, "policy": session.tier_config.policy, "resuming": resuming}
        session.on_event(start)
    with ledger_source("run"):
        _stream(session, graph, payload, config)
        question = _pending_question(graph, config)
        while question is not None and session.ask is not None:
            _stream(session, graph, Command(resume=session.ask(question)), config)
            question = _pending_question(graph, config)
    return _result(session, thread, graph.get_state(config).values, question)


def _failure(failure: Mapping[str, Any] | None) -> RunFailure | None:
    """The state's failure, its traceback moved to a log file (the result carries the path)."""
    if not failure:
        return None
    fields = {k: v for k, v in failure.items() if k != "traceback"}
    if failure.get("traceback"):
        log = write_crash_log(str(failure["traceback"]), prefix="step-bug")
        fields["log"] = str(log) if log else None
    return RunFailure.model_validate(fields)


def _result(session: _Session, thread: str, state: Mapping[str, Any], question: Any) -> RunResult:
    ledger = [u for u in state.get("ledger") or [] if u.get("run_id") == state.get("run_id")]
    totals = summarize(ledger, session.tier_config)
    # The engine's statuses are RunStatus's; pydantic checks it when the result is built.
    status = cast(RunStatus, "needs_human" if question is not None else state.get("status") or "running")
    resume_command = (
        f"tierflow run {session.cli_name} --thread {thread} --resume --answer ..." if question is not None and session.cli_name else None
    )
    return RunResult(
        graph=session.entry.name,
        thread=thread,
        run_id=state.get("run_id"),
        status=status,
        final=dict(state.get("final") or {}),
        results=dict(state.get("results") or {}),
        decided_by=dict(state.get("decided_by") or {}),
        failure=_failure(state.get("failure")),
        question=dict(question) if isinstance(question, Mapping) else ({"question": question} if question is not None else None),
        resume=resume_command,
        ledger=ledger,
        summary=totals,
        cost_usd=totals.cost_usd,
        all_frontier_cost_usd=totals.all_frontier_cost_usd,
        frontier_tier=session.tier_config.frontier.name,
    )


def run(
    graph: GraphLike,
    input: str,
    *,
    thread: str | None = None,
    functions: Sequence[Mapping[str, Any]] | None = None,
    **options: Unpack[RunOptions],
) -> RunResult:
    """Run `graph` on one request and return how it ended (what `tierflow run --json` prints).

    `graph`: a Workflow, a graph name or a reference ('my_pkg.agent:WORKFLOW',
    'path/to/agent.py:WORKFLOW'). `functions`: the caller's functions, for graphs whose tool
    steps take them. Checkpoints go under `thread` (default: a new one). `options`: the
    tiers, policy, budgets, checkpointer and callbacks (`RunOptions`).

    A run that asks a human (a step failed on every tier, a tool write to confirm) returns
    with status "needs_human" and the `question`, unless `ask` answers it; answer it later
    with `tierflow.resume(graph, result.thread, answer)`.
    """
    with _session(graph, options) as session:
        payload = {"request": input, **_functions_input(session.entry, functions)}
        thread = thread or f"{session.entry.name}-{uuid.uuid4().hex[:8]}"
        return _drive(session, thread, payload, resuming=False)


def resume(graph: GraphLike, thread: str, answer: Any = None, **options: Unpack[RunOptions]) -> RunResult:
    """Continue the run on `thread` from its last checkpoint, answering its pending question
    with `answer` if it has one (a value, or text: approve, reject, yes, no, or JSON).

    A run that was killed continues where it stopped (`answer` is then not needed). The
    tiers, run context and checkpointer (`options`) must be those of the run being resumed.
    """
    with _session(graph, options) as session:
        value = parse_answer(answer) if isinstance(answer, str) else answer
        return _drive(session, thread, Command(resume=value) if answer is not None else None, resuming=True)
