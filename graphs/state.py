"""The state every tiered graph shares (a TypedDict with reducers), and its input/output views."""

from __future__ import annotations

import operator
from typing import Annotated, Any

from typing_extensions import TypedDict

# The engine's nodes write it, the reducer reads it.
from tierflow.agents.context import RESET
from tierflow.agents.loop.events import Event
from tierflow.agents.spec import Attempt, Failure, Proposal
from tierflow.model_tiers.ledger import UsageRecord

__all__ = ["TieredState", "TieredInput", "ClientFunctionsInput", "TieredOutput", "merge_dicts", "RESET"]


def merge_dicts(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Reducer: later keys win; used for per-item results and who decided them.

    An update carrying the key `RESET` replaces the whole dict instead: a new run on an old
    thread must not see the previous run's results.
    """
    right = right or {}
    if RESET in right:
        return {k: v for k, v in right.items() if k != RESET}
    return {**(left or {}), **right}


class TieredInput(TypedDict):
    """What a caller sends: the customer's request."""

    request: str


class ClientFunctionsInput(TieredInput, total=False):
    """The input of a graph whose tool steps use the caller's functions: the request plus
    the functions (OpenAI tool format, or bare {name, description, parameters})."""

    functions: list[dict[str, Any]]


class TieredOutput(TypedDict, total=False):
    status: str
    final: dict[str, Any]
    results: dict[str, Any]
    decided_by: dict[str, str]
    ledger: list[UsageRecord]
    events: list[Event]
    failure: Failure | None


class TieredState(TypedDict, total=False):
    request: str
    # Client-declared functions (validated by the router), for graphs with client tool steps.
    functions: list[dict[str, Any]]
    run_id: str
    status: str  # running | done | failed | stopped | rejected
    # The plan: PlanItem dicts. Item 0 is the planning step when the router asked for one.
    plan: list[dict[str, Any]]
    plan_source: str  # planner | default
    cursor: int
    # Verified output per plan item id, and which tier (or "human" / "code") produced it.
    results: Annotated[dict[str, Any], merge_dicts]
    decided_by: Annotated[dict[str, str], merge_dicts]
    # Escalation position of the current item, and the candidate waiting for the verifier.
    attempt: Attempt | None
    proposal: Proposal | None
    review_error: str | None
    # Every model call (Usage records with step, role, attempt and verdict) and every event.
    ledger: Annotated[list[UsageRecord], operator.add]
    events: Annotated[list[Event], operator.add]
    failure: Failure | None
    final: dict[str, Any]
