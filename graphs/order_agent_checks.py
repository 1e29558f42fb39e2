"""The order agent's verifier: deterministic checks of a proposed retail tool call against
the database, run BEFORE the call executes, and the small readers of earlier results that
the checks, the prompts and the final output share.

Every check receives the proposal `{"name": tool, "args": {...}}` (already valid against
the tool's argument schema) and the step input, and returns None (pass) or an actionable
reason that is fed back to the model. A check that does not concern the proposed tool
passes. The database is only read (tools/retail read functions on a fresh connection).
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, get_args

from tierflow.agents.spec import Check, CheckFn, StepInput, ToolResult, is_tool_result
from tierflow.model_tiers import ConfigError
from tierflow.tools.retail import RetailDB, RetailToolError, call_retail_tool
from tierflow.tools.retail.schemas import CancelReason

__all__ = [
    "RESOURCE_KEY",
    "IDENTIFY_TOOLS",
    "READ_TOOLS",
    "CHANGE_TOOLS",
    "HANDOFF_TOOLS",
    "ACTION_TOOLS",
    "CANCEL_REASONS",
    "RequestFacts",
    "request_facts",
    "retail_db",
    "tool_results",
    "identified_user",
    "ORDER_CHECKS",
    "authenticated_first",
    "identity_in_request",
    "acts_for_identified_user",
    "user_owns_order",
    "order_status_allows",
    "items_in_order",
    "new_items_valid",
    "payment_method_owned",
    "refund_destination",
    "cancel_reason_allowed",
    "matches_request",
]

RESOURCE_KEY = "retail"

IDENTIFY_TOOLS = ("find_user_id_by_email", "find_user_id_by_name_zip")
READ_TOOLS = (
    "get_user_details",
    "get_order_details",
    "get_product_details",
    "get_item_details",
    "list_all_product_types",
    "calculate",
)
CHANGE_TOOLS = (
    "cancel_pending_order",
    "modify_pending_order_address",
    "modify_pending_order_items",
    "modify_pending_order_payment",
    "modify_user_address",
    "return_delivered_order_items",
    "exchange_delivered_order_items",
)
HANDOFF_TOOLS = ("transfer_to_human_agents",)
# Tools that touch no customer's data: usable before the customer is authenticated.
_PUBLIC_TOOLS = frozenset(
    {*IDENTIFY_TOOLS, "get_product_details", "get_item_details", "list_all_product_types", "calculate", *HANDOFF_TOOLS}
)
_PENDING_ONLY = frozenset(
    {"cancel_pending_order", "modify_pending_order_address", "modify_pending_order_items", "modify_pending_order_payment"}
)
_DELIVERED_ONLY = frozenset({"return_delivered_order_items", "exchange_delivered_order_items"})
_ITEM_SWAPS = frozenset({"modify_pending_order_items", "exchange_delivered_order_items"})
CANCEL_REASONS: tuple[str, ...] = get_args(CancelReason)

# What kind of change a customer's words ask for, and the tools that make it.
ACTION_TOOLS: dict[str, tuple[str, ...]] = {
    "cancel": ("cancel_pending_order",),
    "return": ("return_delivered_order_items",),
    "exchange": ("exchange_delivered_order_items",),
    "modify_items": ("modify_pending_order_items",),
    "address": ("modify_pending_order_address", "modify_user_address"),
    "payment": ("modify_pending_order_payment",),
}
_ACTION_PATTERNS: dict[str, re.Pattern[str]] = {
    "cancel": re.compile(r"\bcancel", re.I),
    "return": re.compile(r"\breturn", re.I),
    "exchange": re.compile(r"\bexchang|\bswap", re.I),
    "modify_items": re.compile(
        r"\b(modify|change|switch|upgrade)\b[^.?!]*\b(items?|size|colou?r|variant|options?|model|version)\b", re.I
    ),
    "address": re.compile(r"\baddress\b", re.I),
    "payment": re.compile(r"\bpayment\b|\bpay (it |for it )?(with|by|using)\b", re.I),
}


@dataclass(frozen=True)
class RequestFacts:
    """What a customer's message states, found by patterns (no model): ids and wanted changes."""

    order_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    emails: tuple[str, ...]
    zips: tuple[str, ...]
    actions: tuple[str, ...]

    @property
    def change_tools(self) -> tuple[str, ...]:
        return tuple(t for a in self.actions for t in ACTION_TOOLS[a])


def _matches(pattern: str, text: str) -> tuple[str, ...]:
    """The distinct matches of `pattern` in `text`, in order of appearance."""
    return tuple(dict.fromkeys(m.group(0) for m in re.finditer(pattern, text)))


def request_facts(request: str) -> RequestFacts:
    # Order ids are written with their '#' or without it; the database has it.
    order_ids = _matches(r"#?\bW\d{7}\b", request)
    return RequestFacts(
        order_ids=tuple(dict.fromkeys("#" + order_id.lstrip("#") for order_id in order_ids)),
        item_ids=_matches(r"\b\d{10}\b", request),
        emails=_matches(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", request),
        zips=_matches(r"\b\d{5}\b", request),
        actions=tuple(a for a, pattern in _ACTION_PATTERNS.items() if pattern.search(request)),
    )


# --- earlier results ------------------------------------------------------------------------


def tool_results(results: Mapping[str, Any]) -> list[tuple[str, ToolResult]]:
    """(plan item id, result) of every tool step that ran, oldest first."""
    return [(k, v) for k, v in results.items() if is_tool_result(v)]


def identified_user(results: Mapping[str, Any]) -> str | None:
    """The user id the latest successful identification found (None before that)."""
    for _, result in reversed(tool_results(results)):
        if result["tool"] in IDENTIFY_TOOLS and result["status"] == "done" and isinstance(result.get("output"), str):
            return str(result["output"])
    return None


def retail_db(resources: Mapping[str, Any]) -> RetailDB:
    db = resources.get(RESOURCE_KEY)
    if not isinstance(db, RetailDB):
        raise ConfigError(
            f"the order agent needs resources['{RESOURCE_KEY}'] to be a tools.retail.RetailDB "
            f"(got {type(db).__name__}); pass build(resources={{'{RESOURCE_KEY}': RetailDB.open(path)}})"
        )
    return db


@contextmanager
def _reading(inp: StepInput) -> Iterator[sqlite3.Connection]:
    with retail_db(inp.resources).connection() as conn:
        yield conn


def _found(conn: sqlite3.Connection, tool: str, **arguments: str) -> dict[str, Any] | None:
    """What the read tool `tool` returns for `arguments`, or None where the id is unknown."""
    try:
        found: dict[str, Any] = call_retail_tool(conn, tool, arguments)
        return found
    except RetailToolError as err:
        if err.kind == "not_found":
            return None
        raise


# --- the checks -----------------------------------------------------------------------------

def _authenticated_first(value: Mapping[str, Any], inp: StepInput) -> str | None:
    if value["name"] in _PUBLIC_TOOLS or identified_user(inp.results) is not None:
        return None
    return (
        f"the customer is not authenticated yet, so '{value['name']}' may not run; first find their user id "
        "with find_user_id_by_email or find_user_id_by_name_zip (policy)"
    )


def _identity_in_request(value: Mapping[str, Any], inp: StepInput) -> str | None:
    if value["name"] not in IDENTIFY_TOOLS:
        return None
    said = inp.request.casefold()
    for field, given in value["args"].items():
        if str(given).strip().casefold() not in said:
            return f"{field}='{given}' does not occur in the customer's message; copy it exactly as the customer wrote it"
    return None


# A check of one argument of a call against the authenticated customer: (its value, the customer, the input).
_CustomerCheck = Callable[[Any, str, StepInput], str | None]


def _of_customer(arg: str) -> Callable[[_CustomerCheck], CheckFn]:
    """The check that runs `check` on a call that has `arg`, once a customer is authenticated
    (before, or without the argument, there is nothing to check it against)."""

    def applied(check: _CustomerCheck) -> CheckFn:
        def run(value: Mapping[str, Any], inp: StepInput) -> str | None:
            given, user = value["args"].get(arg), identified_user(inp.results)
            return None if given is None or user is None else check(given, user, inp)

        return run

    return applied


@_of_customer("user_id")
def _acts_for_identified_user(given: str, user: str, inp: StepInput) -> str | None:
    if given == user:
        return None
    return f"user_id '{given}' is not the authenticated customer; use user_id '{user}' (one customer per conversation)"


def _order(value: Mapping[str, Any], conn: sqlite3.Connection) -> dict[str, Any] | None:
    order_id = value["args"].get("order_id")
    return None if order_id is None else _found(conn, "get_order_details", order_id=order_id)


@_of_customer("order_id")
def _user_owns_order(order_id: str, user: str, inp: StepInput) -> str | None:
    with _reading(inp) as conn:
        order = _found(conn, "get_order_details", order_id=order_id)
        owner = _found(conn, "get_user_details", user_id=user)
    theirs = ", ".join((owner or {}).get("orders", [])) or "(none)"
    if order is None:
        return f"order '{order_id}' does not exist; order ids look like '#W0000000', and this customer's orders are: {theirs}"
    if order["user_id"] != user:
        return f"order {order_id} is not an order of the authenticated customer {user}; their orders are: {theirs}"
    return None


def _order_status_allows(value: Mapping[str, Any], inp: StepInput) -> str | None:
    name = value["name"]
    if name not in _PENDING_ONLY | _DELIVERED_ONLY:
        return None
    with _reading(inp) as conn:
        order = _order(value, conn)
    if order is None:
        return f"order '{value['args']['order_id']}' does not exist; take the order id from the customer's message or their order list"
    required, verb = ("pending", "cancelled or modified") if name in _PENDING_ONLY else ("delivered", "returned or exchanged")
    if order["status"] != required:
        return (
            f"order {order['order_id']} is '{order['status']}'; only {required} orders can be {verb}, so '{name}' "
            "is not possible for it: do not call it, tell the customer instead"
        )
    return None


def _items_in_order(value: Mapping[str, Any], inp: StepInput) -> str | None:
    item_ids = value["args"].get("item_ids")
    if item_ids is None:
        return None
    with _reading(inp) as conn:
        order = _order(value, conn)
    if order is None:
        return None  # reported by the ownership check
    in_order = Counter(item["item_id"] for item in order["items"])
    extra = [i for i, n in Counter(item_ids).items() if n > in_order[i]]
    if extra:
        listed = ", ".join(f"{item['item_id']} ({item['name']})" for item in order["items"])
        return f"item id(s) {', '.join(extra)} are not in order {order['order_id']} (or listed too often); its items are: {listed}"
    return None


def _variants_hint(conn: sqlite3.Connection, old: dict[str, Any]) -> str:
    rows = conn.execute(
        "SELECT item_id, options FROM items WHERE product_id = ? AND available = 1 AND item_id != ? ORDER BY position LIMIT 6",
        (old["product_id"], old["item_id"]),
    ).fetchall()
    if not rows:
        return f"the {old['name']} has no other available variant"
    return f"available variants of this {old['name']} (product {old['product_id']}): " + "; ".join(
        f"{r['item_id']} {r['options']}" for r in rows
    )


def _new_items_valid(value: Mapping[str, Any], inp: StepInput) -> str | None:
    if value["name"] not in _ITEM_SWAPS:
        return None
    old_ids, new_ids = value["args"]["item_ids"], value["args"]["new_item_ids"]
    if len(old_ids) != len(new_ids):
        return f"item_ids has {len(old_ids)} ids but new_item_ids has {len(new_ids)}; give one new item per item, in the same order"
    with _reading(inp) as conn:
        order = _order(value, conn)
        if order is None:
            return None  # reported by the ownership check
        old_by_id = {item["item_id"]: item for item in order["items"]}
        for old_id, new_id in zip(old_ids, new_ids, strict=True):
            old = old_by_id.get(old_id)
            if old is None:
                continue  # reported by the items check
            new = _found(conn, "get_item_details", item_id=new_id)
            if new is None:
                return f"new item '{new_id}' does not exist; {_variants_hint(conn, old)}"
            if new["product_id"] != old["product_id"]:
                return (
                    f"new item {new_id} is a {new['name']} (product {new['product_id']}) but item {old_id} is a "
                    f"{old['name']}: the product type cannot change; {_variants_hint(conn, old)}"
                )
            if new_id == old_id:
                return f"new item {new_id} is the same variant as item {old_id}; choose different options; {_variants_hint(conn, old)}"
            if not new["available"]:
                return f"new item {new_id} is not available; {_variants_hint(conn, old)}"
    return None


def _user_methods(conn: sqlite3.Connection, user_id: str) -> dict[str, dict[str, Any]]:
    user = _found(conn, "get_user_details", user_id=user_id)
    return dict((user or {}).get("payment_methods", {}))


@_of_customer("payment_method_id")
def _payment_method_owned(method_id: str, user: str, inp: StepInput) -> str | None:
    with _reading(inp) as conn:
        methods = _user_methods(conn, user)
    if method_id not in methods:
        return f"payment method '{method_id}' is not one of {user}'s; use one of: {', '.join(methods) or '(none on file)'}"
    return None


def _refund_destination(value: Mapping[str, Any], inp: StepInput) -> str | None:
    if value["name"] != "return_delivered_order_items":
        return None
    method_id = value["args"]["payment_method_id"]
    with _reading(inp) as conn:
        order = _order(value, conn)
        if order is None:
            return None  # reported by the ownership check
        methods = _user_methods(conn, order["user_id"])
    original = list(dict.fromkeys(e["payment_method_id"] for e in order["payment_history"] if e["transaction_type"] == "payment"))
    if method_id in original or methods.get(method_id, {}).get("source") == "gift_card":
        return None
    cards = [m for m, d in methods.items() if d.get("source") == "gift_card"]
    return (
        f"the refund must go to the original payment method ({', '.join(original)}) or an existing gift card "
        f"({', '.join(cards) or 'the customer has none'}), not '{method_id}'"
    )


def _cancel_reason_allowed(value: Mapping[str, Any], inp: StepInput) -> str | None:
    if value["name"] != "cancel_pending_order":
        return None
    reason = value["args"].get("reason")
    if reason in CANCEL_REASONS:
        return None
    return f"reason '{reason}' is not allowed; use exactly one of: {', '.join(repr(r) for r in CANCEL_REASONS)}"


def _matches_request(value: Mapping[str, Any], inp: StepInput) -> str | None:
    name = value["name"]
    if name not in CHANGE_TOOLS:
        return None
    wanted = request_facts(inp.request).change_tools
    if not wanted or name in wanted:
        return None
    return f"the customer did not ask for '{name}'; their message asks for: {', '.join(wanted)}"


authenticated_first = Check("customer authenticated first", _authenticated_first)
identity_in_request = Check("identity taken from the message", _identity_in_request)
acts_for_identified_user = Check("acts for the authenticated customer", _acts_for_identified_user)
user_owns_order = Check("the customer owns the order", _user_owns_order)
order_status_allows = Check("order status allows the change", _order_status_allows)
items_in_order = Check("items belong to the order", _items_in_order)
new_items_valid = Check("new items: same product, other variant, available", _new_items_valid)
payment_method_owned = Check("payment method belongs to the customer", _payment_method_owned)
refund_destination = Check("refund to the original method or a gift card", _refund_destination)
cancel_reason_allowed = Check("cancel reason allowed", _cancel_reason_allowed)
matches_request = Check("change matches the customer's request", _matches_request)

# Cheapest and most basic first: the first failing check is the reason fed back.
ORDER_CHECKS: tuple[Check, ...] = (
    authenticated_first,
    identity_in_request,
    acts_for_identified_user,
    user_owns_order,
    order_status_allows,
    items_in_order,
    new_items_valid,
    payment_method_owned,
    refund_destination,
    cancel_reason_allowed,
    matches_request,
)
