"""Scripted tiers for the refund_desk example (loaded by a tiers file via options.function)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from tierflow.model_tiers.testing import scripted_ladder_toml


def _parts(messages: Sequence[BaseMessage]) -> tuple[str, str]:
    """The system prompt, and the customer's message quoted between <<< and >>>."""
    system = next((str(m.content) for m in messages if isinstance(m, SystemMessage)), "")
    human = next((str(m.content) for m in reversed(messages) if isinstance(m, HumanMessage)), "")
    quoted = re.search(r"<<<\n(.*?)\n>>>", human, re.S)
    return system, quoted.group(1) if quoted else human


def reply(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> Any:
    system, human = _parts(messages)
    if "Pick the intent" in system:
        label = "delivery_question" if re.search(r"\b(where|when)\b", human, re.I) else "refund_request"
        return {"label": "other" if "Lyon" in human else label, "confidence": 0.9}
    if "Copy the order number" in system:
        order = re.search(r"\border (\d{4})", human)
        amount = re.search(r"\b(\d+\.\d{2})\b", human)
        return {"order_id": order.group(1) if order else None, "amount": amount.group(1) if amount else None}
    if "short, polite reply" in system:
        return {"reply": "Thank you, we are on it."}
    raise AssertionError(f"no scripted reply for {system[:80]!r}")


TIERS_TOML = scripted_ladder_toml("tests.unit.own_graph_scripts:reply", "tests.unit.own_graph_scripts:reply")
