"""The retail tools' contract beyond single calls: SQL metacharacters are data, writes
with an idempotency key apply once (also concurrently and through LangChain), the registry
and the LangChain tools carry tau2's exact names and arguments.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from pydantic import ValidationError

from tests.unit.retail_fixtures import (
    ADDRESS,
    TAU2_TOOL_ARGS,
    Source,
    balance,
    call,
    gift_card_swap_case,
    orders,
    paid_by,
    pick,
    refused,
    swap_case,
)
from tierflow.model_tiers.errors import ConfigError
from tierflow.tools.retail import (
    IDEMPOTENCY_CONFIG_KEY,
    RETAIL_TOOLS,
    WRITE_TOOL_NAMES,
    RetailDB,
    RetailToolError,
    call_retail_tool,
    copy_retail_db,
    retail_tools,
    state_hash,
)

# --- SQL metacharacters ----------------------------------------------------------------------------

PAYLOADS = ["'; DROP TABLE orders; --", "\" OR 1=1 --", "x'); DELETE FROM users; --", "%_\\'\"`;"]


def valid_arguments(source: Source) -> dict[str, dict[str, Any]]:
    user = next(iter(source["users"].values()))
    pending, item, new = swap_case(source, "pending")
    delivered, d_item, d_new = swap_case(source, "delivered")
    product = next(iter(source["products"].values()))
    return {
        "find_user_id_by_email": {"email": user["email"]},
        "find_user_id_by_name_zip": {**user["name"], "zip": user["address"]["zip"]},
        "get_user_details": {"user_id": user["user_id"]},
        "get_order_details": {"order_id": pending["order_id"]},
        "get_product_details": {"product_id": product["product_id"]},
        "get_item_details": {"item_id": item["item_id"]},
        "list_all_product_types": {},
        "calculate": {"expression": "1 + 1"},
        "transfer_to_human_agents": {"summary": "help"},
        "cancel_pending_order": {"order_id": pending["order_id"], "reason": "no longer needed"},
        "modify_pending_order_address": {"order_id": pending["order_id"], **ADDRESS},
        "modify_user_address": {"user_id": user["user_id"], **ADDRESS},
        "modify_pending_order_payment": {"order_id": pending["order_id"], "payment_method_id": paid_by(pending)},
        "modify_pending_order_items": {"order_id": pending["order_id"], "item_ids": [item["item_id"]],
                                       "new_item_ids": [new["item_id"]], "payment_method_id": paid_by(pending)},
        "return_delivered_order_items": {"order_id": delivered["order_id"], "item_ids": [d_item["item_id"]],
                                         "payment_method_id": paid_by(delivered)},
        "exchange_delivered_order_items": {"order_id": delivered["order_id"], "item_ids": [d_item["item_id"]],
                                           "new_item_ids": [d_new["item_id"]], "payment_method_id": paid_by(delivered)},
    }


def string_slots(arguments: dict[str, Any]) -> Iterator[tuple[str, int | None]]:
    for name, value in arguments.items():
        if isinstance(value, str):
            yield name, None
        elif isinstance(value, list):
            yield from ((name, index) for index in range(len(value)))


@pytest.mark.parametrize("tool", sorted(TAU2_TOOL_ARGS))
def test_sql_metacharacters_are_data_never_sql(built_db: Path, tmp_path: Path, source: Source, tool: str) -> None:
    template = valid_arguments(source)[tool]
    for payload in PAYLOADS:
        for name, index in string_slots(template):
            arguments = json.loads(json.dumps(template))
            if index is None:
                arguments[name] = payload
            else:
                arguments[name][index] = payload
            with RetailDB(copy_retail_db(built_db, tmp_path / "probe.sqlite")).connection() as conn:
                try:
                    result = call_retail_tool(conn, tool, arguments)
                except RetailToolError:
                    result = None
                counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                          for t in ("users", "orders", "products", "items", "payment_methods")]
                assert counts == [500, 1000, 50, len({v for p in source["products"].values() for v in p["variants"]}),
                                  sum(len(u["payment_methods"]) for u in source["users"].values())]
                if tool in ("modify_user_address", "modify_pending_order_address") and name != "user_id" \
                        and name != "order_id":
                    assert result is not None and result["address"][name] == payload
                    stored = call(conn, "get_user_details" if tool == "modify_user_address" else "get_order_details",
                                  **{k: template[k] for k in ("user_id", "order_id") if k in template})
                    assert stored["address"][name] == payload


# --- idempotency -------------------------------------------------------------------------------------


def test_a_write_with_a_key_applies_once(conn: sqlite3.Connection, source: Source) -> None:
    order, item, new, card = gift_card_swap_case(source, covered=True)
    arguments = dict(order_id=order["order_id"], item_ids=[item["item_id"]], new_item_ids=[new["item_id"]],
                     payment_method_id=card)
    first = call_retail_tool(conn, "modify_pending_order_items", arguments, idempotency_key="run-1:step-3")
    after_first, card_balance = state_hash(conn), balance(conn, card)
    second = call_retail_tool(conn, "modify_pending_order_items", arguments, idempotency_key="run-1:step-3")
    assert second == first
    assert state_hash(conn) == after_first and balance(conn, card) == card_balance
    with pytest.raises(RetailToolError) as caught:  # without the key it is a second, refused, modification
        call_retail_tool(conn, "modify_pending_order_items", arguments)
    assert caught.value.kind == "policy_violation"
    with pytest.raises(RetailToolError) as caught:
        call_retail_tool(conn, "cancel_pending_order", {"order_id": order["order_id"], "reason": "no longer needed"},
                         idempotency_key="run-1:step-3")
    assert caught.value.kind == "conflict"


def test_a_refused_write_does_not_burn_its_key(conn: sqlite3.Connection, source: Source) -> None:
    pending = next(orders(source, "pending"))["order_id"]
    key = "'; DROP TABLE applied_writes; --"
    with pytest.raises(RetailToolError):
        call_retail_tool(conn, "cancel_pending_order", {"order_id": "#W0000000", "reason": "no longer needed"},
                         idempotency_key=key)
    assert conn.execute("SELECT count(*) FROM applied_writes").fetchone()[0] == 0
    call_retail_tool(conn, "cancel_pending_order", {"order_id": pending, "reason": "no longer needed"},
                     idempotency_key=key)
    rows = conn.execute("SELECT idempotency_key, tool FROM applied_writes").fetchall()
    assert [tuple(row) for row in rows] == [(key, "cancel_pending_order")]


def test_concurrent_writes_with_one_key_apply_once(db: RetailDB, source: Source) -> None:
    order = pick((o for o in orders(source, "pending") if paid_by(o).startswith("gift_card")), "gift-card order")
    arguments = {"order_id": order["order_id"], "reason": "no longer needed"}
    results: list[Any] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with db.connection() as conn:
                results.append(call_retail_tool(conn, "cancel_pending_order", arguments, idempotency_key="same"))
        except BaseException as exc:  # handed to the main thread, which fails the test with it
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(results) == 4 and all(r == results[0] for r in results)
    with db.connection() as conn:
        refunds = [e for e in call(conn, "get_order_details", order_id=order["order_id"])["payment_history"]
                   if e["transaction_type"] == "refund"]
        assert len(refunds) == 1
        assert balance(conn, paid_by(order)) == round(
            source["users"][order["user_id"]]["payment_methods"][paid_by(order)]["balance"] + refunds[0]["amount"], 2)


def test_retail_db_connect_never_rebuilds(db: RetailDB) -> None:
    db.path.unlink()
    with pytest.raises(ConfigError, match="missing"):
        db.connect()


# --- registry and LangChain tools ------------------------------------------------------------------------


def test_registry_has_tau2_names_and_arguments() -> None:
    assert {name: set(spec.args_model.model_fields) for name, spec in RETAIL_TOOLS.items()} == TAU2_TOOL_ARGS
    assert {n for n in TAU2_TOOL_ARGS if n.split("_")[0] in ("cancel", "modify", "return", "exchange")} == WRITE_TOOL_NAMES
    with closing(sqlite3.connect(":memory:")) as conn, pytest.raises(RetailToolError, match="unknown retail tool"):
        call_retail_tool(conn, "delete_everything", {})


def test_extra_or_missing_arguments_are_refused(conn: sqlite3.Connection) -> None:
    refused(conn, "get_order_details", "invalid_argument", order_id="#W1", user_id="x")
    refused(conn, "get_order_details", "invalid_argument")


def counting_factory(db: RetailDB) -> tuple[Callable[[], sqlite3.Connection], list[sqlite3.Connection]]:
    opened: list[sqlite3.Connection] = []

    def factory() -> sqlite3.Connection:
        opened.append(db.connect())
        return opened[-1]
    return factory, opened


def test_langchain_tools_bindable_with_tau2_schemas(db: RetailDB, source: Source) -> None:
    factory, opened = counting_factory(db)
    tools: dict[str, BaseTool] = {t.name: t for t in retail_tools(factory)}
    assert {name: set(t.tool_call_schema.model_json_schema().get("properties", {})) for name, t in tools.items()} == (
        TAU2_TOOL_ARGS
    )
    order = next(orders(source, "pending"))
    message = tools["get_order_details"].invoke(
        {"type": "tool_call", "id": "call-1", "name": "get_order_details", "args": {"order_id": order["order_id"]}})
    assert isinstance(message, ToolMessage) and message.artifact == order and json.loads(message.content) == order
    with pytest.raises(RetailToolError):
        tools["get_order_details"].invoke({"order_id": "#W0000000"})
    with pytest.raises(ValidationError):
        tools["cancel_pending_order"].invoke({"order_id": order["order_id"], "reason": "bored"})
    for connection in opened:  # one connection per call, closed after it
        with pytest.raises(sqlite3.ProgrammingError):
            connection.execute("SELECT 1")


def test_langchain_write_idempotency_key_comes_from_the_run_config(db: RetailDB, source: Source) -> None:
    tools = {t.name: t for t in retail_tools(db.connect)}
    order = next(orders(source, "pending"))
    call_ = {"type": "tool_call", "id": "c", "name": "cancel_pending_order",
             "args": {"order_id": order["order_id"], "reason": "no longer needed"}}
    config = {"configurable": {IDEMPOTENCY_CONFIG_KEY: "thread-9:step-2:c"}}
    first = tools["cancel_pending_order"].invoke(call_, config=config)
    second = tools["cancel_pending_order"].invoke(call_, config=config)
    assert first.artifact == second.artifact and first.artifact["status"] == "cancelled"
    assert len(second.artifact["payment_history"]) == len(order["payment_history"]) + 1


def test_langchain_errors_as_messages(db: RetailDB) -> None:
    tools = {t.name: t for t in retail_tools(db.connect, errors_as_messages=True)}
    for args in ({"order_id": "#W0000000", "reason": "no longer needed"}, {"order_id": "#W1", "reason": "bored"}):
        message = tools["cancel_pending_order"].invoke(
            {"type": "tool_call", "id": "c", "name": "cancel_pending_order", "args": args})
        assert message.status == "error" and ("not found" in message.content or "reason" in message.content)
