"""The schema and tools every provider test asks a real model for (one definition for all)."""

from __future__ import annotations

from typing import Literal

from langchain_core.tools import tool
from pydantic import BaseModel


class TicketTriage(BaseModel):
    label: Literal["billing", "shipping", "account", "other"]
    urgent: bool


@tool
def lookup_order(order_id: str) -> str:
    """Look up the status of a customer order by its order id."""
    return order_id


@tool
def refund_payment(order_id: str, amount: float) -> str:
    """Refund an amount of money paid for an order."""
    return f"{order_id}:{amount}"


TOOLS = {t.name: t for t in (lookup_order, refund_payment)}
