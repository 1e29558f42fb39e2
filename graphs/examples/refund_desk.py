"""A user's own graph in one file: declare it here, then run, evaluate and debug it.

    tierflow run graphs/examples/refund_desk.py:WORKFLOW --input "Refund order 4417, 23.90 EUR" --json
    tierflow eval graphs/examples/refund_desk.py:WORKFLOW --dataset samples/refund_desk_cases.jsonl
    tierflow studio graphs/examples/refund_desk.py:WORKFLOW

or from Python:

    import tierflow
    from tierflow.graphs.examples.refund_desk import WORKFLOW, Refund

    result = tierflow.run(WORKFLOW, "Refund order 4417, 23.90 EUR")
    result.final["order_id"], result.steps.get("extract", Refund)

Three steps: classify the message (slm first), extract the order and amount (slm first,
each value checked against the message, and the amount by a check of our own), write the
reply (the frontier). Nothing else is registered anywhere: the reference is the file and
the name of the Workflow in it. It imports only from `tierflow`, the public API, and
needs no plan: the steps run in the order declared.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from tierflow import Check, Label, StepInput, StepResults, Workflow, classifier, extractor, writer

__all__ = ["WORKFLOW", "Refund", "Reply"]

INTENTS = {
    "refund_request": "The customer asks for money back for an order.",
    "delivery_question": "The customer asks where an order is or when it arrives.",
    "other": "Anything else.",
}


class Refund(BaseModel):
    order_id: str | None = Field(default=None, description="the order number, digits only, as written in the message")
    amount: str | None = Field(default=None, description="the amount asked back, as written in the message (no currency)")


class Reply(BaseModel):
    reply: str = Field(description="two sentences at most, to the customer")


def amount_is_a_plain_number(value: Refund, inp: StepInput) -> str | None:
    """A check of our own: None when the value passes, else the reason (fed back to the model)."""
    if value.amount is None:
        return None
    try:
        float(value.amount.replace(",", "."))
    except ValueError:
        return f"amount {value.amount!r} is not a number; give the digits only, without the currency"
    return None


def _finalize(state: Mapping[str, Any], _resources: Mapping[str, Any]) -> dict[str, Any]:
    results = StepResults(state)
    intent = results.get("classify", Label)
    refund = results.get("extract", Refund) or Refund()
    reply = results.get("reply", Reply)
    return {
        "intent": intent.label if intent else None,
        "order_id": refund.order_id,
        "amount": refund.amount,
        "reply": reply.reply if reply else None,
    }


WORKFLOW = Workflow(
    name="refund_desk",
    description="classify a customer message, extract the order and amount, write the reply",
    steps=(
        classifier("classify", labels=list(INTENTS), descriptions=INTENTS, instructions="Pick the intent of the customer's message."),
        extractor(
            "extract", schema=Refund, grounded_fields=("order_id", "amount"),
            instructions="Copy the order number and the amount from the message; leave out what it does not say.",
            checks=[Check("amount_is_a_plain_number", amount_is_a_plain_number)],
        ),
        writer("reply", schema=Reply, instructions="Write a short, polite reply that says what happens next."),
    ),
    finalize=_finalize,
)
