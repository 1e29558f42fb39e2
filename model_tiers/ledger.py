"""The ledger: one `Usage` record per model call, and the arithmetic over them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from tierflow.model_tiers.spec import TierConfig, TierSpec

__all__ = [
    "Usage",
    "UsageRecord",
    "Verdict",
    "TierTotals",
    "LedgerSummary",
    "summarize",
    "estimate_tokens",
    "CONFIDENCE_KEY",
    "CACHE_HIT_KEY",
    "CACHE_SAVED_KEY",
]

# Keys a chat model (or the call cache) sets in an AIMessage's response_metadata for the
# registry to copy into the call's Usage.
CONFIDENCE_KEY = "tierflow_confidence"
CACHE_HIT_KEY = "tierflow_cache_hit"
CACHE_SAVED_KEY = "tierflow_cache_saved_s"

Verdict = Literal["pass", "fail", "fault"]


class UsageRecord(TypedDict):
    """A `Usage` as graph state holds it (`Usage.record()`): one row of a run's ledger.
    (typing_extensions' TypedDict: pydantic reads graph state schemas, and needs it before 3.12.)"""

    tier: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    latency_s: float
    cost_usd: float
    run_id: str | None
    node: str | None
    step: str | None
    role: str | None
    attempt: int
    verdict: Verdict | None
    reason: str | None
    tokens_estimated: bool
    error: str | None
    confidence: float | None
    cache_hit: bool
    saved_s: float
    signals: dict[str, float] | None


class Usage(BaseModel):
    """One model call: who made it, on which tier, what it cost and how it was judged."""

    model_config = ConfigDict(extra="forbid")

    tier: str
    provider: str
    model: str
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    latency_s: float = Field(ge=0)
    cost_usd: float = Field(ge=0)
    # Filled in by the graph engine; a bare provider call leaves them empty.
    run_id: str | None = None
    node: str | None = None
    step: str | None = None
    role: str | None = None
    attempt: int = 0
    verdict: Verdict | None = None
    reason: str | None = None
    tokens_estimated: bool = False
    # Why the call brought back no usable reply ("HTTP 429", "transport", "invalid output");
    # None for a reply that parsed. A failed call is still a call: it is paid for.
    error: str | None = None
    # The provider's confidence in its answer from token log-probabilities (0..1): the
    # probability of the chosen label, or the least probable value token of a structured
    # answer. None where the provider gives no log-probabilities.
    confidence: float | None = Field(default=None, ge=0, le=1)
    # Answered from an eval run's call cache (see model_tiers/call_cache.py): the reply of an
    # identical earlier call, so `latency_s` is the lookup's and `saved_s` that call's.
    cache_hit: bool = False
    saved_s: float = Field(default=0.0, ge=0)
    # What the verifier measured of the answer (check outcomes and raw scores, sizes,
    # confidences; see agents/signals.py), filled in by the graph engine.
    signals: dict[str, float] | None = None

    @classmethod
    def for_call(
        cls,
        spec: TierSpec,
        *,
        input_tokens: int,
        output_tokens: int,
        latency_s: float,
        tokens_estimated: bool = False,
        **fields: Any,
    ) -> Usage:
        return cls(
            tier=spec.name,
            provider=spec.provider,
            model=spec.model_label,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            latency_s=latency_s,
            cost_usd=spec.cost(input_tokens, output_tokens),
            tokens_estimated=tokens_estimated,
            **fields,
        )

    def record(self) -> UsageRecord:
        """This call as a ledger row in graph state (plain data, as checkpoints store it)."""
        # model_dump() gives exactly UsageRecord's keys (tests/unit/test_ledger.py checks
        # that the two declarations agree).
        return cast(UsageRecord, self.model_dump())

    def line(self) -> str:
        """A one-line human summary, as the CLI prints it."""
        where = f"{self.step}/{self.role} " if self.step else ""
        verdict = f" verdict={self.verdict}" if self.verdict else ""
        return (
            f"[ledger] {where}tier={self.tier} model={self.model} attempt={self.attempt} "
            f"tokens={self.input_tokens}+{self.output_tokens} latency={self.latency_s:.2f}s "
            f"cost=${self.cost_usd:.6f}{verdict}"
        )


class TierTotals(BaseModel):
    tier: str
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0

    def add(self, input_tokens: int, output_tokens: int, latency_s: float, cost_usd: float) -> None:
        """Count one more call, with its tokens, time and cost."""
        self.calls += 1
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.latency_s += latency_s
        self.cost_usd += cost_usd


class LedgerSummary(BaseModel):
    per_tier: list[TierTotals]
    calls: int
    cost_usd: float
    latency_s: float
    frontier_calls: int
    # What the same tokens would have cost with every call priced at the frontier tier.
    all_frontier_cost_usd: float | None = None

    @property
    def savings_vs_frontier(self) -> float | None:
        if not self.all_frontier_cost_usd:
            return None
        return 1.0 - self.cost_usd / self.all_frontier_cost_usd


def _as_usage(record: Usage | Mapping[str, Any]) -> Usage:
    return record if isinstance(record, Usage) else Usage.model_validate(record)


def summarize(records: Iterable[Usage | Mapping[str, Any]], config: TierConfig | None = None) -> LedgerSummary:
    """Totals per tier (in ladder order when a config is given) and overall."""
    usages = [_as_usage(r) for r in records]
    totals: dict[str, TierTotals] = {}
    if config is not None:
        for spec in config.tiers:
            totals[spec.name] = TierTotals(tier=spec.name)
    for u in usages:
        totals.setdefault(u.tier, TierTotals(tier=u.tier)).add(u.input_tokens, u.output_tokens, u.latency_s, u.cost_usd)
    frontier = config.frontier if config is not None else None
    return LedgerSummary(
        per_tier=list(totals.values()),
        calls=len(usages),
        cost_usd=sum(u.cost_usd for u in usages),
        latency_s=sum(u.latency_s for u in usages),
        frontier_calls=sum(1 for u in usages if frontier is not None and u.tier == frontier.name),
        all_frontier_cost_usd=(
            sum(frontier.cost(u.input_tokens, u.output_tokens) for u in usages) if frontier else None
        ),
    )


def estimate_tokens(text: str) -> int:
    """Token estimate for providers that report none: ~4 characters per token (OpenAI's rule of thumb)."""
    return max(1, (len(text) + 3) // 4) if text else 0
