"""What every node of the loop shares: the node names, the escalation state of a plan item,
the tool helpers, and the two ways an item ends: `commit_and_advance` (verified) and
`stop_for_error` (a misconfiguration or a bug)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.types import Command

from tierflow.agents.client_tools import openai_tools
from tierflow.agents.context import RESET, NodeRuntime, Services, current_item
from tierflow.agents.loop.events import Event
from tierflow.agents.spec import Attempt, Failure, PlanItem, Proposal, StepSpec, ToolResult
from tierflow.model_tiers import TierflowError, Usage
from tierflow.model_tiers.config import coerce_context
from tierflow.model_tiers.ledger import UsageRecord, Verdict

__all__ = [
    "RESPONDER",
    "ACT",
    "HUMAN_REVIEW",
    "new_attempt",
    "attempt_for",
    "is_yes",
    "tools_for",
    "tools_text",
    "tool_result",
    "next_node",
    "commit_and_advance",
    "usage_dump",
    "ledger_row",
    "stop_for_error",
    "plan_items",
]


# RESPONDER is no node: `goto=RESPONDER` means "end the run here" (the graph's node wrapper
# writes the final output in the same node). Each step node judges its own attempt, and
# each node routes to the next step. The names stay reserved: no step may take them.
RESPONDER, ACT, HUMAN_REVIEW = "responder", "act", "human_review"


def new_attempt(item: PlanItem) -> Attempt:
    return Attempt(item_id=item.id, tier=None, tries=0, number=0, feedback=[], faults=[], approved_over_budget=None)


def attempt_for(state: Mapping[str, Any], item: PlanItem) -> Attempt:
    """The item's escalation state from `state` (a copy, safe to edit), or a fresh one."""
    att = state.get("attempt")
    if att and att.get("item_id") == item.id:
        return Attempt(
            item_id=att["item_id"], tier=att["tier"], tries=att["tries"], number=att["number"],
            feedback=list(att["feedback"]), faults=list(att["faults"]), approved_over_budget=att.get("approved_over_budget"),
        )
    return new_attempt(item)


def is_yes(answer: Any) -> bool:
    if isinstance(answer, Mapping):
        answer = answer.get("approve", answer.get("answer", answer.get("action")))
    if isinstance(answer, bool):
        return answer
    return str(answer).strip().lower() in {"y", "yes", "approve", "approved", "true", "ok", "confirm"}


def tools_for(spec: StepSpec, item: PlanItem, services: Services, state: Mapping[str, Any]) -> list[Any]:
    """What a tool step's model is shown: the request's functions, or the toolbox's tools."""
    if spec.client_tools:
        functions = state.get("functions") or []
        return openai_tools([f for f in functions if not item.tool or f["name"] == item.tool])
    if services.toolbox is None:
        raise TierflowError(f"step '{spec.name}' calls tools but the graph has no toolbox")
    names = [item.tool] if item.tool else list(spec.tools)
    return [services.toolbox.tools[n] for n in names if n in services.toolbox.tools]


def tools_text(tools: Sequence[Any]) -> str:
    """The tool definitions as the prompt carries them (for the context-window estimate)."""
    return "\n".join(json.dumps(t if isinstance(t, Mapping) else convert_to_openai_tool(t), default=str) for t in tools)


def tool_result(value: Mapping[str, Any], status: Literal["done", "proposed", "declined"], output: Any = None) -> ToolResult:
    """The recorded result of a tool step: done (executed here), proposed (a client call,
    returned to the caller), declined (a human said no) or no_call (the model declined)."""
    if value.get("name") is None:
        return {"tool": None, "args": None, "status": "no_call", "reply": value.get("reply", "")}
    return {"tool": value["name"], "args": dict(value.get("args") or {}), "status": status, "output": output}


def next_node(
    state: Mapping[str, Any], runtime: NodeRuntime, *,
    plan: Sequence[Mapping[str, Any]] | None = None, cursor: int, done: Sequence[str] = (),
) -> str:
    """Where the run goes once the plan is at `cursor`: that item's step, or the responder
    when the plan is over or every step the run context's `stop_after` names has a verified
    result (`done`: plan item ids verified by the update being written)."""
    items = list(state.get("plan") or []) if plan is None else list(plan)
    if cursor >= len(items):
        return RESPONDER
    ctx = coerce_context(runtime.context)
    if ctx is not None and ctx.stop_after:
        verified = {key.split(":", 1)[-1] for key in [*(state.get("results") or {}), *done] if key != RESET}
        if all(step in verified for step in ctx.stop_after):
            return RESPONDER
    return str(items[cursor]["step"])


def commit_and_advance(
    state: Mapping[str, Any], runtime: NodeRuntime, item: PlanItem, result: Any, decided_by: str,
    events: Sequence[Event], **extra: Any,
) -> Command[str]:
    """The one way a plan item ends well: its verified result and who decided it are
    committed, the escalation state is cleared, and the run goes to the next item."""
    cursor = int(state.get("cursor", 0)) + 1
    return Command(
        goto=next_node(state, runtime, cursor=cursor, done=[item.id]),
        update={
            "results": {item.id: result},
            "decided_by": {item.id: decided_by},
            "cursor": cursor,
            "attempt": None,
            "proposal": None,
            "events": list(events),
            **extra,
        },
    )


def usage_dump(usage: object) -> UsageRecord | None:
    return usage.record() if isinstance(usage, Usage) else None


def ledger_row(
    proposal: Proposal, spec: StepSpec, state: Mapping[str, Any], verdict: Verdict, reason: str | None,
    signals: Mapping[str, float] | None = None,
) -> list[UsageRecord]:
    """The ledger entry of a proposal's model call (none when no request was made), with
    what the verifier measured of it (`agents.signals`)."""
    usage = proposal.get("usage")
    if not usage:
        return []
    return [
        {
            **usage,
            "run_id": state.get("run_id"),
            "node": spec.name,
            "step": proposal["item_id"],
            "role": spec.role,
            "attempt": proposal.get("attempt", 0),
            "verdict": verdict,
            "reason": reason,
            "signals": dict(signals) if signals is not None else None,
        }
    ]


def stop_for_error(
    state: Mapping[str, Any], runtime: NodeRuntime, spec: StepSpec | None, proposal: Proposal,
    kind: Literal["configuration", "bug"], reason: str, events: Sequence[Event] = (), detail: str | None = None,
) -> Command[str]:
    """End the run at this step with status "error": a misconfigured tier ("configuration")
    or a check, tool or action that crashed ("bug", with its traceback in `detail`).
    Neither is a model's mistake, so neither is fed back to a model or escalated."""
    item = current_item(state)
    verdict: Verdict = "fault" if kind == "configuration" else "fail"
    failure: Failure = {"step": item.step, "item_id": item.id, "kind": kind, "reason": reason}
    if detail:
        failure["traceback"] = detail
    event: Event = {"type": "run_error", "step": item.step, "item_id": item.id, "kind": kind, "reason": reason}
    return Command(
        goto=RESPONDER,
        update={
            "status": "error",
            "failure": failure,
            "ledger": ledger_row(proposal, spec, state, verdict, reason) if spec else [],
            "events": [*events, event],
        },
    )


def plan_items(steps: Sequence[Mapping[str, Any]], start: int) -> list[dict[str, Any]]:
    return [
        PlanItem(id=f"{start + i}:{s['step']}", step=s["step"], tool=s.get("tool"), instruction=s.get("instruction", "")).model_dump()
        for i, s in enumerate(steps)
    ]
