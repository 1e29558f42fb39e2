"""Shared machinery of the retail write tools: one transaction per write with its
idempotency record, order/payment loading and saving, and the policy checks that several
tools share (order status, payment method ownership, gift card balance, item swaps).
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from tierflow.tools.retail.db import load_item, load_order
from tierflow.tools.retail.errors import RetailToolError, order_not_found, require_found

__all__ = [
    "STATUS_CANCELLED",
    "STATUS_DELIVERED",
    "STATUS_EXCHANGE_REQUESTED",
    "STATUS_ITEMS_MODIFIED",
    "STATUS_PENDING",
    "STATUS_RETURN_REQUESTED",
    "adjust_gift_card",
    "checked_replacements",
    "money",
    "net_paid",
    "order_in_status",
    "require_gift_card_covers",
    "require_items_in_order",
    "run_write",
    "save_order",
    "sorted_pairs",
    "user_payment_method",
    "write_tool",
]

STATUS_PENDING = "pending"
STATUS_DELIVERED = "delivered"
STATUS_CANCELLED = "cancelled"
STATUS_ITEMS_MODIFIED = "pending (item modified)"
STATUS_RETURN_REQUESTED = "return requested"
STATUS_EXCHANGE_REQUESTED = "exchange requested"

_ORDER_CORE_FIELDS = frozenset(("order_id", "user_id", "address", "items", "status", "fulfillments", "payment_history"))

ResultT = TypeVar("ResultT")
ResultT_co = TypeVar("ResultT_co", covariant=True)
ArgsT = TypeVar("ArgsT", bound=BaseModel)
ArgsT_contra = TypeVar("ArgsT_contra", bound=BaseModel, contravariant=True)


def money(amount: float) -> float:
    # + 0.0 turns a rounded -0.0 into 0.0 so equal states hash equally.
    return round(amount, 2) + 0.0


# --- transactions and idempotency ----------------------------------------------------------


def run_write(
    conn: sqlite3.Connection,
    tool: str,
    args: BaseModel,
    idempotency_key: str | None,
    apply: Callable[[], ResultT],
) -> ResultT:
    """Run ``apply`` in one ``BEGIN IMMEDIATE`` transaction, recording ``idempotency_key``
    with the call and its result; a key seen before returns its recorded result instead.
    Anything raised rolls the whole write back, key included."""
    if idempotency_key is not None and (not isinstance(idempotency_key, str) or not idempotency_key.strip()):
        raise RetailToolError(tool, "idempotency_key must be a non-empty string or None")
    if conn.in_transaction:
        raise RetailToolError(
            tool,
            "the connection already has an open transaction; write tools run their own "
            "transaction, so commit or roll back first",
            kind="conflict",
        )
    call = args.model_dump_json()
    conn.execute("BEGIN IMMEDIATE")
    finished = False
    try:
        if idempotency_key is not None:
            applied = conn.execute(
                "SELECT tool, arguments, result FROM applied_writes WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
            if applied is not None:
                if applied[0] != tool or applied[1] != call:
                    raise RetailToolError(
                        tool,
                        f"idempotency key {idempotency_key!r} was already used for a different call "
                        f"({applied[0]} {applied[1]}); use a new key for a new write",
                        kind="conflict",
                    )
                conn.execute("COMMIT")
                finished = True
                recorded: ResultT = json.loads(applied[2])
                return recorded
        result = apply()
        if idempotency_key is not None:
            conn.execute(
                "INSERT INTO applied_writes (idempotency_key, tool, arguments, result) VALUES (?, ?, ?, ?)",
                (idempotency_key, tool, call, json.dumps(result, ensure_ascii=False, separators=(",", ":"))),
            )
        conn.execute("COMMIT")
        finished = True
        return result
    finally:
        if not finished:
            conn.execute("ROLLBACK")


class WriteTool(Protocol[ArgsT_contra, ResultT_co]):
    """A write tool as it is called: a connection, its arguments and an optional idempotency key."""

    __name__: str

    def __call__(self, conn: sqlite3.Connection, args: ArgsT_contra, *, idempotency_key: str | None = None) -> ResultT_co: ...


def write_tool(body: Callable[[sqlite3.Connection, ArgsT, str], ResultT]) -> WriteTool[ArgsT, ResultT]:
    """The write tool whose work is `body(conn, args, tool)` (`tool`: the function's name, for
    its errors), run by `run_write` in one transaction with the call's idempotency key."""
    tool = body.__name__

    @functools.wraps(body)
    def write(conn: sqlite3.Connection, args: ArgsT, *, idempotency_key: str | None = None) -> ResultT:
        return run_write(conn, tool, args, idempotency_key, lambda: body(conn, args, tool))

    return write


# --- loading and saving --------------------------------------------------------------------


def order_in_status(conn: sqlite3.Connection, tool: str, order_id: str, required: str, action: str) -> dict[str, Any]:
    order = require_found(tool, load_order(conn, order_id), order_not_found(order_id))
    status = order["status"]
    if status != required:
        why = (
            " Its items were already modified once, so it can no longer be modified or cancelled."
            if status == STATUS_ITEMS_MODIFIED
            else ""
        )
        raise RetailToolError(
            tool,
            f"order {order_id} is {status!r}; only {required!r} orders can be {action}.{why}",
            kind="policy_violation",
        )
    return order


def save_order(conn: sqlite3.Connection, order: dict[str, Any]) -> None:
    extra = {key: value for key, value in order.items() if key not in _ORDER_CORE_FIELDS}
    conn.execute(
        "UPDATE orders SET status = ?, address = ?, items = ?, payment_history = ?, extra = ? WHERE order_id = ?",
        (
            order["status"],
            json.dumps(order["address"], ensure_ascii=False),
            json.dumps(order["items"], ensure_ascii=False),
            json.dumps(order["payment_history"], ensure_ascii=False),
            json.dumps(extra, ensure_ascii=False),
            order["order_id"],
        ),
    )


def user_payment_method(conn: sqlite3.Connection, tool: str, user_id: str, payment_method_id: str) -> sqlite3.Row:
    row: sqlite3.Row | None = conn.execute(
        "SELECT payment_method_id, source, balance FROM payment_methods WHERE payment_method_id = ? AND user_id = ?",
        (payment_method_id, user_id),
    ).fetchone()
    if row is None:
        owned = [
            r[0]
            for r in conn.execute(
                "SELECT payment_method_id FROM payment_methods WHERE user_id = ? ORDER BY position", (user_id,)
            )
        ]
        raise RetailToolError(
            tool,
            f"payment method {payment_method_id!r} is not one of user {user_id}'s payment methods; "
            f"use one of: {', '.join(owned) or '(none on file)'}",
            kind="not_found",
        )
    return row


def require_gift_card_covers(tool: str, method: sqlite3.Row, amount: float, what: str) -> None:
    if method["source"] == "gift_card" and amount > 0 and (method["balance"] or 0.0) < amount:
        raise RetailToolError(
            tool,
            f"gift card {method['payment_method_id']} has a balance of {method['balance']:.2f}, not enough to "
            f"cover {what} of {amount:.2f}; choose another payment method",
            kind="policy_violation",
        )


def adjust_gift_card(conn: sqlite3.Connection, payment_method_id: str, delta: float) -> None:
    """Add ``delta`` to a gift card's balance; other payment methods have no balance here."""
    row = conn.execute(
        "SELECT balance FROM payment_methods WHERE payment_method_id = ? AND source = 'gift_card'",
        (payment_method_id,),
    ).fetchone()
    if row is not None:
        conn.execute(
            "UPDATE payment_methods SET balance = ? WHERE payment_method_id = ?",
            (money((row[0] or 0.0) + delta), payment_method_id),
        )


def net_paid(order: dict[str, Any]) -> dict[str, float]:
    """What each payment method has paid for the order so far (payments minus refunds)."""
    net: dict[str, float] = {}
    for entry in order["payment_history"]:
        sign = 1.0 if entry["transaction_type"] == "payment" else -1.0
        method = entry["payment_method_id"]
        net[method] = net.get(method, 0.0) + sign * float(entry["amount"])
    return {method: money(amount) for method, amount in net.items() if money(amount) > 0}


def require_items_in_order(tool: str, order: dict[str, Any], item_ids: list[str]) -> None:
    in_order = Counter(item["item_id"] for item in order["items"])
    asked = Counter(item_ids)
    missing = [item_id for item_id, count in asked.items() if count > in_order[item_id]]
    if missing:
        raise RetailToolError(
            tool,
            f"item(s) {', '.join(missing)} not in order {order['order_id']} (or listed more times than ordered); "
            f"the order's item ids are: {', '.join(item['item_id'] for item in order['items'])}",
            kind="not_found",
        )


def checked_replacements(
    conn: sqlite3.Connection, tool: str, order: dict[str, Any], item_ids: list[str], new_item_ids: list[str]
) -> tuple[list[dict[str, Any]], float]:
    """The catalogue records of the new items, and the price difference (new - old)."""
    if len(item_ids) != len(new_item_ids):
        raise RetailToolError(
            tool,
            f"item_ids has {len(item_ids)} ids but new_item_ids has {len(new_item_ids)}; "
            "give one new item per item to change, in the same order",
        )
    require_items_in_order(tool, order, item_ids)
    old_by_id = {item["item_id"]: item for item in order["items"]}
    replacements: list[dict[str, Any]] = []
    difference = 0.0
    for old_id, new_id in zip(item_ids, new_item_ids, strict=True):
        old = old_by_id[old_id]
        new = load_item(conn, new_id)
        if new is None:
            raise RetailToolError(
                tool, f"new item {new_id!r} not found; get_product_details lists a product's item ids", kind="not_found"
            )
        if new["product_id"] != old["product_id"]:
            raise RetailToolError(
                tool,
                f"new item {new_id} is a {new['name']} (product {new['product_id']}), but item {old_id} is a "
                f"{old['name']} (product {old['product_id']}); an item can only change to another variant of "
                "the same product",
                kind="policy_violation",
            )
        if new_id == old_id:
            raise RetailToolError(
                tool,
                f"new item {new_id} is the same variant as item {old_id}; choose a variant with different options",
                kind="policy_violation",
            )
        if not new["available"]:
            raise RetailToolError(
                tool,
                f"new item {new_id} ({new['name']}, {new['options']}) is not available; choose an available variant",
                kind="policy_violation",
            )
        replacements.append(new)
        difference += float(new["price"]) - float(old["price"])
    return replacements, money(difference)


def sorted_pairs(item_ids: list[str], new_item_ids: list[str]) -> tuple[list[str], list[str]]:
    # The state must not depend on the order in which the user listed the items.
    pairs = sorted(zip(item_ids, new_item_ids, strict=True))
    return [old for old, _ in pairs], [new for _, new in pairs]
