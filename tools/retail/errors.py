"""The one error the retail tools raise on purpose."""

from __future__ import annotations

from typing import Any, Literal

from tierflow.model_tiers.errors import ToolRefusal

__all__ = ["RetailErrorKind", "RetailToolError", "order_not_found", "require_found", "user_not_found"]

# What the caller (a verifier, an LLM reading the message) should do differs by kind:
# fix the arguments, look the id up first, stop because the policy forbids it, or
# use a fresh idempotency key.
RetailErrorKind = Literal["invalid_argument", "not_found", "policy_violation", "conflict"]


class RetailToolError(ToolRefusal):
    """A retail tool refused a call: bad input, unknown id, or a policy violation.

    The message says what was wrong and what to do instead; ``tool`` and ``kind`` let a
    verifier classify the failure without parsing the text.
    """

    def __init__(self, tool: str, message: str, *, kind: RetailErrorKind = "invalid_argument") -> None:
        self.tool = tool
        self.kind: RetailErrorKind = kind
        self.reason = message
        super().__init__(f"{tool}: {message}")


def require_found(tool: str, record: dict[str, Any] | None, missing: str) -> dict[str, Any]:
    """`record`, or the `not_found` error whose message `missing` says how to find the right id."""
    if record is None:
        raise RetailToolError(tool, missing, kind="not_found")
    return record


def user_not_found(user_id: str) -> str:
    return f"user {user_id!r} not found; find the user id with find_user_id_by_email or find_user_id_by_name_zip"


def order_not_found(order_id: str) -> str:
    return f"order {order_id!r} not found; order ids look like '#W0000000' (with the '#'), and get_user_details lists the user's orders"
