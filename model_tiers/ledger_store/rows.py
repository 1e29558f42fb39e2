"""One row of the ledger store: one model request, where it was made and how it was judged."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

from tierflow.model_tiers.ledger import Usage
from tierflow.model_tiers.ledger_store.scope import CallScope
from tierflow.model_tiers.spec import TierConfig, TierSpec

__all__ = ["LedgerRow", "COLUMNS", "KEY_COLUMNS", "row_for_call", "Settlement", "day_of"]


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class LedgerRow:
    """A model request as the store keeps it.

    Keyed by (run_id, item_id, label, attempt, seq, execution): `execution` is 1 for the
    first time a node ran, 2 and up when the same node ran again after a kill or a storage
    retry (`rerun`), which made new, paid requests. `top_tier_cost_usd` prices the same
    tokens on the config's top tier, for the report's savings.
    """

    request_id: str
    ts: float
    day: str
    source: str
    run_id: str
    thread_id: str | None
    graph: str | None
    graph_version: str | None
    item_id: str
    step: str | None
    label: str
    role: str | None
    attempt: int
    seq: int
    execution: int
    tier: str
    provider: str
    model: str
    adapter: str | None
    input_tokens: int
    output_tokens: int
    tokens_estimated: bool
    latency_s: float
    cost_usd: float
    top_tier_cost_usd: float
    error: str | None
    cache_hit: bool
    confidence: float | None
    verdict: str | None = None
    reason: str | None = None
    p_right: float | None = None
    signals: str | None = None
    escalation: str | None = None
    outcome: str | None = None

    @property
    def rerun(self) -> bool:
        return self.execution > 1

    def values(self) -> tuple[Any, ...]:
        """The column values, flags as 0/1 (both dialects store them as integers)."""
        return tuple(int(v) if isinstance(v, bool) else v for v in asdict(self).values())


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(LedgerRow))
# The columns whose values identify a request, but for `execution` (which the store assigns).
KEY_COLUMNS: tuple[str, ...] = ("run_id", "item_id", "label", "attempt", "seq")


def row_for_call(scope: CallScope, spec: TierSpec, config: TierConfig, usage: Usage, seq: int) -> LedgerRow:
    """The row of one request made inside `scope` (execution 1; the store renumbers a re-run)."""
    now = time.time()
    top = config.frontier
    return LedgerRow(
        request_id=uuid.uuid4().hex,
        ts=now,
        day=day_of(now),
        source=scope.source,
        run_id=scope.run_id,
        thread_id=scope.thread_id,
        graph=scope.graph,
        graph_version=scope.graph_version,
        item_id=scope.item_id or "",
        step=scope.step,
        label=scope.label or scope.step or "",
        role=scope.role,
        attempt=scope.attempt,
        seq=seq,
        execution=1,
        tier=spec.name,
        provider=spec.provider,
        model=spec.model_label,
        adapter=spec.adapter,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        tokens_estimated=usage.tokens_estimated,
        latency_s=usage.latency_s,
        cost_usd=usage.cost_usd,
        top_tier_cost_usd=top.cost(usage.input_tokens, usage.output_tokens),
        error=usage.error,
        cache_hit=usage.cache_hit,
        confidence=usage.confidence,
    )


@dataclass(frozen=True)
class Settlement:
    """What the verifier decided of a node's requests, written onto their rows."""

    verdict: str | None
    reason: str | None
    signals: Mapping[str, float] | None
    escalation: str | None

    @property
    def p_right(self) -> float | None:
        value = (self.signals or {}).get("p_right")
        return float(value) if value is not None else None

    def signals_json(self) -> str | None:
        return json.dumps(dict(self.signals), sort_keys=True) if self.signals is not None else None
