"""Every gold action of the 74 tau2 retail train tasks runs through our tools, in order,
on a fresh database per task, with tau2's tool and argument names, and leaves the state
the action implies. Replaying a task twice gives the same database state, which is what
the DB check of tau2-bench compares.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tierflow.tools.datasets import dataset_file
from tierflow.tools.retail import (
    RETAIL_TOOLS,
    RetailDB,
    RetailToolError,
    call_retail_tool,
    copy_retail_db,
    snapshot_state,
)
from tierflow.tools.retail.reads import TRANSFER_MESSAGE

TASKS: list[dict[str, Any]] = json.loads(dataset_file("tau2_retail", "tasks_train.json").read_text())

# status an order is left in by each write action (address/payment changes keep 'pending')
STATUS_AFTER = {
    "cancel_pending_order": "cancelled",
    "modify_pending_order_items": "pending (item modified)",
    "return_delivered_order_items": "return requested",
    "exchange_delivered_order_items": "exchange requested",
    "modify_pending_order_address": "pending",
    "modify_pending_order_payment": "pending",
}
ADDRESS_FIELDS = ("address1", "address2", "city", "country", "state", "zip")
# Gold actions our tools refuse, each for a reason in the data. Most are lookups the task
# scripts make fail on purpose (the simulated user first gives a wrong email, zip or order
# id) and tau2 answers them with an error message too; three look up '6086499569', the
# example product id of tau2's tool docs, which is not in db.json. Task 105 exchanges two
# tea kettles (difference 101.12 + 109.58 - 2 * 94.80 = 21.10) paying with a gift card
# holding 17.00, which policy.md forbids ("If the user provides a gift card, it must have
# enough balance to cover the price difference"); we follow the policy.
# (task id, action id) of the lookups of an unknown id.
_UNKNOWN_IDS = [("2", "2_1"), ("3", "3_1"), ("4", "4_1"), ("35", "35_0"), ("37", "37_0"), ("46", "46_1"),
                ("46", "46_2"), ("47", "47_1"), ("47", "47_2"), ("54", "54_0"), ("67", "67_0"), ("67", "67_1")]
EXPECTED_REFUSALS: dict[tuple[str, str], str] = {**dict.fromkeys(_UNKNOWN_IDS, "not_found"), ("105", "106_0"): "policy_violation"}


def test_the_train_split_has_74_tasks_using_only_known_tools(source: dict[str, Any]) -> None:
    assert len(TASKS) == 74
    assert {a["name"] for t in TASKS for a in t["evaluation_criteria"]["actions"]} <= set(RETAIL_TOOLS)
    all_actions = {(t["id"], a["action_id"]) for t in TASKS for a in t["evaluation_criteria"]["actions"]}
    assert set(EXPECTED_REFUSALS) <= all_actions


def balances(conn: sqlite3.Connection) -> dict[str, float]:
    rows = conn.execute("SELECT payment_method_id, balance FROM payment_methods WHERE source = 'gift_card'")
    return {row[0]: row[1] for row in rows}


def check_read(conn: sqlite3.Connection, name: str, args: dict[str, Any], result: Any) -> None:
    if name == "find_user_id_by_email":
        user = call_retail_tool(conn, "get_user_details", {"user_id": result})
        assert user["email"].lower() == args["email"].lower()
    elif name == "find_user_id_by_name_zip":
        user = call_retail_tool(conn, "get_user_details", {"user_id": result})
        assert (user["name"]["first_name"].lower(), user["name"]["last_name"].lower(), user["address"]["zip"]) == (
            args["first_name"].lower(), args["last_name"].lower(), args["zip"])
    elif name in ("get_user_details", "get_order_details", "get_product_details", "get_item_details"):
        key = name.removeprefix("get_").removesuffix("_details") + "_id"
        assert result[key] == args[key]
    elif name == "calculate":
        assert isinstance(result, float)
    elif name == "transfer_to_human_agents":
        assert result == TRANSFER_MESSAGE


def check_write(name: str, args: dict[str, Any], before: dict[str, Any], result: dict[str, Any],
                gift_before: dict[str, float], gift_after: dict[str, float]) -> None:
    if name == "modify_user_address":
        assert result["address"] == {field: args[field] for field in ADDRESS_FIELDS}
        return
    assert result["order_id"] == args["order_id"]
    assert result["status"] == STATUS_AFTER[name]
    new_entries = result["payment_history"][len(before["payment_history"]):]
    assert result["payment_history"][: len(before["payment_history"])] == before["payment_history"]
    if name == "cancel_pending_order":
        assert result["cancel_reason"] == args["reason"]
        paid = sum(e["amount"] if e["transaction_type"] == "payment" else -e["amount"] for e in before["payment_history"])
        assert [e["transaction_type"] for e in new_entries] == ["refund"] * len(new_entries)
        assert round(sum(e["amount"] for e in new_entries), 2) == round(paid, 2)
    elif name == "modify_pending_order_address":
        assert result["address"] == {field: args[field] for field in ADDRESS_FIELDS}
    elif name == "modify_pending_order_payment":
        assert new_entries[0]["payment_method_id"] == args["payment_method_id"]
    elif name == "modify_pending_order_items":
        old = [i["item_id"] for i in before["items"]]
        new = [i["item_id"] for i in result["items"]]
        for item_id in args["item_ids"]:
            old.remove(item_id)
        assert sorted(old + args["new_item_ids"]) == sorted(new)
        difference = round(sum(i["price"] for i in result["items"]) - sum(i["price"] for i in before["items"]), 2)
        expected = [] if difference == 0 else [{
            "transaction_type": "payment" if difference > 0 else "refund",
            "amount": abs(difference), "payment_method_id": args["payment_method_id"]}]
        assert new_entries == expected
    elif name == "return_delivered_order_items":
        assert result["return_items"] == sorted(args["item_ids"])
        assert result["return_payment_method_id"] == args["payment_method_id"]
    elif name == "exchange_delivered_order_items":
        assert sorted(zip(result["exchange_items"], result["exchange_new_items"], strict=True)) == sorted(
            zip(args["item_ids"], args["new_item_ids"], strict=True))
        assert result["exchange_payment_method_id"] == args["payment_method_id"]
    if name in ("return_delivered_order_items", "exchange_delivered_order_items", "modify_pending_order_address"):
        assert new_entries == []  # a request moves no money
    # gift cards move with the money, at once: payments draw on them, refunds credit them
    expected_gift = dict(gift_before)
    for entry in new_entries:
        if entry["payment_method_id"] in expected_gift:
            sign = -1 if entry["transaction_type"] == "payment" else 1
            expected_gift[entry["payment_method_id"]] = round(expected_gift[entry["payment_method_id"]] + sign * entry["amount"], 2)
    assert gift_after == expected_gift


def replay(conn: sqlite3.Connection, task: dict[str, Any]) -> dict[str, str]:
    """Run the task's gold actions, checking each; returns the status each applied write left."""
    final_status: dict[str, str] = {}
    for action in task["evaluation_criteria"]["actions"]:
        name, args = action["name"], action["arguments"]
        spec = RETAIL_TOOLS[name]
        expected_refusal = EXPECTED_REFUSALS.get((task["id"], action["action_id"]))
        if expected_refusal is not None:
            before = snapshot_state(conn) if spec.is_write else None
            with pytest.raises(RetailToolError) as caught:
                call_retail_tool(conn, name, args)
            assert caught.value.kind == expected_refusal, str(caught.value)
            if before is not None:
                assert snapshot_state(conn) == before
            continue
        if not spec.is_write:
            check_read(conn, name, args, call_retail_tool(conn, name, args))
            continue
        before = call_retail_tool(conn, "get_order_details", {"order_id": args["order_id"]}) if "order_id" in args else {}
        gift_before = balances(conn)
        result = call_retail_tool(conn, name, args, idempotency_key=f"task-{task['id']}:{action['action_id']}")
        check_write(name, args, before, result, gift_before, balances(conn))
        if "order_id" in args:
            final_status[args["order_id"]] = result["status"]
    return final_status


@pytest.mark.parametrize("task", TASKS, ids=[f"task-{t['id']}" for t in TASKS])
def test_gold_actions_replay(task: dict[str, Any], built_db: Path, tmp_path: Path, source: dict[str, Any]) -> None:
    first = RetailDB(copy_retail_db(built_db, tmp_path / "first.sqlite"))
    with first.connection() as conn:
        final_status = replay(conn, task)
        state = snapshot_state(conn)
    for order_id, status in final_status.items():
        assert state["orders"][order_id]["status"] == status
    applied_writes = [a for a in task["evaluation_criteria"]["actions"]
                      if RETAIL_TOOLS[a["name"]].is_write and (task["id"], a["action_id"]) not in EXPECTED_REFUSALS]
    assert (state != {"users": source["users"], "orders": source["orders"]}) == bool(applied_writes)
    untouched = set(source["orders"]) - set(final_status)
    assert all(state["orders"][order_id] == source["orders"][order_id] for order_id in untouched)
    second = RetailDB(copy_retail_db(built_db, tmp_path / "second.sqlite"))
    with second.connection() as conn:
        replay(conn, task)
    assert second.state_hash() == first.state_hash()
