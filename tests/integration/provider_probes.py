"""The schema and tools every provider test asks a real model for: the contract suite's own
probes (`tierflow.model_tiers.conformance`), so both ask the same questions."""

from __future__ import annotations

from tierflow.model_tiers.conformance import ContractTriage as TicketTriage
from tierflow.model_tiers.conformance import lookup_order, refund_payment

__all__ = ["TicketTriage", "lookup_order", "refund_payment", "TOOLS"]

TOOLS = {t.name: t for t in (lookup_order, refund_payment)}
