"""A hand-written LangGraph graph with tierflow steps as two of its nodes.

    python -m tierflow.graphs.examples.tiered_node "I was charged twice for my coffee yesterday"

`classify` and `extract` are tiered, verified steps (slm first, checks, retry, escalation,
human review at the top); `route` and `answer` are plain Python nodes of the user's graph.
Each tiered node appends its ledger rows and events to the graph's own `ledger` and
`events`, so the cost of the whole graph is in its state.
"""

from __future__ import annotations

import json
import operator
import sys
from typing import Annotated, Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from tierflow import TierRegistry, classifier, extractor, tiered_step

__all__ = ["SupportState", "build", "main"]

LABELS = ["card_payment_issue", "transfer_question", "other"]


class Charge(BaseModel):
    amount: str | None = Field(default=None, description="the amount, as written in the message")
    merchant: str | None = Field(default=None, description="who charged it, as written in the message")


class SupportState(TypedDict, total=False):
    message: str
    intent: dict[str, Any] | None
    charge: dict[str, Any] | None
    answer: str
    failure: dict[str, Any] | None
    ledger: Annotated[list[dict[str, Any]], operator.add]
    events: Annotated[list[dict[str, Any]], operator.add]


def _route(state: SupportState) -> str:
    intent = (state.get("intent") or {}).get("label")
    return "extract" if intent == "card_payment_issue" else "answer"


def _answer(state: SupportState) -> dict[str, Any]:
    intent = (state.get("intent") or {}).get("label", "unknown")
    charge = state.get("charge") or {}
    details = ", ".join(f"{k}={v}" for k, v in charge.items() if v)
    return {"answer": f"filed under {intent}" + (f" ({details})" if details else "")}


def build(*, registry: TierRegistry | None = None, tiers_file: str | None = None, checkpointer: Any = None) -> Any:
    classify = classifier("classify", labels=LABELS, instructions="Pick the intent of the customer's message.")
    extract = extractor(
        "extract", schema=Charge, instructions="Copy the charge's amount and merchant from the message.",
        grounded_fields=("amount", "merchant"),
    )
    graph = StateGraph(SupportState)
    graph.add_node("classify", tiered_step(classify, read="message", write="intent", registry=registry, tiers_file=tiers_file))
    graph.add_node("extract", tiered_step(extract, read="message", write="charge", registry=registry, tiers_file=tiers_file))
    graph.add_node("answer", _answer)
    graph.add_edge(START, "classify")
    graph.add_conditional_edges("classify", _route, ["extract", "answer"])
    graph.add_edge("extract", "answer")
    graph.add_edge("answer", END)
    return graph.compile(checkpointer=checkpointer)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    message = " ".join(args) or "I was charged twice for my coffee at Cafe Lumen, 4.50 EUR"
    graph = build(checkpointer=InMemorySaver())
    out = graph.invoke({"message": message}, {"configurable": {"thread_id": "example"}})
    if "__interrupt__" in out:
        print("a step failed on every tier and waits for a human:", out["__interrupt__"][0].value.get("step"))
        return 3
    ledger = out["ledger"]  # every model call of both tiered nodes
    print(json.dumps({"answer": out["answer"], "intent": out.get("intent"), "charge": out.get("charge"),
                      "calls": len(ledger), "cost_usd": round(sum(u["cost_usd"] for u in ledger), 8)}, indent=2))
    return 0


if __name__ == "__main__":
    from tierflow.cli.guard import guard

    sys.exit(guard("python -m tierflow.graphs.examples.tiered_node", main))
