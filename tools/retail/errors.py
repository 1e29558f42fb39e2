"""The one error the retail tools raise on purpose."""

from __future__ import annotations

from typing import Literal

from tierflow.model_tiers.errors import ToolRefusal

__all__ = ["RetailErrorKind", "RetailToolError"]

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
