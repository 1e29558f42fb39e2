"""What a node needs at run time, and small helpers every node uses to read graph state."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langgraph.runtime import Runtime
from langgraph.types import Command
from pydantic import BaseModel

from tierflow.agents.spec import PlanItem, StepInput, StepKind, StepNeeds, StepSpec, ToolBox
from tierflow.model_tiers import TierRegistry, TierRunContext, estimate_tokens, redact_value

if TYPE_CHECKING:
    # The graph's state schema; graphs.state imports this module, so only the checker does.
    from tierflow.graphs.state import TieredState

__all__ = [
    "RESET",
    "NodeRuntime",
    "Services",
    "ServiceResolver",
    "LoopNode",
    "current_item",
    "step_input",
    "step_needs",
    "as_jsonable",
    "emit",
]


# A results update carrying this key replaces the whole map (a new run on an old thread).
RESET = "__reset__"


@dataclass(frozen=True)
class Services:
    """The run's registry (config after run-context overrides), tools and resources."""

    registry: TierRegistry
    resources: Mapping[str, Any]
    toolbox: ToolBox | None = None


# What LangGraph hands every node of a tiered graph (its context_schema is TierRunContext;
# read the context with `coerce_context`, which also takes the mapping Studio or the SDK send).
NodeRuntime = Runtime[TierRunContext]

# Given the LangGraph runtime of a node, the services for this run.
ServiceResolver = Callable[[NodeRuntime], Services]

# A node of the loop: the graph's state and runtime in, a Command (update and where next) out.
LoopNode = Callable[["TieredState", NodeRuntime], Command[str]]


def current_item(state: Mapping[str, Any]) -> PlanItem:
    plan = state.get("plan") or []
    cursor = int(state.get("cursor", 0))
    if cursor >= len(plan):
        raise IndexError(f"cursor {cursor} is past the end of a {len(plan)}-item plan")
    return PlanItem.model_validate(plan[cursor])


def step_input(state: Mapping[str, Any], item: PlanItem, services: Services) -> StepInput:
    return StepInput(
        request=state.get("request", ""),
        results=dict(state.get("results") or {}),
        item=item,
        resources=services.resources,
        run_id=state.get("run_id", ""),
        decided_by=dict(state.get("decided_by") or {}),
        functions=tuple(state.get("functions") or ()),
    )


def step_needs(spec: StepSpec, prompt_text: str) -> StepNeeds:
    return StepNeeds(
        tools=spec.kind == StepKind.TOOL,
        structured=spec.output_model is not None,
        prompt_tokens=estimate_tokens(prompt_text),
        local_only=spec.local_only,
    )


def as_jsonable(value: Any) -> Any:
    """Checkpoint-friendly form of a step value (pydantic models become dicts)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return json.loads(json.dumps(value, default=str))


def emit(runtime: NodeRuntime, event: Mapping[str, Any]) -> None:
    """Send an event on the `custom` stream (a no-op outside a streaming run)."""
    writer = getattr(runtime, "stream_writer", None)
    if writer is not None:
        writer(redact_value(dict(event)))
