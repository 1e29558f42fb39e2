"""Fixtures and case pickers shared by the retail tool tests.

The database is built from the shared tau2 db.json once per session and copied (SQLite
backup, milliseconds) into each test's tmp_path. Cases are picked from the data by what a
test needs (a pending order paid by a gift card, a delivered item with another available
variant, ...), so tests keep their meaning if the data changes; a pick asserts it found one.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tierflow.tools.datasets import dataset_file
from tierflow.tools.retail import RetailDB, RetailToolError, build_retail_db, call_retail_tool, copy_retail_db, state_hash

__all__ = [
    "ADDRESS",
    "TAU2_TOOL_ARGS",
    "Source",
    "balance",
    "built_db",
    "call",
    "conn",
    "db",
    "gift_card_swap_case",
    "methods",
    "orders",
    "paid_by",
    "pick",
    "refused",
    "source",
    "source_path",
    "swap_case",
    "variants",
]

Source = dict[str, Any]

TAU2_TOOL_ARGS = {
    "find_user_id_by_email": {"email"},
    "find_user_id_by_name_zip": {"first_name", "last_name", "zip"},
    "get_user_details": {"user_id"},
    "get_order_details": {"order_id"},
    "get_product_details": {"product_id"},
    "get_item_details": {"item_id"},
    "list_all_product_types": set(),
    "calculate": {"expression"},
    "cancel_pending_order": {"order_id", "reason"},
    "modify_pending_order_address": {"order_id", "address1", "address2", "city", "state", "country", "zip"},
    "modify_pending_order_items": {"order_id", "item_ids", "new_item_ids", "payment_method_id"},
    "modify_pending_order_payment": {"order_id", "payment_method_id"},
    "modify_user_address": {"user_id", "address1", "address2", "city", "state", "country", "zip"},
    "return_delivered_order_items": {"order_id", "item_ids", "payment_method_id"},
    "exchange_delivered_order_items": {"order_id", "item_ids", "new_item_ids", "payment_method_id"},
    "transfer_to_human_agents": {"summary"},
}
ADDRESS = {"address1": "1 Test Way", "address2": "", "city": "Austin", "state": "TX", "country": "USA", "zip": "78701"}


@pytest.fixture(scope="session")
def source_path() -> Path:
    return dataset_file("tau2_retail", "db.json")


@pytest.fixture(scope="session")
def source(source_path: Path) -> Source:
    return json.loads(source_path.read_text())


@pytest.fixture(scope="session")
def built_db(source_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    started = time.perf_counter()
    path = build_retail_db(source_path, tmp_path_factory.mktemp("retail") / "retail.sqlite")
    print(f"\nbuilt the retail database in {time.perf_counter() - started:.3f} s")
    return path


@pytest.fixture
def db(built_db: Path, tmp_path: Path) -> RetailDB:
    return RetailDB(copy_retail_db(built_db, tmp_path / "retail.sqlite"))


@pytest.fixture
def conn(db: RetailDB) -> Iterator[sqlite3.Connection]:
    with db.connection() as connection:
        yield connection


def call(conn: sqlite3.Connection, name: str, **arguments: Any) -> Any:
    return call_retail_tool(conn, name, arguments)


def refused(conn: sqlite3.Connection, name: str, kind: str, **arguments: Any) -> RetailToolError:
    """The call is refused with ``kind`` and leaves the state untouched."""
    before = state_hash(conn)
    with pytest.raises(RetailToolError) as caught:
        call_retail_tool(conn, name, arguments)
    assert caught.value.kind == kind, str(caught.value)
    assert caught.value.tool == name
    assert state_hash(conn) == before
    return caught.value


def pick(candidates: Iterator[Any], what: str) -> Any:
    found = next(candidates, None)
    assert found is not None, f"db.json has no {what}"
    return found


def paid_by(order: dict[str, Any]) -> str:
    return order["payment_history"][0]["payment_method_id"]


def methods(source: Source, user_id: str, kind: str | None = None) -> dict[str, dict[str, Any]]:
    found = source["users"][user_id]["payment_methods"]
    return {key: m for key, m in found.items() if kind is None or m["source"] == kind}


def variants(source: Source, item: dict[str, Any], *, available: bool) -> list[dict[str, Any]]:
    product = source["products"][item["product_id"]]
    return [v for v in product["variants"].values() if v["item_id"] != item["item_id"] and v["available"] == available]


def orders(source: Source, status: str) -> Iterator[dict[str, Any]]:
    return (o for o in source["orders"].values() if o["status"] == status)


def swap_case(source: Source, status: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(order, one of its items, an available other variant of that item)."""
    return pick(
        ((o, i, variants(source, i, available=True)[0]) for o in orders(source, status) for i in o["items"]
         if variants(source, i, available=True)),
        f"{status} order with a swappable item",
    )


def gift_card_swap_case(source: Source, *, covered: bool) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]:
    """A pending order item, a dearer variant, and a user gift card that does (not) cover the difference."""
    def cases() -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]]:
        for o in orders(source, "pending"):
            for card_id, card in methods(source, o["user_id"], "gift_card").items():
                for item in o["items"]:
                    for new in variants(source, item, available=True):
                        difference = new["price"] - item["price"]
                        if difference > 0 and (difference <= card["balance"]) == covered:
                            yield o, item, new, card_id
    return pick(cases(), f"gift card {'covering' if covered else 'not covering'} a price difference")


def balance(conn: sqlite3.Connection, payment_method_id: str) -> float:
    return conn.execute("SELECT balance FROM payment_methods WHERE payment_method_id = ?",
                        (payment_method_id,)).fetchone()[0]
