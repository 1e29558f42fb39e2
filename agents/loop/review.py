"""The human-review node: pause when the top tier failed; resume with approve / edit / reject."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from langgraph.types import Command, interrupt
from pydantic import ValidationError

from tierflow.agents.context import LoopNode, NodeRuntime, ServiceResolver, as_jsonable, current_item
from tierflow.agents.loop.common import (
    ACT,
    HUMAN_REVIEW,
    RESPONDER,
    commit_and_advance,
    tool_result,
)
from tierflow.agents.loop.events import Event
from tierflow.agents.loop.verify import tool_reason
from tierflow.agents.spec import Failure, StepKind, StepSpec

if TYPE_CHECKING:
    from tierflow.graphs.state import TieredState

__all__ = [
    "make_human_review_node",
]


def _coerce_review(answer: Any) -> tuple[str, Any]:
    if isinstance(answer, Mapping) and answer.get("action") in {"approve", "edit", "reject"}:
        return str(answer["action"]), answer.get("value")
    return "edit", answer


def make_human_review_node(steps: Mapping[str, StepSpec], resolve: ServiceResolver) -> LoopNode:
    """Pause for a human when the top tier failed; resume with approve / edit / reject."""

    def human_review(state: TieredState, runtime: NodeRuntime) -> Command[str]:
        services = resolve(runtime)
        item = current_item(state)
        spec = steps[item.step]
        att = state.get("attempt")
        feedback = att["feedback"] if att else []
        candidates = [fb.get("candidate") for fb in feedback]
        answer = interrupt(
            {
                "type": "human_review",
                "step": item.step,
                "item_id": item.id,
                "candidates": candidates,
                "reasons": [fb.get("reason") for fb in feedback],
                "faults": att["faults"] if att else [],
                "schema": spec.output_model.model_json_schema() if spec.output_model else None,
                "error": state.get("review_error"),
                "how_to_answer": (
                    '{"action": "approve"} (last candidate), {"action": "edit", "value": ...}, or {"action": "reject"}'
                    if any(c is not None for c in candidates)
                    else '{"action": "edit", "value": ...} or {"action": "reject"} (no tier produced a candidate to approve)'
                ),
            }
        )
        action, value = _coerce_review(answer)
        if action == "reject":
            failure: Failure = {
                "step": item.step, "item_id": item.id, "reason": "rejected by a human reviewer", "candidates": feedback,
            }
            rejected: Event = {"type": "human_reject", "step": item.step, "item_id": item.id}
            return Command(goto=RESPONDER, update={"status": "failed", "failure": failure, "events": [rejected]})
        if action == "approve" and value is None:
            value = next((c for c in reversed(candidates) if c is not None), None)
            if value is None:
                # Nothing to approve (every tier faulted or gave unreadable output): asking
                # again with the same options would loop for ever.
                why = "no tier produced a usable candidate to approve; answer with edit (give the value) or reject"
                return Command(goto=HUMAN_REVIEW, update={"review_error": why})
        try:
            if spec.output_model is not None:
                value = as_jsonable(spec.output_model.model_validate(value))
            elif spec.kind == StepKind.TOOL:
                if not isinstance(value, Mapping) or "name" not in value:
                    raise ValueError('a tool step takes {"name": ..., "args": {...}} (or {"name": null} where the step may make no call)')
                value = {"name": value["name"], "args": value.get("args"), **({"reply": value["reply"]} if "reply" in value else {})}
                problem = tool_reason(spec, item, value, services, state)
                if problem:
                    raise ValueError(problem)
        except (ValidationError, ValueError) as err:
            return Command(goto=HUMAN_REVIEW, update={"review_error": f"the reviewed value is invalid: {err}"})
        event: Event = {"type": "human_decision", "step": item.step, "item_id": item.id, "action": action}
        if spec.executes_tools and value.get("name") is not None:
            reviewed = {**(state.get("proposal") or {}), "value": value, "tier": "human"}
            return Command(goto=ACT, update={"proposal": reviewed, "review_error": None, "events": [event]})
        result = tool_result(value, "proposed") if spec.kind == StepKind.TOOL else value
        return commit_and_advance(state, runtime, item, result, "human", [event], review_error=None)

    return human_review
