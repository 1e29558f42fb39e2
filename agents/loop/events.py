"""The events a run records: one typed set of kinds, and the one place they are published.

A node puts its events in its state update (`events`, appended by the state's reducer);
the graph's node wrapper (`graphs.builder`) then streams each of them on the `custom`
stream, so every recorded event is also seen live (by `tierflow run`, Studio, the SDK).
`model_call`, `proposal` and `final` are streamed only: the ledger, the verdicts and
`final` already hold what state needs of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Required, get_args

from typing_extensions import TypedDict

if TYPE_CHECKING:
    from tierflow.agents.context import NodeRuntime

__all__ = ["EventKind", "StreamOnlyKind", "EVENT_KINDS", "Event", "check_events", "publish"]

EventKind = Literal[
    "route",  # the router chose the planner or the default plan
    "rejected_input",  # the request cannot run (empty, too long, bad functions)
    "skip_tier",  # the calibration's router started a step one tier up (before any call)
    "verdict",  # the verifier passed or failed a candidate (with warnings from soft checks)
    "retry",  # the same tier again, with the failure as feedback
    "escalate",  # the next tier up, after the retries
    "fallback",  # the next tier up, after a fault (the tier did not answer)
    "top",  # no higher tier: human review, or a failed step
    "default_plan",  # the planner failed on every tier: the default plan runs
    "budget_stop",  # a budget is spent: the run stops
    "budget_downgrade",  # a budget is spent: a cheaper tier takes the call
    "budget_approved",  # a human allowed one call over budget
    "declined",  # a human said no to a tool call
    "tool_executed",  # a verified tool call ran
    "human_decision",  # a reviewer approved or edited a step's value
    "human_reject",  # a reviewer rejected the step: the run fails
    "judge_fault",  # the LLM judge could not answer: the cheaper checks' verdict stands
    "run_error",  # a misconfigured tier or a crashed check / tool stopped the run
    "ledger_error",  # the ledger store could not be written: the run went on without it
]
# model_call: a call and its error kind, as it ends; proposal: the candidate an attempt hands
# the verifier (the eval harness matches candidates to ground truth with it); final: the end.
StreamOnlyKind = Literal["model_call", "proposal", "final"]
EVENT_KINDS: frozenset[str] = frozenset(get_args(EventKind))
_STREAM_ONLY: frozenset[str] = frozenset(get_args(StreamOnlyKind))

# One recorded event: its kind, and the fields that kind carries (each kind sets a few of
# them). The functional form because "from" is a Python keyword; typing_extensions' TypedDict
# because pydantic reads the graph's state schema (it needs that one before Python 3.12).
Event = TypedDict(
    "Event",
    {
        "type": Required[EventKind],
        "step": str,
        "item_id": str,
        "reason": str | None,
        "tier": str | None,
        "from": str | None,
        "to": str | None,
        "attempt": int | None,
        "verdict": Literal["pass", "fail"],
        "signals": dict[str, float],
        "warnings": list[str],
        "kind": str,  # run_error: "configuration" or "bug"
        "p_fail": float,  # skip_tier: the router's probability that the lower tier fails
        "tool": str,
        "write": bool,
        "action": str,  # human_decision: "approve" or "edit"
    },
    total=False,
)


def check_events(events: Iterable[Mapping[str, Any]]) -> None:
    """Raise on an event of a kind not in the set: a bug in the node that wrote it."""
    for event in events:
        kind = event.get("type")
        if kind not in EVENT_KINDS:
            hint = " (stream-only: emit it, do not record it)" if kind in _STREAM_ONLY else ""
            raise ValueError(f"unknown event kind {kind!r}{hint}; kinds: {', '.join(sorted(EVENT_KINDS))}")


def publish(runtime: NodeRuntime, events: Iterable[Mapping[str, Any]]) -> None:
    """Stream recorded events, already masked by the node wrapper that recorded them (a
    no-op outside a streaming run)."""
    writer = getattr(runtime, "stream_writer", None)
    if writer is not None:
        for event in events:
            writer(dict(event))
