"""The retail tools on a real SQLite database built from tau2's db.json: the datasets
folder, building and opening the database, state hashing, every read tool, and every write
tool with the policy checks it enforces.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.unit.retail_fixtures import (
    ADDRESS,
    Source,
    balance,
    call,
    gift_card_swap_case,
    methods,
    orders,
    paid_by,
    pick,
    refused,
    swap_case,
    variants,
)
from tierflow.model_tiers.errors import ConfigError
from tierflow.tools.datasets import DATASETS_ENV_VAR, dataset_file, datasets_dir
from tierflow.tools.retail import RetailDB, build_retail_db, copy_retail_db, open_retail_db, snapshot_state

# --- datasets folder -------------------------------------------------------------------------


def test_datasets_dir_honours_the_env_var_and_names_it_when_wrong(tmp_path: Path) -> None:
    assert datasets_dir({DATASETS_ENV_VAR: str(tmp_path)}) == tmp_path
    with pytest.raises(ConfigError, match=DATASETS_ENV_VAR):
        datasets_dir({DATASETS_ENV_VAR: str(tmp_path / "absent")})
    with pytest.raises(ConfigError, match=r"tau2_retail/db\.json"):
        dataset_file("tau2_retail", "db.json", env={DATASETS_ENV_VAR: str(tmp_path)})
    assert (datasets_dir({}) / "tau2_retail" / "db.json").is_file()


# --- building, opening, state ----------------------------------------------------------------


def test_build_round_trips_every_user_order_and_product(conn: sqlite3.Connection, source: Source) -> None:
    snapshot = snapshot_state(conn)
    assert snapshot["users"] == source["users"]
    assert snapshot["orders"] == source["orders"]
    for product_id, product in source["products"].items():
        assert call(conn, "get_product_details", product_id=product_id) == product


def test_build_is_atomic_and_refuses_a_bad_source(tmp_path: Path, source_path: Path) -> None:
    bad = tmp_path / "db.json"
    bad.write_text('{"users": {}}')
    out = tmp_path / "out" / "retail.sqlite"
    with pytest.raises(ConfigError, match=r"not a tau2 retail db\.json"):
        build_retail_db(bad, out)
    assert not out.exists()
    ghost_order = {"order_id": "#W1", "user_id": "ghost", "address": {}, "items": [], "status": "pending",
                   "fulfillments": [], "payment_history": []}
    bad.write_text(json.dumps({"products": {}, "users": {}, "orders": {"#W1": ghost_order}}))
    with pytest.raises(ConfigError, match="dangling"):
        build_retail_db(bad, out)
    assert list(out.parent.iterdir()) == []  # the half-built temporary file is gone
    build_retail_db(source_path, out)
    build_retail_db(source_path, out)  # rebuilding replaces the file in one rename
    assert [p.name for p in out.parent.iterdir()] == ["retail.sqlite"]


def test_open_builds_on_first_use_under_tierflow_home(source_path: Path, tmp_path: Path) -> None:
    conn = open_retail_db(source=source_path)  # conftest points TIERFLOW_HOME at tmp_path
    try:
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 1000
    finally:
        conn.close()
    assert (tmp_path / "tierflow-home" / "retail" / "retail.sqlite").is_file()


def test_open_refuses_a_file_that_is_not_a_retail_db(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).close()
    with pytest.raises(ConfigError, match="delete it to rebuild"):
        open_retail_db(other)


def test_state_hash_depends_on_the_state_not_on_the_path_to_it(db: RetailDB, tmp_path: Path, source: Source) -> None:
    order = pick((o for o in orders(source, "delivered") if len(o["items"]) >= 2), "delivered order with 2 items")
    item_ids = [item["item_id"] for item in order["items"]]
    twin = RetailDB(copy_retail_db(db.path, tmp_path / "twin.sqlite"))
    initial = db.state_hash()
    assert twin.state_hash() == initial
    for target, ids in ((db, item_ids), (twin, list(reversed(item_ids)))):
        with target.connection() as conn:
            call(conn, "return_delivered_order_items", order_id=order["order_id"], item_ids=ids,
                 payment_method_id=paid_by(order))
    assert db.state_hash() == twin.state_hash() != initial


# --- reads ---------------------------------------------------------------------------------------


def test_user_lookups(conn: sqlite3.Connection, source: Source) -> None:
    user = next(iter(source["users"].values()))
    assert call(conn, "find_user_id_by_email", email=user["email"]) == user["user_id"]
    assert call(conn, "find_user_id_by_email", email=f" {user['email'].upper()} ") == user["user_id"]
    name = user["name"]
    found = call(conn, "find_user_id_by_name_zip", first_name=name["first_name"].lower(),
                 last_name=name["last_name"], zip=user["address"]["zip"])
    assert found == user["user_id"]
    assert call(conn, "get_user_details", user_id=user["user_id"]) == user
    refused(conn, "find_user_id_by_email", "not_found", email="nobody@example.com")
    refused(conn, "find_user_id_by_name_zip", "not_found", first_name=name["first_name"],
            last_name=name["last_name"], zip="00000")
    refused(conn, "get_user_details", "not_found", user_id="no_such_user_1")
    refused(conn, "find_user_id_by_email", "invalid_argument", email="")
    refused(conn, "find_user_id_by_name_zip", "invalid_argument", first_name="A", last_name="B", zip=12345)


def test_order_product_and_item_lookups(conn: sqlite3.Connection, source: Source) -> None:
    order = next(iter(source["orders"].values()))
    assert call(conn, "get_order_details", order_id=order["order_id"]) == order
    # An id written without its '#' is the same order (the models drop it); any other
    # unknown id is refused with a hint about the format.
    assert call(conn, "get_order_details", order_id=order["order_id"].lstrip("#")) == order
    error = refused(conn, "get_order_details", "not_found", order_id="#W0000001")
    assert "'#'" in str(error)
    product = next(iter(source["products"].values()))
    variant = next(iter(product["variants"].values()))
    assert call(conn, "get_item_details", item_id=variant["item_id"]) == {
        **variant, "product_id": product["product_id"], "name": product["name"],
    }
    assert "get_item_details" in str(refused(conn, "get_product_details", "not_found", product_id=variant["item_id"]))
    assert "get_product_details" in str(refused(conn, "get_item_details", "not_found", item_id=product["product_id"]))
    types = call(conn, "list_all_product_types")
    assert types == {p["name"]: p["product_id"] for p in sorted(source["products"].values(), key=lambda p: p["name"])}
    assert list(types) == sorted(types)
    refused(conn, "list_all_product_types", "invalid_argument", product_id="1")


@pytest.mark.parametrize(
    ("expression", "value"),
    [("3131.1 + 4777.75 + 367.38", 8276.23), ("135.24 - 153.23", -17.99), ("(2 + 3) * 4 / 3", 6.67), ("-2", -2.0)],
)
def test_calculate(conn: sqlite3.Connection, expression: str, value: float) -> None:
    assert call(conn, "calculate", expression=expression) == value


@pytest.mark.parametrize("expression", ["__import__('os')", "2 ** 8", "1 / 0", "2 +", "1e400", "9" * 400])
def test_calculate_refuses_anything_but_arithmetic(conn: sqlite3.Connection, expression: str) -> None:
    refused(conn, "calculate", "invalid_argument", expression=expression)


def test_transfer_to_human_agents(conn: sqlite3.Connection) -> None:
    assert call(conn, "transfer_to_human_agents", summary="wants a refund to another card") == "Transfer successful"
    refused(conn, "transfer_to_human_agents", "invalid_argument", summary="")


# --- writes: pending orders -----------------------------------------------------------------------


def test_cancel_refunds_a_gift_card_at_once(conn: sqlite3.Connection, source: Source) -> None:
    order = pick((o for o in orders(source, "pending") if paid_by(o).startswith("gift_card")), "gift-card order")
    card, total = paid_by(order), order["payment_history"][0]["amount"]
    before = balance(conn, card)
    result = call(conn, "cancel_pending_order", order_id=order["order_id"], reason="ordered by mistake")
    assert result["status"] == "cancelled" and result["cancel_reason"] == "ordered by mistake"
    assert result["payment_history"][-1] == {"transaction_type": "refund", "amount": total, "payment_method_id": card}
    assert balance(conn, card) == round(before + total, 2)
    assert call(conn, "get_order_details", order_id=order["order_id"]) == result
    refused(conn, "cancel_pending_order", "policy_violation", order_id=order["order_id"], reason="no longer needed")


def test_cancel_refuses_bad_reasons_statuses_and_ids(conn: sqlite3.Connection, source: Source) -> None:
    pending = next(orders(source, "pending"))["order_id"]
    refused(conn, "cancel_pending_order", "invalid_argument", order_id=pending, reason="found it cheaper")
    for status in ("processed", "delivered", "cancelled"):
        error = refused(conn, "cancel_pending_order", "policy_violation", order_id=next(orders(source, status))["order_id"],
                        reason="no longer needed")
        assert f"'{status}'" in str(error)
    refused(conn, "cancel_pending_order", "not_found", order_id="#W0000000", reason="no longer needed")


def test_modify_pending_order_address(conn: sqlite3.Connection, source: Source) -> None:
    pending = next(orders(source, "pending"))["order_id"]
    assert call(conn, "modify_pending_order_address", order_id=pending, **ADDRESS)["address"] == ADDRESS
    assert call(conn, "get_order_details", order_id=pending)["status"] == "pending"
    refused(conn, "modify_pending_order_address", "policy_violation",
            order_id=next(orders(source, "delivered"))["order_id"], **ADDRESS)
    refused(conn, "modify_pending_order_address", "invalid_argument", order_id=pending, **{**ADDRESS, "city": ""})


def test_modify_pending_order_payment(conn: sqlite3.Connection, source: Source) -> None:
    order, card = pick(((o, c) for o in orders(source, "pending") if paid_by(o).startswith("gift_card")
                        for c in methods(source, o["user_id"], "credit_card")), "gift-card order of a card holder")
    original, total = paid_by(order), order["payment_history"][0]["amount"]
    before = balance(conn, original)
    refused(conn, "modify_pending_order_payment", "policy_violation", order_id=order["order_id"],
            payment_method_id=original)
    result = call(conn, "modify_pending_order_payment", order_id=order["order_id"], payment_method_id=card)
    assert result["status"] == "pending"
    assert result["payment_history"][-2:] == [
        {"transaction_type": "payment", "amount": total, "payment_method_id": card},
        {"transaction_type": "refund", "amount": total, "payment_method_id": original},
    ]
    assert balance(conn, original) == round(before + total, 2)
    stranger = next(m for u in source["users"].values() if u["user_id"] != order["user_id"] for m in u["payment_methods"])
    refused(conn, "modify_pending_order_payment", "not_found", order_id=order["order_id"], payment_method_id=stranger)


def test_modify_payment_to_a_gift_card_needs_the_whole_total(conn: sqlite3.Connection, source: Source) -> None:
    order, card = pick(((o, c) for o in orders(source, "pending") for c, m in methods(source, o["user_id"], "gift_card").items()
                        if c != paid_by(o) and m["balance"] < o["payment_history"][0]["amount"]), "small gift card")
    error = refused(conn, "modify_pending_order_payment", "policy_violation", order_id=order["order_id"],
                    payment_method_id=card)
    assert "balance" in str(error)


def test_modify_items_once_with_the_price_difference(conn: sqlite3.Connection, source: Source) -> None:
    order, item, new, card = gift_card_swap_case(source, covered=True)
    difference = round(new["price"] - item["price"], 2)
    before = balance(conn, card)
    result = call(conn, "modify_pending_order_items", order_id=order["order_id"], item_ids=[item["item_id"]],
                  new_item_ids=[new["item_id"]], payment_method_id=card)
    assert result["status"] == "pending (item modified)"
    changed = [i for i in result["items"] if i["item_id"] == new["item_id"]]
    assert changed and changed[0]["price"] == new["price"] and changed[0]["options"] == new["options"]
    assert result["payment_history"][-1] == {"transaction_type": "payment", "amount": difference, "payment_method_id": card}
    assert balance(conn, card) == round(before - difference, 2)
    again = dict(order_id=order["order_id"], item_ids=[new["item_id"]], new_item_ids=[item["item_id"]], payment_method_id=card)
    assert "already modified" in str(refused(conn, "modify_pending_order_items", "policy_violation", **again))
    refused(conn, "cancel_pending_order", "policy_violation", order_id=order["order_id"], reason="no longer needed")
    refused(conn, "modify_pending_order_address", "policy_violation", order_id=order["order_id"], **ADDRESS)


def test_modify_items_refuses_a_gift_card_that_does_not_cover_it(conn: sqlite3.Connection, source: Source) -> None:
    order, item, new, card = gift_card_swap_case(source, covered=False)
    refused(conn, "modify_pending_order_items", "policy_violation", order_id=order["order_id"],
            item_ids=[item["item_id"]], new_item_ids=[new["item_id"]], payment_method_id=card)


@pytest.mark.parametrize("tool", ["modify_pending_order_items", "exchange_delivered_order_items"])
def test_item_swaps_refuse_what_the_policy_forbids(conn: sqlite3.Connection, source: Source, tool: str) -> None:
    status = "pending" if tool.startswith("modify") else "delivered"
    order, item, new = swap_case(source, status)
    base = dict(order_id=order["order_id"], payment_method_id=paid_by(order))
    other_product = pick((v for p in source["products"].values() if p["product_id"] != item["product_id"]
                          for v in p["variants"].values() if v["available"]), "item of another product")
    refused(conn, tool, "policy_violation", **base, item_ids=[item["item_id"]], new_item_ids=[other_product["item_id"]])
    refused(conn, tool, "policy_violation", **base, item_ids=[item["item_id"]], new_item_ids=[item["item_id"]])
    refused(conn, tool, "not_found", **base, item_ids=[new["item_id"]], new_item_ids=[item["item_id"]])
    refused(conn, tool, "not_found", **base, item_ids=[item["item_id"]] * 9, new_item_ids=[new["item_id"]] * 9)
    refused(conn, tool, "not_found", **base, item_ids=[item["item_id"]], new_item_ids=["0000000000"])
    refused(conn, tool, "invalid_argument", **base, item_ids=[item["item_id"]], new_item_ids=[])
    refused(conn, tool, "invalid_argument", **base, item_ids=[item["item_id"]], new_item_ids=[new["item_id"]] * 2)
    refused(conn, tool, "policy_violation", order_id=next(orders(source, "processed"))["order_id"],
            item_ids=[item["item_id"]], new_item_ids=[new["item_id"]], payment_method_id=paid_by(order))
    o, i, gone = pick(((o, i, v) for o in orders(source, status) for i in o["items"]
                       for v in variants(source, i, available=False)), f"{status} item with an unavailable variant")
    error = refused(conn, tool, "policy_violation", order_id=o["order_id"], item_ids=[i["item_id"]],
                    new_item_ids=[gone["item_id"]], payment_method_id=paid_by(o))
    assert "not available" in str(error)


# --- writes: delivered orders and users ----------------------------------------------------------


def test_return_to_the_original_method_or_a_gift_card(conn: sqlite3.Connection, source: Source, db: RetailDB,
                                                      tmp_path: Path) -> None:
    order, card = pick(((o, c) for o in orders(source, "delivered") if not paid_by(o).startswith("gift_card")
                        for c in methods(source, o["user_id"], "gift_card")), "delivered order of a gift card holder")
    items = [i["item_id"] for i in order["items"]][:2]
    other = RetailDB(copy_retail_db(db.path, tmp_path / "other.sqlite"))
    result = call(conn, "return_delivered_order_items", order_id=order["order_id"], item_ids=items,
                  payment_method_id=paid_by(order))
    assert result["status"] == "return requested"
    assert result["return_items"] == sorted(items) and result["return_payment_method_id"] == paid_by(order)
    assert result["payment_history"] == order["payment_history"]  # the refund waits for the items
    refused(conn, "return_delivered_order_items", "policy_violation", order_id=order["order_id"], item_ids=items,
            payment_method_id=paid_by(order))
    with other.connection() as fresh:
        assert call(fresh, "return_delivered_order_items", order_id=order["order_id"], item_ids=items,
                    payment_method_id=card)["return_payment_method_id"] == card


def test_return_refuses_another_non_gift_card_method(conn: sqlite3.Connection, source: Source) -> None:
    order, method = pick(((o, m) for o in orders(source, "delivered") for m, d in methods(source, o["user_id"]).items()
                          if m != paid_by(o) and d["source"] != "gift_card"), "user with two non-gift methods")
    error = refused(conn, "return_delivered_order_items", "policy_violation", order_id=order["order_id"],
                    item_ids=[order["items"][0]["item_id"]], payment_method_id=method)
    assert "original payment method" in str(error)
    refused(conn, "return_delivered_order_items", "policy_violation", order_id=next(orders(source, "pending"))["order_id"],
            item_ids=["1"], payment_method_id=method)


def test_exchange_records_the_request_and_the_difference(conn: sqlite3.Connection, source: Source) -> None:
    order, item, new = swap_case(source, "delivered")
    result = call(conn, "exchange_delivered_order_items", order_id=order["order_id"], item_ids=[item["item_id"]],
                  new_item_ids=[new["item_id"]], payment_method_id=paid_by(order))
    assert result["status"] == "exchange requested"
    assert result["exchange_items"] == [item["item_id"]] and result["exchange_new_items"] == [new["item_id"]]
    assert result["exchange_price_difference"] == round(new["price"] - item["price"], 2)
    assert result["items"] == order["items"]
    refused(conn, "exchange_delivered_order_items", "policy_violation", order_id=order["order_id"],
            item_ids=[item["item_id"]], new_item_ids=[new["item_id"]], payment_method_id=paid_by(order))


def test_modify_user_address(conn: sqlite3.Connection, source: Source) -> None:
    user = next(iter(source["users"].values()))
    assert call(conn, "modify_user_address", user_id=user["user_id"], **ADDRESS)["address"] == ADDRESS
    assert call(conn, "get_user_details", user_id=user["user_id"])["address"] == ADDRESS
    assert call(conn, "find_user_id_by_name_zip", first_name=user["name"]["first_name"],
                last_name=user["name"]["last_name"], zip=ADDRESS["zip"]) == user["user_id"]
    refused(conn, "modify_user_address", "not_found", user_id="nobody_0", **ADDRESS)
