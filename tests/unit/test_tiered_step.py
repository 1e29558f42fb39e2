"""A tierflow step inside a hand-written StateGraph: verified, escalated, human-reviewed,
with its ledger and events in the parent graph's state."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from tests.unit.engine_fixtures import registry
from tierflow.graphs.examples.tiered_node import build
from tierflow.model_tiers import ConfigError


def _by_system(script: dict[str, list[Any]]):
    queues = {k: list(v) for k, v in script.items()}

    def reply(messages, tools):
        system = str(messages[0].content)
        for key, queue in queues.items():
            if key in system:
                return queue.pop(0)
        raise AssertionError(f"no script for {system[:60]!r}")

    return reply


MESSAGE = "I was charged twice at Cafe Lumen, 4.50 EUR"
INTENT = {"label": "card_payment_issue", "confidence": 0.9}
CHARGE = {"amount": "4.50", "merchant": "Cafe Lumen"}


def test_tiered_nodes_run_in_a_plain_state_graph_and_add_their_ledger() -> None:
    reg, _slm, top = registry({"Pick the intent": [INTENT], "Copy the charge": [CHARGE]}, {}, script=_by_system)
    out = build(registry=reg).invoke({"message": MESSAGE})
    assert out["intent"] == INTENT and out["charge"] == CHARGE
    assert out["answer"].startswith("filed under card_payment_issue")
    assert [(u["node"], u["tier"], u["verdict"]) for u in out["ledger"]] == [("classify", "slm", "pass"), ("extract", "slm", "pass")]
    assert [e["type"] for e in out["events"]].count("verdict") == 2
    assert top.calls == []


def test_a_failed_check_escalates_inside_the_node() -> None:
    wrong = {"amount": "9.99", "merchant": "Cafe Lumen"}  # not in the message: the grounding check fails
    reg, _, _top = registry(
        {"Pick the intent": [INTENT], "Copy the charge": [wrong, wrong]}, {"Copy the charge": [CHARGE]}, script=_by_system
    )
    out = build(registry=reg).invoke({"message": MESSAGE})
    assert out["charge"] == CHARGE
    assert [(u["tier"], u["verdict"]) for u in out["ledger"] if u["node"] == "extract"] == [("slm", "fail"), ("slm", "fail"), ("frontier", "pass")]
    assert any(e["type"] == "escalate" for e in out["events"])


def test_human_review_inside_the_node_resumes_through_the_parent_graph() -> None:
    wrong = {"amount": "9.99", "merchant": "Cafe Lumen"}
    reg, _, _ = registry(
        {"Pick the intent": [INTENT], "Copy the charge": [wrong, wrong]}, {"Copy the charge": [wrong, wrong]},
        script=_by_system, escalation={"on_top_failure": "interrupt"},
    )
    graph = build(registry=reg, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "review"}}
    paused = graph.invoke({"message": MESSAGE}, config)
    [interrupt] = paused["__interrupt__"]
    assert interrupt.value["type"] == "human_review" and interrupt.value["step"] == "extract"
    out = graph.invoke(Command(resume={"action": "edit", "value": CHARGE}), config)
    assert out["charge"] == CHARGE and "4.50" in out["answer"]
    # The parent's ledger holds the classify row once, and every extract attempt.
    assert [u["node"] for u in out["ledger"]].count("classify") == 1


def test_bad_wiring_is_a_clear_error() -> None:
    reg, _, _ = registry({}, {}, script=_by_system)
    with pytest.raises(ConfigError, match="state key 'message' must hold the input text"):
        build(registry=reg).invoke({"message": None})
