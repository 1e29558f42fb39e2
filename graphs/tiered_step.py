"""One tiered, verified step as a node of any LangGraph graph.

    from tierflow.graphs.tiered_step import tiered_step

    builder = StateGraph(MyState)
    builder.add_node("classify", tiered_step(classifier("classify", labels=[...], instructions="..."),
                                             read="message", write="intent"))

The node runs the step the way a tierflow graph does: the ladder of tiers from the tiers
file (or the registry given), the step's checks, retries with feedback, escalation, and
human review at the top (an interrupt, resumed with `Command(resume=...)` on the parent
graph, which needs a checkpointer for that). It is a tierflow graph of one step, compiled
once and called as a subgraph from the node; its state never mixes with the parent's.

What the node writes to the parent's state:
* `write`: the step's verified value (None when the step failed on every tier);
* `ledger` and `events` (names configurable): the step's ledger rows and events, to be
  appended. Declare them with a list reducer (`Annotated[list[dict], operator.add]`) so
  several tiered nodes add up, as `TieredState` does;
* `failure` (configurable, or None to leave out): why the step failed, or None.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from tierflow.agents.spec import PlanItem, StepSpec
from tierflow.graphs.builder import Workflow, build_graph
from tierflow.model_tiers import ConfigError, TierRegistry, TierRunContext

__all__ = ["tiered_step", "TieredNode"]


class TieredNode(Protocol):
    """A node for any parent graph: it reads the parent's state (whatever its schema) and
    returns the update. A protocol rather than a Callable so that `StateGraph.add_node`
    sees a parameter named `state`, as LangGraph's node protocols declare it."""

    def __call__(self, state: Any) -> dict[str, Any]: ...


def tiered_step(
    step: StepSpec,
    *,
    read: str | Callable[[Mapping[str, Any]], str] = "request",
    write: str | None = None,
    ledger: str = "ledger",
    events: str = "events",
    failure: str | None = "failure",
    registry: TierRegistry | None = None,
    tiers_file: str | None = None,
    resources: Mapping[str, Any] | None = None,
    context: TierRunContext | None = None,
) -> TieredNode:
    """A node function running `step` on the tier ladder (see the module's docstring).

    `read` names the parent's state key holding the step's input text (or is a function of
    the parent state that returns it); `write` names the key for the verified value
    (default: the step's name). `context` sets per-run overrides (policy, budgets) for
    every run of this node.
    """
    if step.executes_tools:
        raise ConfigError(
            f"step '{step.name}' executes tools; a tiered node runs model steps (classify, extract, respond, "
            "client tool calls) - declare a tool-executing step in a tierflow Workflow instead"
        )
    workflow = Workflow(
        name=f"tiered_{step.name}",
        description=f"the tiered step '{step.name}' as one node",
        steps=(step,),
        default_plan=(PlanItem(id=f"0:{step.name}", step=step.name),),
        finalize=lambda state, _resources: {"value": (state.get("results") or {}).get(f"0:{step.name}")},
    )
    # No checkpointer of its own: called from a node, the subgraph keeps its checkpoints in
    # the parent's (so an interrupt inside it resumes through the parent's Command).
    subgraph = build_graph(workflow, registry=registry, tiers_file=tiers_file, resources=resources if resources is not None else {})
    target = write or step.name

    def node(state: Mapping[str, Any]) -> dict[str, Any]:
        text = read(state) if callable(read) else state.get(read)
        if not isinstance(text, str):
            raise ConfigError(f"tiered step '{step.name}': state key '{read}' must hold the input text, got {type(text).__name__}")
        payload: dict[str, Any] = {"request": text}
        if step.client_tools:
            payload["functions"] = list(state.get("functions") or [])
        out = subgraph.invoke(payload, context=context)
        update: dict[str, Any] = {
            target: out.get("final", {}).get("value"),
            ledger: list(out.get("ledger") or []),
            events: list(out.get("events") or []),
        }
        if failure is not None:
            update[failure] = out.get("failure")
        return update

    node.__name__ = f"tiered_{step.name}"
    return node
