"""Retail tools that change the database, implementing tau2's retail policy.

Rules enforced here (policy.md):

* cancel / modify only ``pending`` orders; return / exchange only ``delivered`` ones;
* modifying a pending order's items happens once: the order becomes
  ``pending (item modified)`` and can no longer be modified or cancelled;
* a new item must be an available variant of the same product, different from the old one;
* payment methods must be the order's user's; a gift card must cover what it pays;
* a cancellation refunds what was paid to where it came from (a gift card at once);
* a return refunds to the original payment method or an existing gift card.

Money follows the data model: ``payment_history`` entries ``{"transaction_type":
"payment"|"refund", "amount", "payment_method_id"}`` and gift card ``balance``.
Returns and exchanges are only *requested* (the items have not come back yet), so they
record what was asked and move no money.

Each tool takes an open connection and its validated arguments (the tool's model in
`schemas`), and `idempotency_key`; `write_tool` runs its body in one ``BEGIN IMMEDIATE`` transaction. With an ``idempotency_key`` the
key, the call and its result are stored in that same transaction; calling again with the
key returns the stored result and changes nothing.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from tierflow.tools.retail.db import load_user
from tierflow.tools.retail.errors import RetailToolError, require_found, user_not_found
from tierflow.tools.retail.schemas import (
    CancelPendingOrderArgs,
    ExchangeDeliveredOrderItemsArgs,
    ModifyPendingOrderAddressArgs,
    ModifyPendingOrderItemsArgs,
    ModifyPendingOrderPaymentArgs,
    ModifyUserAddressArgs,
    ReturnDeliveredOrderItemsArgs,
)
from tierflow.tools.retail.write_support import (
    STATUS_CANCELLED,
    STATUS_DELIVERED,
    STATUS_EXCHANGE_REQUESTED,
    STATUS_ITEMS_MODIFIED,
    STATUS_PENDING,
    STATUS_RETURN_REQUESTED,
    adjust_gift_card,
    checked_replacements,
    net_paid,
    order_in_status,
    require_gift_card_covers,
    require_items_in_order,
    save_order,
    sorted_pairs,
    user_payment_method,
    write_tool,
)

__all__ = [
    "cancel_pending_order",
    "exchange_delivered_order_items",
    "modify_pending_order_address",
    "modify_pending_order_items",
    "modify_pending_order_payment",
    "modify_user_address",
    "return_delivered_order_items",
]

# --- the tools -----------------------------------------------------------------------------


@write_tool
def cancel_pending_order(conn: sqlite3.Connection, args: CancelPendingOrderArgs, tool: str) -> dict[str, Any]:
    """Cancel a pending order ('no longer needed' or 'ordered by mistake'); refund what was
    paid to the methods that paid it (gift cards at once). Returns the updated order."""
    order = order_in_status(conn, tool, args.order_id, STATUS_PENDING, "cancelled")
    for method, amount in net_paid(order).items():
        order["payment_history"].append(
            {"transaction_type": "refund", "amount": amount, "payment_method_id": method}
        )
        adjust_gift_card(conn, method, amount)
    order["status"] = STATUS_CANCELLED
    order["cancel_reason"] = args.reason
    save_order(conn, order)
    return order


@write_tool
def modify_pending_order_address(conn: sqlite3.Connection, args: ModifyPendingOrderAddressArgs, tool: str) -> dict[str, Any]:
    """Change the shipping address of a pending order. Returns the updated order."""
    order = order_in_status(conn, tool, args.order_id, STATUS_PENDING, "modified")
    order["address"] = args.address()
    save_order(conn, order)
    return order


@write_tool
def modify_pending_order_payment(conn: sqlite3.Connection, args: ModifyPendingOrderPaymentArgs, tool: str) -> dict[str, Any]:
    """Pay a pending order with another single payment method of the user; the original
    method is refunded (a gift card at once). The order stays pending."""
    order = order_in_status(conn, tool, args.order_id, STATUS_PENDING, "modified")
    paid = net_paid(order)
    if len(paid) != 1:
        raise RetailToolError(
            tool,
            f"order {args.order_id} is paid by {len(paid)} payment methods, not one; "
            "its payment cannot be switched, transfer to a human agent",
            kind="policy_violation",
        )
    (original, total), = paid.items()
    if args.payment_method_id == original:
        raise RetailToolError(
            tool,
            f"{original} is already the order's payment method; the new method must be a different one",
            kind="policy_violation",
        )
    method = user_payment_method(conn, tool, order["user_id"], args.payment_method_id)
    require_gift_card_covers(tool, method, total, "the order total")
    order["payment_history"].extend(
        [
            {"transaction_type": "payment", "amount": total, "payment_method_id": args.payment_method_id},
            {"transaction_type": "refund", "amount": total, "payment_method_id": original},
        ]
    )
    adjust_gift_card(conn, args.payment_method_id, -total)
    adjust_gift_card(conn, original, total)
    save_order(conn, order)
    return order


@write_tool
def modify_pending_order_items(conn: sqlite3.Connection, args: ModifyPendingOrderItemsArgs, tool: str) -> dict[str, Any]:
    """Change items of a pending order to other available variants of the same products,
    paying or refunding the price difference through the given payment method. Allowed
    once: the order becomes 'pending (item modified)'. Returns the updated order."""
    order = order_in_status(conn, tool, args.order_id, STATUS_PENDING, "modified")
    replacements, difference = checked_replacements(conn, tool, order, args.item_ids, args.new_item_ids)
    method = user_payment_method(conn, tool, order["user_id"], args.payment_method_id)
    require_gift_card_covers(tool, method, difference, "the price difference")
    replaced: set[int] = set()
    for old_id, new in zip(args.item_ids, replacements, strict=True):
        index = next(
            i for i, item in enumerate(order["items"]) if item["item_id"] == old_id and i not in replaced
        )
        replaced.add(index)
        order["items"][index].update(item_id=new["item_id"], price=new["price"], options=new["options"])
    if difference != 0:
        order["payment_history"].append(
            {
                "transaction_type": "payment" if difference > 0 else "refund",
                "amount": abs(difference),
                "payment_method_id": args.payment_method_id,
            }
        )
        adjust_gift_card(conn, args.payment_method_id, -difference)
    order["status"] = STATUS_ITEMS_MODIFIED
    save_order(conn, order)
    return order


@write_tool
def modify_user_address(conn: sqlite3.Connection, args: ModifyUserAddressArgs, tool: str) -> dict[str, Any]:
    """Change the user's default address. Returns the updated user."""
    user = require_found(tool, load_user(conn, args.user_id), user_not_found(args.user_id))
    user["address"] = args.address()
    conn.execute(
        "UPDATE users SET address = ? WHERE user_id = ?",
        (json.dumps(user["address"], ensure_ascii=False), args.user_id),
    )
    return user


@write_tool
def return_delivered_order_items(conn: sqlite3.Connection, args: ReturnDeliveredOrderItemsArgs, tool: str) -> dict[str, Any]:
    """Request the return of items of a delivered order; the refund goes to the original
    payment method or an existing gift card. The order becomes 'return requested'."""
    order = order_in_status(conn, tool, args.order_id, STATUS_DELIVERED, "returned")
    require_items_in_order(tool, order, args.item_ids)
    method = user_payment_method(conn, tool, order["user_id"], args.payment_method_id)
    original = [e["payment_method_id"] for e in order["payment_history"] if e["transaction_type"] == "payment"]
    if method["source"] != "gift_card" and args.payment_method_id not in original:
        raise RetailToolError(
            tool,
            f"the refund must go to the original payment method ({', '.join(dict.fromkeys(original))}) "
            f"or an existing gift card, not {args.payment_method_id}",
            kind="policy_violation",
        )
    order["status"] = STATUS_RETURN_REQUESTED
    order["return_items"] = sorted(args.item_ids)
    order["return_payment_method_id"] = args.payment_method_id
    save_order(conn, order)
    return order


@write_tool
def exchange_delivered_order_items(conn: sqlite3.Connection, args: ExchangeDeliveredOrderItemsArgs, tool: str) -> dict[str, Any]:
    """Request the exchange of items of a delivered order for other available variants of
    the same products; the price difference is paid or refunded through the given payment
    method (a gift card must cover it). The order becomes 'exchange requested'."""
    order = order_in_status(conn, tool, args.order_id, STATUS_DELIVERED, "exchanged")
    _, difference = checked_replacements(conn, tool, order, args.item_ids, args.new_item_ids)
    method = user_payment_method(conn, tool, order["user_id"], args.payment_method_id)
    require_gift_card_covers(tool, method, difference, "the price difference")
    old_ids, new_ids = sorted_pairs(args.item_ids, args.new_item_ids)
    order["status"] = STATUS_EXCHANGE_REQUESTED
    order["exchange_items"] = old_ids
    order["exchange_new_items"] = new_ids
    order["exchange_payment_method_id"] = args.payment_method_id
    order["exchange_price_difference"] = difference
    save_order(conn, order)
    return order
