"""order_agent end to end on the real embedded models (SmolLM2-135M as slm, Qwen2.5-Coder-1.5B as frontier)
against a real pending order of tau2's retail database. Asserts schema validity and the
agent's invariants, not quality: the models are tiny, so humans (this test) answer the
interrupts: a confirmation gets yes only for the expected cancel, a human review gets a
valid value."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command

from tierflow.agents.spec import PlanItem, StepInput
from tierflow.graphs.order_agent import CustomerReply, build
from tierflow.graphs.order_agent_checks import ORDER_CHECKS
from tierflow.model_tiers import TierRegistry, TierRunContext, load_tier_config
from tierflow.tools.datasets import dataset_file
from tierflow.tools.retail import RETAIL_TOOLS, WRITE_TOOL_NAMES, RetailDB, build_retail_db, call_retail_tool, copy_retail_db

# A tool call or a short reply fits in 128 tokens; a degenerate decode stops sooner.
MAX_OUTPUT_TOKENS = 128


def short_registry() -> TierRegistry:
    """The shipped embedded ladder (tiers.toml), with a lower output-token limit."""
    config = load_tier_config()
    tiers = [t.model_copy(update={"max_output_tokens": min(t.max_output_tokens, MAX_OUTPUT_TOKENS)}) for t in config.tiers]
    assert {t.provider for t in tiers} == {"embedded"}
    return TierRegistry(config.model_copy(update={"tiers": tiers}))


@pytest.fixture(scope="module")
def case() -> dict[str, Any]:
    source = json.loads(dataset_file("tau2_retail", "db.json").read_text(encoding="utf-8"))
    order = next(o for o in source["orders"].values() if o["status"] == "pending")
    return {"order_id": order["order_id"], "user_id": order["user_id"], "email": source["users"][order["user_id"]]["email"]}


def human_value(step: str, case: dict[str, Any]) -> Any:
    """What a human reviewer writes for a step whose model answers all failed."""
    return {
        "identify": {"name": "find_user_id_by_email", "args": {"email": case["email"]}},
        "inspect": {"name": "get_order_details", "args": {"order_id": case["order_id"]}},
        "change": {"name": "cancel_pending_order", "args": {"order_id": case["order_id"], "reason": "no longer needed"}},
        "reply": {"reply": f"Your order {case['order_id']} has been cancelled."},
    }[step]


def checks_fail(db: RetailDB, request: str, earlier: dict[str, Any], action: dict[str, Any]) -> str | None:
    inp = StepInput(request=request, results=earlier, item=PlanItem(id=action["item_id"], step="change"), resources={"retail": db})
    value = {"name": action["tool"], "args": action["args"]}
    return next((f"{c.name}: {r}" for c in ORDER_CHECKS if (r := c(value, inp))), None)


# The models take 1-4 s a call on an idle machine; on the shared two cores far more.
@pytest.mark.timeout(1500)
def test_order_agent_cancel_on_embedded_models_keeps_its_invariants(tmp_path: Path, case: dict[str, Any]) -> None:
    pristine = build_retail_db(dataset_file("tau2_retail", "db.json"), tmp_path / "pristine.sqlite")
    db = RetailDB(copy_retail_db(pristine, tmp_path / "retail.sqlite"))
    before = db.state_hash()
    conn = sqlite3.connect(tmp_path / "ckpt.sqlite", check_same_thread=False)
    graph = build(registry=short_registry(), checkpointer=SqliteSaver(conn), resources={"retail": db})
    config = {"configurable": {"thread_id": "embedded-cancel"}}
    context = TierRunContext(max_retries=0)  # one try per tier keeps the run short
    request = f"Hi, my email is {case['email']}. Please cancel my order {case['order_id']}, I no longer need it."

    expected = {"name": "cancel_pending_order", "args": {"order_id": case["order_id"], "reason": "no longer needed"}}
    confirmations: list[tuple[dict[str, Any], bool]] = []
    reviews: Counter[str] = Counter()
    out = graph.invoke({"request": request}, config, context=context)
    while "__interrupt__" in out:
        question = out["__interrupt__"][0].value
        if question["type"] == "confirm":
            approve = question["action"] == expected  # a yes only for exactly the action asked for
            confirmations.append((question["action"], approve))
            answer: Any = "yes" if approve else "no"
        else:
            assert question["type"] == "human_review", question
            assert question["candidates"] and len(question["reasons"]) == len(question["candidates"])
            reviews[question["step"]] += 1
            assert sum(reviews.values()) <= 8, "human review loops"
            answer = {"action": "edit", "value": human_value(question["step"], case)}
        out = graph.invoke(Command(resume=answer), config, context=context)
    conn.close()

    assert out["status"] == "done", out.get("failure")
    final = out["final"]
    CustomerReply.model_validate(out["results"][next(k for k in out["results"] if k.endswith(":reply"))])
    assert isinstance(final["reply"], str) and final["reply"] and final["reply_source"] == "reply step"
    assert final["state_hash"] == db.state_hash()
    for action in final["actions"]:
        RETAIL_TOOLS[action["tool"]].args_model.model_validate(action["args"])

    # Every executed write was confirmed with a yes for exactly that action, and passes the
    # verifier's DB checks on the database as it was just before it (replayed on a shadow copy).
    writes = [a for a in final["actions"] if a["write"] and a["status"] == "done"]
    yeses = [action for action, approved in confirmations if approved]
    assert [{"name": w["tool"], "args": w["args"]} for w in writes] == yeses
    shadow = RetailDB(copy_retail_db(pristine, tmp_path / "shadow.sqlite"))
    earlier: dict[str, Any] = {}
    for action in final["actions"]:
        if action["write"] and action["status"] == "done":
            assert checks_fail(shadow, request, earlier, action) is None
            with shadow.connection() as c:
                call_retail_tool(c, action["tool"], action["args"])
        earlier[action["item_id"]] = {k: action[k] for k in ("tool", "args", "status", "output")}
    assert shadow.state_hash() == db.state_hash()
    if not yeses:
        assert db.state_hash() == before  # nothing written without a yes
    with db.connection() as c:
        status = c.execute("SELECT status FROM orders WHERE order_id = ?", (case["order_id"],)).fetchone()[0]
    assert (status == "cancelled") == bool(yeses)
    assert {w["tool"] for w in writes} <= WRITE_TOOL_NAMES

    # Every model call is in the ledger with a verdict, on a configured tier; every step a
    # tier decided has a passing verdict for it.
    ledger = out["ledger"]
    assert ledger and all(u["verdict"] in ("pass", "fail", "fault") for u in ledger)
    assert all(u["reason"] for u in ledger if u["verdict"] == "fail")
    assert {u["tier"] for u in ledger} <= {"slm", "frontier"}
    assert all(u["input_tokens"] > 0 and u["latency_s"] > 0 for u in ledger if u["verdict"] != "fault")
    for item_id, decider in out["decided_by"].items():
        if decider in ("slm", "frontier"):
            assert any(u["step"] == item_id and u["tier"] == decider and u["verdict"] == "pass" for u in ledger)

    route = [e["to"] for e in out["events"] if e["type"] == "route"]
    escalations = [(e["step"], e["from"], e["to"]) for e in out["events"] if e["type"] == "escalate"]
    print(
        f"\nroute={route} calls={len(ledger)} verdicts={Counter(u['verdict'] for u in ledger)} "
        f"escalations={escalations} reviews={dict(reviews)} confirmations={confirmations} "
        f"decided_by={out['decided_by']} fails={[(u['step'], u['tier'], u['reason']) for u in ledger if u['verdict'] == 'fail']} "
        f"reply={final['reply']!r}"
    )
