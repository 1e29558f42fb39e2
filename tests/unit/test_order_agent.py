"""order_agent on scripted tiers and real SQLite copies of tau2's retail database: the
default plan and the planner, every verifier check (pass and fail), the confirmation
interrupt, escalation on a bad tool call, and exactly-once writes across a SIGKILL."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from tests.kill import kill_at_marker
from tests.unit.order_agent_scripts import (
    cancel,
    cancel_request,
    get_order,
    identify,
    kill_worker_graph,
    order_registry,
    plan,
    reply,
    step_of,
)
from tests.unit.retail_fixtures import Source, orders, paid_by, pick, swap_case, variants
from tierflow.agents.spec import PlanItem, StepInput
from tierflow.graphs import order_agent_checks as checks
from tierflow.graphs.order_agent import (
    MAX_CONTEXT_CHARS,
    TRANSFER_SENTENCE,
    WORKFLOW,
    build,
    needs_plan,
    retail_toolbox,
    tool_prompt,
)
from tierflow.model_tiers import ConfigError
from tierflow.model_tiers.testing import tool_call
from tierflow.tools.retail import RETAIL_TOOLS, WRITE_TOOL_NAMES, RetailDB, call_retail_tool, copy_retail_db


def config(thread: str = "t") -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


def compile_agent(db: RetailDB, reg: Any) -> Any:
    return build(registry=reg, resources={"retail": db}, checkpointer=InMemorySaver())


def email_of(source: Source, order: dict[str, Any]) -> str:
    return source["users"][order["user_id"]]["email"]


def a_pending_order(source: Source) -> tuple[dict[str, Any], str, str]:
    """A pending order, its id and its customer's email."""
    order = pick(orders(source, "pending"), "pending order")
    return order, order["order_id"], email_of(source, order)


def cancel_script(email: str, order_id: str, reply_text: str) -> dict[str, list[Any]]:
    """The slm's replies on the default plan when the customer cancels `order_id`."""
    return {"identify": [identify(email)], "inspect": [get_order(order_id)], "change": [cancel(order_id)], "reply": [reply(reply_text)]}


def order_status(db: RetailDB, order_id: str) -> dict[str, Any]:
    with db.connection() as conn:
        order: dict[str, Any] = call_retail_tool(conn, "get_order_details", {"order_id": order_id})
        return order


def prompt_of(model: Any, step: str, index: int = 0) -> str:
    calls = [c for c in model.calls if step_of(c["messages"]) == step]
    return str(calls[index]["messages"][1].content)


def other_product_item(source: Source, product_id: str) -> dict[str, Any]:
    return pick((v for p in source["products"].values() if p["product_id"] != product_id
                 for v in p["variants"].values() if v["available"]), "item of another product")


# --- whole-graph paths --------------------------------------------------------------------------


def test_simple_cancel_follows_the_default_plan_and_writes_after_a_yes(db: RetailDB, source: Source) -> None:
    order, oid, email = a_pending_order(source)
    reg, slm, top = order_registry(cancel_script(email, oid, f"Your order {oid} is cancelled."), {})
    graph, before = compile_agent(db, reg), db.state_hash()

    out = graph.invoke({"request": cancel_request(email, oid)}, config())
    question = out["__interrupt__"][0].value
    assert question["type"] == "confirm"
    assert question["action"] == {"name": "cancel_pending_order", "args": {"order_id": oid, "reason": "no longer needed"}}
    assert oid in question["question"] and question["question"].endswith("(yes/no)")
    assert db.state_hash() == before  # nothing is written before the yes

    out = graph.invoke(Command(resume="yes"), config())
    assert out["status"] == "done"
    assert [e["to"] for e in out["events"] if e["type"] == "route"] == ["default_plan"]
    assert order_status(db, oid)["status"] == "cancelled"
    final = out["final"]
    assert final["reply"] == f"Your order {oid} is cancelled." and final["user_id"] == order["user_id"]
    assert [(a["tool"], a["status"], a["write"]) for a in final["actions"]] == [
        ("find_user_id_by_email", "done", False), ("get_order_details", "done", False), ("cancel_pending_order", "done", True)]
    assert final["actions"][2]["output"]["status"] == "cancelled"
    assert final["state_hash"] == db.state_hash() != before
    assert {(u["tier"], u["verdict"]) for u in out["ledger"]} == {("slm", "pass")} and not top.calls
    # The change step was shown the identified user and the order it acts on.
    change_prompt = prompt_of(slm, "change")
    assert f"user_id {order['user_id']}" in change_prompt and f'"order_id":"{oid}"' in change_prompt
    assert "cancel_pending_order" in change_prompt and "Make the change the customer asks for" in change_prompt


def test_an_order_id_written_without_its_hash_is_checked_and_run_as_the_tool_reads_it(db: RetailDB, source: Source) -> None:
    """The models drop the '#' of '#W0000000': the tool's schema reads the id with it, and
    the verifier's checks, the confirmation and the write all see that reading."""
    _, oid, email = a_pending_order(source)
    bare = oid.lstrip("#")
    reg, _, top = order_registry(
        {"identify": [identify(email)], "inspect": [get_order(bare)], "change": [cancel(bare)],
         "reply": [reply(f"Your order {oid} is cancelled.")]}, {})
    graph = compile_agent(db, reg)
    out = graph.invoke({"request": cancel_request(email, oid)}, config())
    assert out["__interrupt__"][0].value["action"] == {"name": "cancel_pending_order", "args": {"order_id": oid, "reason": "no longer needed"}}
    out = graph.invoke(Command(resume="yes"), config())
    assert out["status"] == "done" and not top.calls
    assert {(u["tier"], u["verdict"]) for u in out["ledger"]} == {("slm", "pass")}
    assert [a["args"]["order_id"] for a in out["final"]["actions"][1:]] == [oid, oid]
    assert order_status(db, oid)["status"] == "cancelled"


def test_wrong_product_in_an_exchange_is_caught_and_escalated_to_the_frontier(db: RetailDB, source: Source) -> None:
    order, item, variant = swap_case(source, "delivered")
    oid, email, pm = order["order_id"], email_of(source, order), paid_by(order)
    wrong = other_product_item(source, item["product_id"])

    def exchange(new_id: str) -> Any:
        return tool_call("exchange_delivered_order_items",
                         {"order_id": oid, "item_ids": [item["item_id"]], "new_item_ids": [new_id], "payment_method_id": pm})

    request = f"Hello, I'm {email}. In order {oid} please exchange item {item['item_id']} for item {variant['item_id']}."
    assert not needs_plan(request)
    reg, _slm, top = order_registry(
        {"identify": [identify(email)], "inspect": [get_order(oid)],
         "change": [exchange(wrong["item_id"]), exchange(wrong["item_id"])], "reply": [reply("Your exchange is requested.")]},
        {"change": [exchange(variant["item_id"])]})
    graph = compile_agent(db, reg)
    out = graph.invoke({"request": request}, config())
    assert out["__interrupt__"][0].value["action"]["args"]["new_item_ids"] == [variant["item_id"]]
    out = graph.invoke(Command(resume={"approve": True}), config())

    assert out["status"] == "done"
    change = [(u["tier"], u["verdict"]) for u in out["ledger"] if u["step"] == "2:change"]
    assert change == [("slm", "fail"), ("slm", "fail"), ("frontier", "pass")]
    reasons = [u["reason"] for u in out["ledger"] if u["verdict"] == "fail"]
    assert all(r.startswith("new items: same product, other variant, available:") and "cannot change" in r for r in reasons)
    assert [e["type"] for e in out["events"] if e["type"] in ("retry", "escalate")] == ["retry", "escalate"]
    assert "product type cannot change" in str(top.calls[0]["messages"][-1].content)  # the reason is fed back
    assert out["decided_by"]["2:change"] == "frontier"
    exchanged = order_status(db, oid)
    assert exchanged["status"] == "exchange requested" and exchanged["exchange_new_items"] == [variant["item_id"]]


def test_confirmation_answered_no_leaves_the_database_unchanged(db: RetailDB, source: Source) -> None:
    _, oid, email = a_pending_order(source)
    reg, slm, _ = order_registry(cancel_script(email, oid, f"All right, order {oid} stays as it is."), {})
    graph, before = compile_agent(db, reg), db.state_hash()
    graph.invoke({"request": cancel_request(email, oid)}, config())
    out = graph.invoke(Command(resume="no"), config())
    assert out["status"] == "done" and db.state_hash() == before == out["final"]["state_hash"]
    assert out["final"]["actions"][-1]["status"] == "declined" and out["decided_by"]["2:change"] == "human"
    assert "the customer said no, nothing was changed" in prompt_of(slm, "reply")


def test_sigkill_right_after_the_write_then_resume_applies_it_once(built_db: Any, tmp_path: Any, source: Source) -> None:
    order, oid, email = a_pending_order(source)
    retail = copy_retail_db(built_db, tmp_path / "retail.sqlite")
    ckpt, block = tmp_path / "ckpt.sqlite", tmp_path / "blocked"
    argv = [sys.executable, "-m", "tests.unit.order_agent_scripts", str(retail), str(ckpt), "k1", str(block), email, oid]
    kill_at_marker(argv, block, timeout_s=120)
    db = RetailDB(retail)
    assert order_status(db, oid)["status"] == "cancelled"  # the write committed before the kill

    graph, conn = kill_worker_graph(retail, ckpt, block, email, oid)
    try:
        assert graph.get_state(config("k1")).next == ("act",)  # the act node must run again
        out = graph.invoke(None, config("k1"))  # the customer's yes is kept: not asked twice
    finally:
        conn.close()
    assert out["status"] == "done"
    cancelled = order_status(db, oid)
    assert [e["transaction_type"] for e in cancelled["payment_history"]].count("refund") == len(
        [e for e in order["payment_history"] if e["transaction_type"] == "payment"])
    with db.connection() as c:
        keys = [r[0] for r in c.execute("SELECT idempotency_key FROM applied_writes")]
    assert len(keys) == 1 and keys[0].endswith(":2:change")
    assert out["final"]["actions"][-1]["output"]["status"] == "cancelled"


def test_planner_path_runs_a_plan_of_several_tool_steps(db: RetailDB, source: Source) -> None:
    user = pick((u for u in source["users"].values() if len(u["orders"]) >= 2
                 and source["orders"][u["orders"][0]]["status"] == "pending"), "user with a pending first order")
    first, second = user["orders"][0], user["orders"][1]
    request = f"My email is {user['email']}. Cancel order {first}, I ordered it by mistake. What is the status of {second}?"
    assert needs_plan(request)
    reg, slm, _top = order_registry(
        {"identify": [identify(user["email"])], "inspect": [get_order(first), get_order(second)],
         "change": [cancel(first, "ordered by mistake")], "reply": [reply(f"{first} is cancelled; {second} is on its way.")]},
        {"plan": [plan(("identify", "find_user_id_by_email", "Authenticate the customer."),
                       ("inspect", "get_order_details", f"Get order {first}."),
                       ("change", "cancel_pending_order", f"Cancel order {first}."),
                       ("inspect", "get_order_details", f"Get order {second}."),
                       ("reply", None, "Answer the customer."))]})
    graph = compile_agent(db, reg)
    out = graph.invoke({"request": request}, config())
    out = graph.invoke(Command(resume="yes"), config())
    assert out["status"] == "done" and out["final"]["plan_source"] == "planner"
    assert [e["to"] for e in out["events"] if e["type"] == "route"] == ["planner"]
    assert list(out["results"]) == ["1:identify", "2:inspect", "3:change", "4:inspect", "5:reply"]
    assert out["decided_by"] == {k: "slm" for k in out["results"]} | {"3:change": "slm"}
    assert order_status(db, first)["cancel_reason"] == "ordered by mistake"
    later = prompt_of(slm, "inspect", 1)
    assert f"Task for this step: Get order {second}." in later and "Call the tool get_order_details." in later
    assert '"status":"cancelled"' in later  # the earlier write's result is shown
    assert [u["role"] for u in out["ledger"] if u["tier"] == "frontier"] == ["plan"]


def test_an_invalid_plan_falls_back_to_the_default_plan(db: RetailDB, source: Source) -> None:
    _, oid, email = a_pending_order(source)
    request = f"I am {email}. Cancel {oid} please, I no longer need it, or maybe change its address? Not sure."
    assert needs_plan(request)
    reg, _, _ = order_registry(
        cancel_script(email, oid, "Done."),
        {"plan": [plan(("change", "cancel_pending_order", "Cancel it."), ("reply", None, "")),
                  plan(("identify", "find_user_id_by_email", ""), ("inspect", "cancel_pending_order", ""), ("reply", None, ""))]})
    graph = compile_agent(db, reg)
    graph.invoke({"request": request}, config())
    out = graph.invoke(Command(resume="yes"), config())
    assert out["status"] == "done" and out["final"]["plan_source"] == "default"
    plan_verdicts = [u["reason"] for u in out["ledger"] if u["role"] == "plan"]
    assert "must start with an identify step" in plan_verdicts[0]
    assert "names tool 'cancel_pending_order'; a inspect step may use" in plan_verdicts[1]
    assert [e for e in out["events"] if e["type"] == "default_plan"]
    assert list(out["results"]) == ["1:identify", "2:inspect", "3:change", "4:reply"]
    assert order_status(db, oid)["status"] == "cancelled"


def test_a_handoff_must_be_announced_with_the_transfer_sentence(db: RetailDB, source: Source) -> None:
    user = next(iter(source["users"].values()))
    request = f"This is {user['email']}. I want a discount on my next purchase."
    announced = f"A colleague will help you with the discount. {TRANSFER_SENTENCE}"
    reg, _, _ = order_registry(
        {"identify": [identify(user["email"])],
         "handoff": [tool_call("transfer_to_human_agents", {"summary": "Customer asks for a discount."})],
         "reply": [reply("A colleague will help you."), reply(announced)]},
        {"plan": [plan(("identify", None, "Authenticate."), ("handoff", "transfer_to_human_agents", "Transfer."), ("reply", None, ""))]})
    before = db.state_hash()
    out = compile_agent(db, reg).invoke({"request": request}, config())
    assert out["status"] == "done" and out["final"]["reply"] == announced
    failed = [u["reason"] for u in out["ledger"] if u["verdict"] == "fail"]
    assert len(failed) == 1 and failed[0].startswith("announces the transfer")
    assert out["final"]["state_hash"] == before


def test_the_database_opens_lazily_under_tierflow_home(tmp_path: Any) -> None:
    target = tmp_path / "tierflow-home" / "retail" / "retail.sqlite"  # conftest's TIERFLOW_HOME
    reg, _, _ = order_registry({}, {})
    graph = build(registry=reg)
    assert not target.exists()  # neither import nor build opens anything
    out = graph.invoke({"request": "   "})
    assert out["status"] == "rejected" and out["final"]["reply_source"] == "fallback"
    assert target.is_file() and out["final"]["state_hash"] == RetailDB(target).state_hash()
    with pytest.raises(ConfigError, match="resources\\['retail'\\]"):
        checks.retail_db({})


# --- routing and prompts ------------------------------------------------------------------------


@pytest.mark.parametrize(("request_text", "planned"), [
    ("I'm a@b.com, cancel order #W1234567 please", False),
    ("Ann.Lee@example.com: I want to return order W1234567.", False),
    ("Name Ann Lee, zip 12345: I want to return order W1234567.", True),  # the default plan needs an email
    ("a@b.com here, exchange item 1234567890 in #W1234567 for 2234567890", False),
    ("a@b.com here, exchange an item in #W1234567 for a blue one", True),  # new item id unknown
    ("cancel order #W1234567 please", True),  # no way to authenticate
    ("a@b.com: cancel #W1234567 and #W7654321", True),  # two orders
    ("a@b.com: cancel #W1234567 and return the rest", True),  # two changes
    ("a@b.com: where is my order #W1234567?", True),  # no change
    ("a@b.com: pay order #W1234567 with my gift card", True),  # payment needs the user's methods
])
def test_the_router_is_a_deterministic_function_of_the_request(request_text: str, planned: bool) -> None:
    assert needs_plan(request_text) is planned
    assert WORKFLOW.needs_plan is needs_plan


def test_tool_prompt_shows_request_task_and_bounded_earlier_results(source: Source) -> None:
    order = next(iter(source["orders"].values()))
    user = source["users"][order["user_id"]]
    big = sorted(source["products"].values(), key=lambda p: -len(p["variants"]))[:8]
    results: dict[str, Any] = {
        "0:identify": {"tool": "find_user_id_by_email", "args": {"email": user["email"]}, "status": "done", "output": user["user_id"]},
        "1:inspect": {"tool": "get_user_details", "args": {"user_id": user["user_id"]}, "status": "done", "output": user},
        "2:inspect": {"tool": "get_order_details", "args": {"order_id": order["order_id"]}, "status": "done", "output": order},
    }
    for i, product in enumerate(big, start=3):
        results[f"{i}:inspect"] = {"tool": "get_product_details", "args": {"product_id": product["product_id"]},
                                   "status": "done", "output": product}
    request = f"I am {user['email']}, about {order['order_id']}"
    item = PlanItem(id="20:change", step="change", instruction="Do the thing.")
    text = tool_prompt(StepInput(request=request, results=results, item=item, resources={}))
    assert f"<<<\n{request}\n>>>" in text and "Task for this step: Do the thing." in text
    assert f"Authenticated customer: user_id {user['user_id']}" in text
    assert f"Ids written in the message: order {order['order_id']}, email {user['email']}" in text
    assert "...(truncated)" in text and "older results omitted" in text
    assert f"Product {big[-1]['product_id']}:" in text  # the newest results are kept
    assert len(text) < len(request) + MAX_CONTEXT_CHARS + 600


# --- every verifier check: a passing and a failing case ------------------------------------------


@pytest.fixture
def case(source: Source) -> dict[str, Any]:
    delivered, item, variant = swap_case(source, "delivered")
    pending = pick((o for o in orders(source, "pending") if o["user_id"] != delivered["user_id"]), "pending order")
    return {"delivered": delivered, "item": item, "variant": variant, "pending": pending}


def inp(db: RetailDB, source: Source, user_id: str | None, request: str = "") -> StepInput:
    results = {}
    if user_id is not None:
        email = source["users"][user_id]["email"]
        results["0:identify"] = {"tool": "find_user_id_by_email", "args": {"email": email}, "status": "done", "output": user_id}
    return StepInput(request=request, results=results, item=PlanItem(id="1:change", step="change"), resources={"retail": db})


def run(check: Any, name: str, args: dict[str, Any], step_input: StepInput) -> str | None:
    return check({"name": name, "args": args}, step_input)


def test_check_authenticated_first(db: RetailDB, source: Source, case: dict[str, Any]) -> None:
    args = {"order_id": case["pending"]["order_id"]}
    assert "not authenticated yet" in run(checks.authenticated_first, "get_order_details", args, inp(db, source, None))
    assert run(checks.authenticated_first, "get_order_details", args, inp(db, source, case["pending"]["user_id"])) is None
    assert run(checks.authenticated_first, "get_product_details", {"product_id": "1"}, inp(db, source, None)) is None


def test_check_identity_in_request(db: RetailDB, source: Source) -> None:
    step_input = inp(db, source, None, "I am Ann.Lee@Example.com")
    assert run(checks.identity_in_request, "find_user_id_by_email", {"email": "ann.lee@example.com"}, step_input) is None
    reason = run(checks.identity_in_request, "find_user_id_by_email", {"email": "bob@example.com"}, step_input)
    assert "does not occur in the customer's message" in reason


def test_check_acts_for_identified_user(db: RetailDB, source: Source, case: dict[str, Any]) -> None:
    me, other = case["pending"]["user_id"], case["delivered"]["user_id"]
    assert run(checks.acts_for_identified_user, "get_user_details", {"user_id": me}, inp(db, source, me)) is None
    assert f"use user_id '{me}'" in run(checks.acts_for_identified_user, "get_user_details", {"user_id": other}, inp(db, source, me))


def test_check_user_owns_order(db: RetailDB, source: Source, case: dict[str, Any]) -> None:
    me = case["pending"]["user_id"]
    assert run(checks.user_owns_order, "get_order_details", {"order_id": case["pending"]["order_id"]}, inp(db, source, me)) is None
    reason = run(checks.user_owns_order, "get_order_details", {"order_id": case["delivered"]["order_id"]}, inp(db, source, me))
    assert "is not an order of the authenticated customer" in reason and case["pending"]["order_id"] in reason
    assert "does not exist" in run(checks.user_owns_order, "cancel_pending_order", {"order_id": "#W0", "reason": "no longer needed"},
                                   inp(db, source, me))


def test_check_order_status_allows(db: RetailDB, source: Source, case: dict[str, Any]) -> None:
    pending, delivered = case["pending"], case["delivered"]
    cancel_args = {"order_id": pending["order_id"], "reason": "no longer needed"}
    assert run(checks.order_status_allows, "cancel_pending_order", cancel_args, inp(db, source, pending["user_id"])) is None
    reason = run(checks.order_status_allows, "cancel_pending_order", {**cancel_args, "order_id": delivered["order_id"]},
                 inp(db, source, delivered["user_id"]))
    assert "is 'delivered'; only pending orders can be cancelled" in reason
    ret = {"order_id": delivered["order_id"], "item_ids": [case["item"]["item_id"]], "payment_method_id": paid_by(delivered)}
    assert run(checks.order_status_allows, "return_delivered_order_items", ret, inp(db, source, delivered["user_id"])) is None
    reason = run(checks.order_status_allows, "return_delivered_order_items", {**ret, "order_id": pending["order_id"]},
                 inp(db, source, pending["user_id"]))
    assert "only delivered orders can be returned" in reason


def test_check_items_in_order(db: RetailDB, source: Source, case: dict[str, Any]) -> None:
    order = case["delivered"]
    args = {"order_id": order["order_id"], "item_ids": [case["item"]["item_id"]], "payment_method_id": paid_by(order)}
    step_input = inp(db, source, order["user_id"])
    assert run(checks.items_in_order, "return_delivered_order_items", args, step_input) is None
    stranger = next(i["item_id"] for i in case["pending"]["items"] if i["item_id"] not in {x["item_id"] for x in order["items"]})
    reason = run(checks.items_in_order, "return_delivered_order_items", {**args, "item_ids": [stranger]}, step_input)
    assert f"item id(s) {stranger} are not in order" in reason


def test_check_new_items_valid(db: RetailDB, source: Source, case: dict[str, Any]) -> None:
    def swap(order: dict[str, Any], item: dict[str, Any], new_id: str) -> str | None:
        args = {"order_id": order["order_id"], "item_ids": [item["item_id"]], "new_item_ids": [new_id],
                "payment_method_id": paid_by(order)}
        return run(checks.new_items_valid, "exchange_delivered_order_items", args, inp(db, source, order["user_id"]))

    order, item = case["delivered"], case["item"]
    assert swap(order, item, case["variant"]["item_id"]) is None
    assert "the product type cannot change" in swap(order, item, other_product_item(source, item["product_id"])["item_id"])
    assert "is the same variant" in swap(order, item, item["item_id"])
    assert "does not exist" in swap(order, item, "0000000000")
    order, item, unavailable = pick(((o, i, variants(source, i, available=False)[0]) for o in orders(source, "delivered")
                                     for i in o["items"] if variants(source, i, available=False)), "unavailable variant")
    reason = swap(order, item, unavailable["item_id"])
    assert "is not available" in reason and "available variants of this" in reason


def test_check_payment_method_owned(db: RetailDB, source: Source, case: dict[str, Any]) -> None:
    pending = case["pending"]
    args = {"order_id": pending["order_id"], "payment_method_id": paid_by(pending)}
    assert run(checks.payment_method_owned, "modify_pending_order_payment", args, inp(db, source, pending["user_id"])) is None
    foreign = paid_by(case["delivered"])
    reason = run(checks.payment_method_owned, "modify_pending_order_payment", {**args, "payment_method_id": foreign},
                 inp(db, source, pending["user_id"]))
    assert f"payment method '{foreign}' is not one of" in reason and paid_by(pending) in reason


def test_check_refund_destination(db: RetailDB, source: Source) -> None:
    def methods(o: dict[str, Any], kind: str) -> list[str]:
        found = source["users"][o["user_id"]]["payment_methods"]
        return [m for m, d in found.items() if (d["source"] == "gift_card") == (kind == "gift") and m != paid_by(o)]

    order = pick((o for o in orders(source, "delivered") if methods(o, "gift") and methods(o, "other")),
                 "delivered order whose user has a gift card and another payment method")
    step_input = inp(db, source, order["user_id"])

    def refund_to(method: str) -> str | None:
        args = {"order_id": order["order_id"], "item_ids": [order["items"][0]["item_id"]], "payment_method_id": method}
        return run(checks.refund_destination, "return_delivered_order_items", args, step_input)

    assert refund_to(paid_by(order)) is None
    assert refund_to(methods(order, "gift")[0]) is None
    assert "the refund must go to the original payment method" in refund_to(methods(order, "other")[0])


def test_check_cancel_reason_allowed(db: RetailDB, source: Source) -> None:
    step_input = inp(db, source, None)
    assert run(checks.cancel_reason_allowed, "cancel_pending_order", {"order_id": "#W1", "reason": "ordered by mistake"}, step_input) is None
    reason = run(checks.cancel_reason_allowed, "cancel_pending_order", {"order_id": "#W1", "reason": "found it cheaper"}, step_input)
    assert "'found it cheaper' is not allowed" in reason and "'no longer needed'" in reason


def test_check_matches_request(db: RetailDB, source: Source) -> None:
    args = {"order_id": "#W1", "reason": "no longer needed"}
    assert run(checks.matches_request, "cancel_pending_order", args, inp(db, source, None, "please cancel #W1")) is None
    assert run(checks.matches_request, "cancel_pending_order", args, inp(db, source, None, "I don't need #W1 any more")) is None
    reason = run(checks.matches_request, "cancel_pending_order", args, inp(db, source, None, "I want to return #W1"))
    assert "did not ask for 'cancel_pending_order'" in reason and "return_delivered_order_items" in reason


def test_every_tool_step_runs_every_check() -> None:
    tool_steps = [s for s in WORKFLOW.steps if s.tools]
    assert [s.name for s in tool_steps] == ["identify", "inspect", "change", "handoff"]
    assert all(s.checks == checks.ORDER_CHECKS and s.role == "tool" for s in tool_steps)
    assert set(checks.CHANGE_TOOLS) == WRITE_TOOL_NAMES


def test_every_write_asks_for_confirmation_with_the_exact_action(db: RetailDB, case: dict[str, Any]) -> None:
    toolbox = retail_toolbox({"retail": db})
    assert set(toolbox.confirm) == toolbox.writes == WRITE_TOOL_NAMES
    assert all(toolbox.confirm.get(name) is None for name in RETAIL_TOOLS if name not in WRITE_TOOL_NAMES)
    order, item, variant = case["delivered"], case["item"], case["variant"]
    address = {"address1": "1 Main St", "address2": "", "city": "Austin", "state": "TX", "country": "USA", "zip": "78701"}
    swap = {"order_id": order["order_id"], "item_ids": [item["item_id"]], "new_item_ids": [variant["item_id"]],
            "payment_method_id": paid_by(order)}
    cases = {
        "cancel_pending_order": ({"order_id": "#W1", "reason": "no longer needed"}, ["#W1", "no longer needed"]),
        "modify_pending_order_address": ({"order_id": "#W1", **address}, ["#W1", "1 Main St, Austin, TX, 78701, USA"]),
        "modify_user_address": ({"user_id": "ann_1", **address}, ["ann_1", "1 Main St"]),
        "modify_pending_order_payment": ({"order_id": "#W1", "payment_method_id": "gift_card_1"}, ["gift_card_1"]),
        "return_delivered_order_items": ({k: swap[k] for k in ("order_id", "item_ids", "payment_method_id")},
                                         [f"item {item['item_id']} ({item['name']}:", paid_by(order)]),
        "exchange_delivered_order_items": (swap, [f"-> item {variant['item_id']} ({item['name']}:", "are these all the items?"]),
        "modify_pending_order_items": (swap, ["Modify in order", "are these all the items?"]),
    }
    for name, (args, shown) in cases.items():
        question = toolbox.confirm[name](args)
        assert question.endswith("Do you confirm? (yes/no)") and all(s in question for s in shown), question
