"""Read-only retail tools (and the two tools that touch no data: calculate, transfer).

Every tool takes an open connection and its validated arguments (the tool's model in
`schemas`; `tools.call_retail_tool` validates a call by name), and returns JSON-able data
shaped like tau2's records. Unknown ids raise ``RetailToolError`` with
kind ``not_found`` and a hint about how to find the right id.
"""

from __future__ import annotations

import ast
import math
import operator
import sqlite3
from collections.abc import Callable
from typing import Any

from tierflow.tools.retail.db import load_item, load_order, load_product, load_user
from tierflow.tools.retail.errors import RetailToolError, order_not_found, require_found, user_not_found
from tierflow.tools.retail.schemas import (
    CalculateArgs,
    FindUserIdByEmailArgs,
    FindUserIdByNameZipArgs,
    GetItemDetailsArgs,
    GetOrderDetailsArgs,
    GetProductDetailsArgs,
    GetUserDetailsArgs,
    ListAllProductTypesArgs,
    TransferToHumanAgentsArgs,
)

__all__ = [
    "TRANSFER_MESSAGE",
    "calculate",
    "find_user_id_by_email",
    "find_user_id_by_name_zip",
    "get_item_details",
    "get_order_details",
    "get_product_details",
    "get_user_details",
    "list_all_product_types",
    "transfer_to_human_agents",
]

TRANSFER_MESSAGE = "Transfer successful"


def _single_user_id(tool: str, rows: list[sqlite3.Row], looked_for: str) -> str:
    if not rows:
        raise RetailToolError(
            tool,
            f"no user found with {looked_for}; ask the user to check it, or authenticate with "
            "the other method (email, or first name + last name + zip)",
            kind="not_found",
        )
    if len(rows) > 1:
        raise RetailToolError(
            tool,
            f"{len(rows)} users match {looked_for}; authenticate by email instead",
            kind="conflict",
        )
    return str(rows[0]["user_id"])


def find_user_id_by_email(conn: sqlite3.Connection, args: FindUserIdByEmailArgs) -> str:
    """The user id of the user with this email (case-insensitive, surrounding spaces ignored)."""
    rows = conn.execute(
        "SELECT user_id FROM users WHERE email = ? COLLATE NOCASE ORDER BY position", (args.email.strip(),)
    ).fetchall()
    return _single_user_id("find_user_id_by_email", rows, f"email {args.email!r}")


def find_user_id_by_name_zip(conn: sqlite3.Connection, args: FindUserIdByNameZipArgs) -> str:
    """The user id of the user with this name (case-insensitive) whose default address has this zip."""
    rows = conn.execute(
        "SELECT user_id FROM users WHERE first_name = ? COLLATE NOCASE AND last_name = ? COLLATE NOCASE "
        "AND json_extract(address, '$.zip') = ? ORDER BY position",
        (args.first_name.strip(), args.last_name.strip(), args.zip.strip()),
    ).fetchall()
    return _single_user_id(
        "find_user_id_by_name_zip", rows, f"name {args.first_name!r} {args.last_name!r} and zip {args.zip!r}"
    )


def get_user_details(conn: sqlite3.Connection, args: GetUserDetailsArgs) -> dict[str, Any]:
    """The user's profile: name, default address, email, payment methods, order ids."""
    return require_found("get_user_details", load_user(conn, args.user_id), user_not_found(args.user_id))


def get_order_details(conn: sqlite3.Connection, args: GetOrderDetailsArgs) -> dict[str, Any]:
    """The order: user, address, items, status, fulfillments, payment history."""
    return require_found("get_order_details", load_order(conn, args.order_id), order_not_found(args.order_id))


def get_product_details(conn: sqlite3.Connection, args: GetProductDetailsArgs) -> dict[str, Any]:
    """The product type with all its variant items (options, availability, price)."""
    product = load_product(conn, args.product_id)
    is_item = product is None and load_item(conn, args.product_id) is not None
    hint = (
        " (that is an item id: use get_item_details, or the item's product_id)"
        if is_item
        else "; list_all_product_types gives every product id"
    )
    return require_found("get_product_details", product, f"product {args.product_id!r} not found{hint}")


def get_item_details(conn: sqlite3.Connection, args: GetItemDetailsArgs) -> dict[str, Any]:
    """One variant item: options, availability, price, and its product's id and name."""
    item = load_item(conn, args.item_id)
    is_product = item is None and load_product(conn, args.item_id) is not None
    hint = " (that is a product id: use get_product_details)" if is_product else "; get_product_details lists a product's item ids"
    return require_found("get_item_details", item, f"item {args.item_id!r} not found{hint}")


def list_all_product_types(conn: sqlite3.Connection, args: ListAllProductTypesArgs) -> dict[str, str]:
    """Every product type: name -> product id, sorted by name (the tool takes no arguments)."""
    rows = conn.execute("SELECT name, product_id FROM products ORDER BY name, product_id").fetchall()
    return {row["name"]: row["product_id"] for row in rows}


_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_ALLOWED_CHARACTERS = frozenset("0123456789+-*/(). \t")


def _evaluate(node: ast.AST) -> float:
    # A number, but not a bool (True is an int to isinstance).
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    raise ValueError(f"unsupported syntax {type(node).__name__}")


def calculate(conn: sqlite3.Connection, args: CalculateArgs) -> float:
    """The value of an arithmetic expression (+, -, *, /, parentheses), rounded to 2 decimals.

    ``conn`` is unused; every retail tool takes one so they can be called uniformly.
    The expression is parsed, never executed: only numbers and the four operators pass.
    """
    unexpected = sorted(set(args.expression) - _ALLOWED_CHARACTERS)
    if unexpected:
        raise RetailToolError(
            "calculate",
            f"invalid characters in expression: {''.join(unexpected)!r}; use only numbers, + - * /, parentheses and spaces",
        )
    try:
        value = _evaluate(ast.parse(args.expression.strip(), mode="eval").body)
    except ZeroDivisionError as exc:
        raise RetailToolError("calculate", f"division by zero in {args.expression!r}") from exc
    except (SyntaxError, ValueError, OverflowError, RecursionError) as exc:
        raise RetailToolError("calculate", f"not a valid arithmetic expression: {args.expression!r} ({exc})") from exc
    if not math.isfinite(value):
        raise RetailToolError("calculate", f"the result of {args.expression!r} is not a finite number")
    return round(value, 2)


def transfer_to_human_agents(conn: sqlite3.Connection, args: TransferToHumanAgentsArgs) -> str:
    """Hand the conversation to a human agent, with a summary of the user's issue.

    Only when the request cannot be handled within the scope of the tools. ``conn`` is
    unused; the transfer itself is the graph's business (it ends the agent's turn).
    """
    return TRANSFER_MESSAGE
