"""A small workflow and scripted tiers for the engine's control-flow tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, SystemMessage
from langchain_core.tools import StructuredTool
from pydantic import BaseModel

from tierflow.agents.spec import ToolBox
from tierflow.agents.workers import classifier, default_plan, extractor, tool_caller, writer
from tierflow.graphs.builder import Workflow, build_graph
from tierflow.model_tiers import TierRegistry, ToolRefusal, config_from_mapping
from tierflow.model_tiers.testing import ScriptedChatModel

ROLES = ("plan", "classify", "extract", "tool", "respond", "judge")


class Amount(BaseModel):
    amount: str | None = None
    currency: str | None = None


class Reply(BaseModel):
    text: str


def toy_workflow(*, local_only_extract: bool = False) -> Workflow:
    steps = (
        classifier("classify", labels=["refund", "card_lost"], instructions="[classify] Pick the intent."),
        extractor(
            "extract",
            schema=Amount,
            instructions="[extract] Extract the amount.",
            grounded_fields=("amount", "currency"),
            local_only=local_only_extract,
        ),
        writer("reply", schema=Reply, instructions="[reply] Write the reply."),
    )
    return Workflow(
        name="toy",
        description="classify, extract, reply",
        steps=steps,
        default_plan=default_plan("classify", "extract", "reply"),
        finalize=lambda state, _resources: {"results": state.get("results", {})},
    )


def by_step(script: dict[str, list[Any]]):
    """Reply function: each step (named in its system prompt) pops its own list of replies."""
    queues = {k: list(v) for k, v in script.items()}

    def reply(messages: Sequence[BaseMessage], tools: Sequence[dict]) -> Any:
        system = next(m.content for m in messages if isinstance(m, SystemMessage))
        for step, queue in queues.items():
            if f"[{step}]" in system:
                if not queue:
                    raise AssertionError(f"no scripted reply left for step {step}")
                return queue.pop(0)
        raise AssertionError(f"no script for system prompt {system[:60]!r}")

    return reply


def registry(
    slm: Any, frontier: Any, *, script: Any = None, slm_capabilities: dict[str, Any] | None = None, **config: Any
) -> tuple[TierRegistry, ScriptedChatModel, ScriptedChatModel]:
    """slm and frontier scripted tiers (`plan` starts on the frontier, every other role on the
    slm); `script` turns each tier's script into a reply function (default: `by_step`);
    `slm_capabilities` is what the slm tier declares it can do (default: everything)."""
    script = script or by_step
    data = {
        "tiers": [
            {"name": "slm", "provider": "scripted", "model": "s", "options": {"replies": ["unused"]},
             "price_input_per_mtok": 0.1, "price_output_per_mtok": 0.1, "capabilities": slm_capabilities or {}},
            {"name": "frontier", "provider": "scripted", "model": "f", "options": {"replies": ["unused"]},
             "local": False, "price_input_per_mtok": 10.0, "price_output_per_mtok": 30.0},
        ],
        "roles": {r: ("frontier" if r == "plan" else "slm") for r in ROLES},
        **config,
    }
    reg = TierRegistry(config_from_mapping(data), env={})
    slm_model = ScriptedChatModel(replies=script(slm))
    top_model = ScriptedChatModel(replies=script(frontier))
    reg.set_model("slm", slm_model)
    reg.set_model("frontier", top_model)
    return reg, slm_model, top_model


def compile_toy(reg: TierRegistry, checkpointer: Any = None, **kw: Any) -> Any:
    return build_graph(toy_workflow(**kw), registry=reg, resources={}, checkpointer=checkpointer)


# --- a tool workflow: one tool step over a tiny order book --------------------------------


class OrderBook:
    """In-memory orders with an idempotent cancel; records every applied write."""

    def __init__(self) -> None:
        self.status = {"#W1": "pending", "#W2": "delivered"}
        self.applied: dict[str, Any] = {}

    def lookup(self, order_id: str) -> dict[str, Any]:
        if order_id not in self.status:
            raise ToolRefusal(f"order {order_id} not found")
        return {"order_id": order_id, "status": self.status[order_id]}

    def cancel(self, order_id: str, key: str) -> dict[str, Any]:
        if key in self.applied:
            return self.applied[key]
        if self.status.get(order_id) != "pending":
            raise ToolRefusal(f"order {order_id} is {self.status.get(order_id)}; only pending orders can be cancelled")
        self.status[order_id] = "cancelled"
        self.applied[key] = {"order_id": order_id, "status": "cancelled"}
        return self.applied[key]


def order_toolbox(book: OrderBook) -> ToolBox:
    def lookup(order_id: str) -> dict[str, Any]:
        """Look an order up."""
        return book.lookup(order_id)

    def cancel(order_id: str) -> dict[str, Any]:
        """Cancel a pending order."""
        raise AssertionError("executed through ToolBox.execute only")

    tools = {t.name: t for t in (StructuredTool.from_function(lookup), StructuredTool.from_function(cancel))}

    def execute(name: str, args: dict[str, Any], key: str) -> Any:
        return book.cancel(args["order_id"], key) if name == "cancel" else book.lookup(**args)

    return ToolBox(
        tools=tools,
        execute=execute,
        confirm={"cancel": lambda args: f"Cancel order {args['order_id']}?"},
        writes=frozenset({"cancel"}),
    )


def tool_workflow(book: OrderBook) -> Workflow:
    step = tool_caller("handle", tools=["lookup", "cancel"], instructions="[handle] Act on the order.")
    return Workflow(
        name="toy_tools",
        description="one tool step",
        steps=(step,),
        default_plan=default_plan("handle"),
        toolbox=lambda _resources: order_toolbox(book),
    )
