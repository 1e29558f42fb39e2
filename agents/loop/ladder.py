"""The escalation ladder as pure functions over the tier config and the run's ledger.

Kept free of LangGraph so each rule (retry, escalate, fault fallback, capability skip,
local-only, budgets) is unit-testable on its own; the verifier node only turns these
decisions into `Command(goto=...)` edges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tierflow.agents.spec import BudgetName, SpentBudgetFields, StepNeeds
from tierflow.model_tiers import TierConfig, TierSpec

__all__ = [
    "StepNeeds",
    "Decision",
    "usable_ladder",
    "first_tier",
    "after_failure",
    "after_fault",
    "has_higher_tier",
    "BudgetState",
    "SpentBudget",
    "budget_state",
    "budget_block",
    "cheaper_alternative",
]


def _lacks(spec: TierSpec, needs: StepNeeds) -> str | None:
    if needs.local_only and not spec.local:
        return "step is local_only (PII) and this tier is not local"
    if needs.tools and not spec.capabilities.tools:
        return "tier has no tool calling"
    if needs.structured and spec.capabilities.structured_output == "none":
        return "step needs structured output and this tier declares none"
    if needs.prompt_tokens and needs.prompt_tokens + spec.max_output_tokens > spec.capabilities.context_window:
        return f"prompt (~{needs.prompt_tokens} tokens) exceeds the context window ({spec.capabilities.context_window})"
    return None


def usable_ladder(config: TierConfig, role: str, needs: StepNeeds) -> tuple[list[TierSpec], list[tuple[str, str]]]:
    """Tiers this step may use, in escalation order, and those skipped with the reason."""
    ladder = config.ladder_for(role, local_only=needs.local_only)
    usable, skipped = [], []
    for spec in ladder:
        reason = _lacks(spec, needs)
        if reason:
            skipped.append((spec.name, reason))
        else:
            usable.append(spec)
    return usable, skipped


def first_tier(config: TierConfig, role: str, needs: StepNeeds) -> str | None:
    usable, _ = usable_ladder(config, role, needs)
    return usable[0].name if usable else None


@dataclass(frozen=True)
class Decision:
    """What to do next with a step: run it (again) on `tier`, or give up at the top."""

    action: Literal["retry", "escalate", "fallback", "top"]
    tier: str | None
    reason: str


def _above(config: TierConfig, role: str, needs: StepNeeds, tier: str) -> list[TierSpec]:
    usable, _ = usable_ladder(config, role, needs)
    rank = config.rank(tier)
    return [t for t in usable if config.rank(t.name) > rank]


def has_higher_tier(config: TierConfig, role: str, needs: StepNeeds, tier: str) -> bool:
    """Whether a failed verdict on `tier` could still climb (soft checks apply only then)."""
    return bool(_above(config, role, needs, tier))


def next_tier_above(config: TierConfig, role: str, needs: StepNeeds, tier: str) -> str | None:
    """The cheapest usable tier above `tier` (None at the top)."""
    above = _above(config, role, needs, tier)
    return above[0].name if above else None


def after_failure(config: TierConfig, role: str, needs: StepNeeds, tier: str, tries_on_tier: int) -> Decision:
    """After a failed verdict: retry on the same tier, else the next tier up, else the top."""
    if tries_on_tier <= config.escalation.max_retries:
        return Decision("retry", tier, f"retry {tries_on_tier}/{config.escalation.max_retries} on {tier}")
    higher = _above(config, role, needs, tier)
    if higher:
        return Decision("escalate", higher[0].name, f"{tier} exhausted its retries")
    return Decision("top", None, f"{tier} is the highest tier this step may use")


def after_fault(config: TierConfig, role: str, needs: StepNeeds, tier: str) -> Decision:
    """After an unreachable / timed-out tier: the next tier up, no retry on the dead one."""
    higher = _above(config, role, needs, tier)
    if higher:
        return Decision("fallback", higher[0].name, f"{tier} unreachable")
    return Decision("top", None, f"{tier} unreachable and no higher tier is usable")


@dataclass(frozen=True)
class BudgetState:
    cost_usd: float
    frontier_calls: int


@dataclass(frozen=True)
class SpentBudget:
    """The run budget a call would break: which limit, its value and what is already spent."""

    budget: BudgetName
    limit: float
    spent: float

    @property
    def reason(self) -> str:
        if self.budget == "max_cost_usd":
            return f"cost budget spent (${self.spent:.6f} of ${self.limit:g})"
        return f"frontier-call budget spent ({self.spent:g} of {self.limit:g})"

    def as_failure(self) -> SpentBudgetFields:
        """The failure's own fields (besides step and reason) in a stopped run's state."""
        return {"kind": "budget", "budget": self.budget, "limit": self.limit, "spent": self.spent}


def budget_state(config: TierConfig, ledger: Sequence[Mapping[str, Any]]) -> BudgetState:
    frontier = config.frontier.name
    return BudgetState(
        cost_usd=sum((float(u.get("cost_usd", 0.0)) for u in ledger), 0.0),
        frontier_calls=sum(1 for u in ledger if u.get("tier") == frontier),
    )


def budget_block(config: TierConfig, spent: BudgetState, tier: str) -> SpentBudget | None:
    """The budget a call on `tier` would break, or None when it may go ahead."""
    b = config.budget
    if b.max_cost_usd is not None and spent.cost_usd >= b.max_cost_usd:
        return SpentBudget("max_cost_usd", b.max_cost_usd, spent.cost_usd)
    if tier == config.frontier.name and b.max_frontier_calls is not None and spent.frontier_calls >= b.max_frontier_calls:
        return SpentBudget("max_frontier_calls", b.max_frontier_calls, spent.frontier_calls)
    return None


def cheaper_alternative(config: TierConfig, role: str, needs: StepNeeds, tier: str) -> str | None:
    """Under `cheaper_only`, the best usable tier strictly below `tier` (None if there is none)."""
    usable, _ = usable_ladder(config, role, needs)
    # cheaper_only may go below the role's starting tier: the whole ladder counts.
    if not usable or config.rank(usable[0].name) >= config.rank(tier):
        candidates = [t for t in config.tiers[: config.rank(tier)] if _lacks(t, needs) is None]
    else:
        candidates = [t for t in usable if config.rank(t.name) < config.rank(tier)]
    return candidates[-1].name if candidates else None
