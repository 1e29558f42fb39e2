"""Tool steps: unknown tools and bad arguments are failed verdicts; consequential writes ask
for confirmation; a tool's refusal climbs the ladder like any failed check."""

from __future__ import annotations

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from tests.unit.engine_fixtures import OrderBook, registry, tool_workflow
from tierflow.graphs.builder import build_graph
from tierflow.model_tiers.testing import tool_call

CONFIG = {"configurable": {"thread_id": "tools"}}


def compile_tools(book, reg):
    return build_graph(tool_workflow(book), registry=reg, resources={}, checkpointer=InMemorySaver())


def test_unknown_tool_from_the_model_is_a_failed_verdict_then_retried():
    book = OrderBook()
    reg, _slm, _ = registry({"handle": [tool_call("drop_table", {"order_id": "#W1"}), tool_call("lookup", {"order_id": "#W1"})]}, {})
    out = compile_tools(book, reg).invoke({"request": "where is #W1"}, CONFIG)
    assert out["status"] == "done"
    assert out["ledger"][0]["verdict"] == "fail" and "unknown tool 'drop_table'" in out["ledger"][0]["reason"]
    assert out["results"]["0:handle"]["output"] == {"order_id": "#W1", "status": "pending"}


def test_arguments_are_validated_against_the_tool_schema():
    book = OrderBook()
    reg, _, _ = registry({"handle": [tool_call("lookup", {"id": 3}), tool_call("lookup", {"order_id": "#W1"})]}, {})
    out = compile_tools(book, reg).invoke({"request": "where is #W1"}, CONFIG)
    # An argument the tool does not take is named, with what it does take.
    assert "['id'] are not arguments of 'lookup'; it takes: order_id" in out["ledger"][0]["reason"]
    assert out["status"] == "done"


def test_confirmation_answered_no_writes_nothing():
    book = OrderBook()
    reg, _, _ = registry({"handle": [tool_call("cancel", {"order_id": "#W1"})]}, {})
    graph = compile_tools(book, reg)
    out = graph.invoke({"request": "cancel #W1"}, CONFIG)
    question = out["__interrupt__"][0].value
    assert question["type"] == "confirm" and question["action"] == {"name": "cancel", "args": {"order_id": "#W1"}}
    final = graph.invoke(Command(resume="no"), CONFIG)
    assert book.status["#W1"] == "pending" and book.applied == {}
    assert final["results"]["0:handle"]["status"] == "declined"


def test_confirmation_answered_yes_writes_once():
    book = OrderBook()
    reg, _, _ = registry({"handle": [tool_call("cancel", {"order_id": "#W1"})]}, {})
    graph = compile_tools(book, reg)
    graph.invoke({"request": "cancel #W1"}, CONFIG)
    final = graph.invoke(Command(resume={"approve": True}), CONFIG)
    assert final["status"] == "done" and book.status["#W1"] == "cancelled"
    assert len(book.applied) == 1


def test_tool_refusal_is_fed_back_and_escalated():
    book = OrderBook()
    reg, _, top = registry(
        {"handle": [tool_call("cancel", {"order_id": "#W2"}), tool_call("cancel", {"order_id": "#W2"})]},
        {"handle": [tool_call("lookup", {"order_id": "#W2"})]},
    )
    graph = compile_tools(book, reg)
    out = graph.invoke({"request": "cancel my order #W2"}, CONFIG)
    for _ in range(2):  # each cancel proposal asks for confirmation first
        assert out["__interrupt__"][0].value["type"] == "confirm"
        out = graph.invoke(Command(resume="yes"), CONFIG)
    assert out["status"] == "done"
    assert book.status["#W2"] == "delivered"
    refusals = [e for e in out["events"] if e["type"] in ("retry", "escalate")]
    assert [e["type"] for e in refusals] == ["retry", "escalate"]
    assert "only pending orders" in refusals[0]["reason"]
    assert len(top.calls) == 1 and "refused" in top.calls[0]["messages"][-1].content
