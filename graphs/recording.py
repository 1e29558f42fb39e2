"""Every node of a tiered graph writes its model calls to the ledger store.

The node wrapper opens a `CallScope` (run, thread, graph, graph version) around the node;
the step node names its step and attempt in it; the registry appends each request's row as
it comes back, so a node killed mid-call leaves the rows of the requests it already made,
and the same node run again writes new rows, numbered as a re-run. Once the node returns,
its state update says what the verifier decided: that is settled onto the rows it wrote,
and a step that ended gets its outcome on every row of every attempt.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langgraph.config import get_config
from langgraph.types import Command

from tierflow.agents.loop.common import HUMAN_REVIEW
from tierflow.model_tiers.ledger_store import (
    CallScope,
    LedgerStore,
    LedgerStoreError,
    Settlement,
    call_scope,
    current_source,
    default_ledger_store,
    default_store_error,
    report_store_failure,
)

if TYPE_CHECKING:
    from tierflow.graphs.builder import Workflow
    from tierflow.model_tiers import TierConfig

__all__ = ["recorded", "graph_version", "ESCALATIONS"]

# The events that say a step's attempt did not end it (agents.loop.ladder's decisions).
ESCALATIONS = frozenset({"retry", "escalate", "fallback", "top"})
# Where a step ends, the outcome its rows carry.
_ENDED_STATUS = frozenset({"error", "stopped", "failed", "rejected"})


def _calibration_text(config: TierConfig) -> str | None:
    path = config.escalation.calibration
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None  # the run itself says what is wrong with the file


def graph_version(workflow: Workflow, config: TierConfig) -> str:
    """A short hash of what decides a graph's behaviour: its steps (names, kinds, roles,
    instructions, output schemas, checks, tools), the tiers config and the calibration
    artifact. A new prompt, a new tier or a new calibration is a new version."""
    steps = [
        {
            "name": s.name,
            "kind": str(s.kind),
            "role": s.role,
            "instructions": s.instructions,
            "schema": s.output_model.model_json_schema() if s.output_model is not None else None,
            "checks": [c.name for c in s.checks],
            "tools": list(s.tools),
        }
        for s in workflow.all_steps
    ]
    digest = hashlib.sha256()
    digest.update(json.dumps({"graph": workflow.name, "steps": steps}, sort_keys=True, default=str).encode())
    digest.update(config.model_dump_json().encode())
    digest.update((_calibration_text(config) or "").encode())
    return digest.hexdigest()[:12]


def _thread_id() -> str | None:
    try:
        configurable = get_config().get("configurable") or {}
    except RuntimeError:
        return None  # called outside a runnable context (a node run by hand in a test)
    value = configurable.get("thread_id")
    return str(value) if value is not None else None


def _current_item_id(state: Mapping[str, Any]) -> str | None:
    plan = state.get("plan") or []
    cursor = int(state.get("cursor") or 0)
    return str(plan[cursor]["id"]) if cursor < len(plan) else None


def _update_of(out: Any) -> Mapping[str, Any]:
    if isinstance(out, Command):
        return out.update if isinstance(out.update, Mapping) else {}
    return out if isinstance(out, Mapping) else {}


def _settle(store: LedgerStore, scope: CallScope, state: Mapping[str, Any], out: Any) -> None:
    update = _update_of(out)
    if "run_id" in update:
        return  # the router: a new run starts, no call was made
    events: Sequence[Mapping[str, Any]] = update.get("events") or []
    item_id = scope.item_id or _current_item_id(state)
    escalation = next((str(e["type"]) for e in events if e.get("type") in ESCALATIONS and e.get("item_id") == item_id), None)
    written = scope.written
    for row in update.get("ledger") or []:
        ids = [c.request_id for c in written if c.label == row.get("node")]
        settlement = Settlement(
            verdict=row.get("verdict"),
            reason=row.get("reason"),
            signals=row.get("signals"),
            escalation=escalation if row.get("node") == scope.step else None,
        )
        store.settle(ids, settlement)
    if item_id is None or not scope.run_id:
        return
    outcome: str | None = None
    if item_id in (update.get("results") or {}):
        outcome = "verified"
    elif isinstance(out, Command) and out.goto == HUMAN_REVIEW:
        outcome = "human"
    elif update.get("status") in _ENDED_STATUS:
        outcome = str(update["status"])
    if outcome is not None:
        store.finish_item(scope.run_id, item_id, outcome)


def _with_event(out: Any, event: Mapping[str, Any]) -> Any:
    if isinstance(out, Command):
        update = dict(_update_of(out))
        update["events"] = [*(update.get("events") or []), event]
        return Command(graph=out.graph, update=update, resume=out.resume, goto=out.goto)
    if isinstance(out, Mapping):
        return {**out, "events": [*(out.get("events") or []), event]}
    return out


def recorded(
    node: Callable[..., Any], workflow: Workflow, config: Callable[[], TierConfig], tiers_file: str | None
) -> Callable[..., Any]:
    """`node`, its model calls written to the ledger store (`config`: the graph's base tiers
    config, resolved when the first node runs: it names the version)."""
    version: list[str] = []

    def version_of(store: LedgerStore) -> str:
        if not version:
            base = config()
            found = graph_version(workflow, base)
            calibration = base.escalation.calibration
            store.note_version(
                found, graph=workflow.name, tiers_file=tiers_file, calibration_path=str(calibration) if calibration else None,
                calibration=_calibration_text(base),
            )
            version.append(found)
        return version[0]

    @functools.wraps(node)
    def recording(state: dict[str, Any], runtime: Any) -> Any:
        store = default_ledger_store()
        if store is None:
            out = node(state, runtime)
            failed = default_store_error()
            # Said once per run, on the router's update (the node that starts one).
            if failed is not None and "run_id" in _update_of(out):
                return _with_event(out, {"type": "ledger_error", "reason": failed})
            return out
        try:
            current_version: str | None = version_of(store)
        except LedgerStoreError as err:
            report_store_failure(str(err))
            current_version = None
        scope = CallScope(
            store=store,
            source=current_source("server"),
            run_id=str(state.get("run_id") or ""),
            thread_id=_thread_id(),
            graph=workflow.name,
            graph_version=current_version,
        )
        with call_scope(scope):
            out = node(state, runtime)
        try:
            _settle(store, scope, state, out)
        except LedgerStoreError as err:
            if scope.store_failed(str(err)):
                report_store_failure(str(err))
        if scope.store_error is not None:
            return _with_event(out, {"type": "ledger_error", "reason": scope.store_error})
        return out

    return recording
