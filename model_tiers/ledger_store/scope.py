"""Where a model call happens: the run, graph, version, step and attempt it belongs to.

The code that owns a unit of work (a graph node, an eval case, a judge, a fine-tune
evaluation) opens a `CallScope`; `TierRegistry.call` reads the current one and appends the
call's row to the scope's store as the reply (or the failure) comes back. A scope is a
context variable: LangGraph runs each node in a copy of the caller's context, so a scope
opened around a node (or a source named around a whole run) reaches every call inside it.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from tierflow.model_tiers.ledger_store.store import LedgerStore

__all__ = [
    "Source",
    "SOURCES",
    "CallScope",
    "WrittenCall",
    "current_scope",
    "call_scope",
    "current_source",
    "ledger_source",
    "labelled_calls",
]

# Who made the call. `run`: tierflow.run / `tierflow run`. `server`: the compiled graph
# invoked by anything else (LangGraph Server, `langgraph dev`, the user's own app). `eval`:
# a case of `tierflow eval`. `judge`: an LLM judge grading an eval. `finetune`: the
# evaluation of a fine-tuned adapter.
Source = Literal["run", "server", "eval", "judge", "finetune"]
SOURCES: tuple[Source, ...] = ("run", "server", "eval", "judge", "finetune")


@dataclass(frozen=True)
class WrittenCall:
    """A row this scope appended: its key (for settling its verdict later) and its label."""

    request_id: str
    label: str
    seq: int


@dataclass
class CallScope:
    """One unit of work whose calls share a run, a step and an attempt.

    `item_id` is the plan item ("0:classify"), `step` its step name; `attempt` numbers the
    step's attempts (1, 2, ...). `seq` numbers the requests made in this scope, so a node
    that makes two requests (a tool choice, then the call) keys them apart; a node run
    again after a kill restarts at 1, and the store marks its rows as a re-run.
    """

    store: LedgerStore | None
    source: Source
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    thread_id: str | None = None
    graph: str | None = None
    graph_version: str | None = None
    item_id: str | None = None
    step: str | None = None
    attempt: int = 0
    role: str | None = None
    # The label of the calls made now: the step's own name, or e.g. "classify.judge".
    label: str | None = None
    # Shared by this scope and its labelled copies (`labelled_calls`): one sequence, one list.
    _calls: _Calls = field(default_factory=lambda: _Calls(), repr=False)

    def next_seq(self) -> int:
        with self._calls.lock:
            self._calls.seq += 1
            return self._calls.seq

    def at(self, *, item_id: str, step: str, attempt: int, role: str | None) -> None:
        """Name the step and attempt once the node knows them (the scope opens before)."""
        self.item_id, self.step, self.attempt, self.role = item_id, step, attempt, role
        if self.label is None:
            self.label = step

    def note(self, call: WrittenCall) -> None:
        with self._calls.lock:
            self._calls.written.append(call)

    @property
    def written(self) -> list[WrittenCall]:
        with self._calls.lock:
            return list(self._calls.written)

    def store_failed(self, message: str) -> bool:
        """Record that the store failed; True the first time (report it once per scope)."""
        with self._calls.lock:
            first = self._calls.store_error is None
            self._calls.store_error = self._calls.store_error or message
            return first

    @property
    def store_error(self) -> str | None:
        return self._calls.store_error


@dataclass
class _Calls:
    seq: int = 0
    written: list[WrittenCall] = field(default_factory=list)
    store_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_SCOPE: contextvars.ContextVar[CallScope | None] = contextvars.ContextVar("tierflow_call_scope", default=None)
_SOURCE: contextvars.ContextVar[Source | None] = contextvars.ContextVar("tierflow_ledger_source", default=None)


def current_scope() -> CallScope | None:
    return _SCOPE.get()


def current_source(default: Source = "server") -> Source:
    """The source named around this run (`ledger_source`), else `default`."""
    return _SOURCE.get() or default


@contextlib.contextmanager
def call_scope(scope: CallScope) -> Iterator[CallScope]:
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


@contextlib.contextmanager
def ledger_source(source: Source) -> Iterator[None]:
    """Name who is running graphs inside the block (`tierflow.run` says "run", the eval
    harness "eval"); a graph invoked with no source named is a server run."""
    token = _SOURCE.set(source)
    try:
        yield
    finally:
        _SOURCE.reset(token)


@contextlib.contextmanager
def labelled_calls(label: str, role: str | None = None) -> Iterator[None]:
    """Calls inside the block carry `label` (a judge inside a step's node: "step.judge")."""
    scope = _SCOPE.get()
    if scope is None:
        yield
        return
    token = _SCOPE.set(dataclasses.replace(scope, label=label, role=role or scope.role))
    try:
        yield
    finally:
        _SCOPE.reset(token)
