"""Routing policies compared side by side in one eval run.

A policy is a name and a `TierRunContext`: the graph is built once and each case is run
with the policy's context (`graph.stream(..., context=...)`), so no model is rebuilt and
every policy sees the same tiers, prompts and checks.

Names (as given to `--policy`):

* ``all-slm``: every step on the cheapest tier, no escalation above it;
* ``all-frontier``: every step on the top tier;
* ``tiered``: each role starts on its configured tier and the verifier escalates;
* ``tiered-conf0.70``: tiered, and a step whose self-reported confidence is below 0.70
  fails the verifier (`confidence_threshold`), for suites whose steps report one;
* ``sweep``: ``tiered-confX`` for each threshold the suite declares.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from tierflow.model_tiers import ConfigError, TierRunContext

__all__ = ["Policy", "BASE_POLICIES", "SWEEP", "parse_policy", "resolve_policies", "threshold_policy"]

BASE_POLICIES: dict[str, str] = {
    "all-slm": "every step on the cheapest tier; no escalation",
    "all-frontier": "every step on the top tier",
    "tiered": "each role on its configured tier; the verifier escalates failures",
}
SWEEP = "sweep"
_THRESHOLD = re.compile(r"^tiered-conf(?P<value>\d*\.?\d+)$")


@dataclass(frozen=True)
class Policy:
    """A named run context. `name` is also the results file name, so it is kept plain."""

    name: str
    context: TierRunContext
    description: str = ""

    def context_dict(self) -> dict[str, Any]:
        """The context's set fields (what the report and the run manifest record)."""
        return {k: v for k, v in asdict(self.context).items() if v is not None}

    def with_overrides(self, **fields: Any) -> Policy:
        """The same policy with more run-context fields set (None values are ignored)."""
        chosen = {k: v for k, v in fields.items() if v is not None}
        return replace(self, context=replace(self.context, **chosen)) if chosen else self


def threshold_policy(threshold: float) -> Policy:
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"a confidence threshold must be between 0 and 1, got {threshold}")
    return Policy(
        name=f"tiered-conf{threshold:.2f}",
        context=TierRunContext(policy="tiered", confidence_threshold=threshold),
        description=f"tiered; a step reporting confidence below {threshold:.2f} fails the verifier",
    )


def parse_policy(text: str, *, thresholds: Sequence[float] = ()) -> list[Policy]:
    """One `--policy` word -> the policies it names (`sweep` names several)."""
    word = text.strip()
    if word in BASE_POLICIES:
        return [Policy(word, TierRunContext(policy=word), BASE_POLICIES[word])]
    if word == SWEEP:
        if not thresholds:
            raise ConfigError("this suite declares no confidence thresholds to sweep (no step reports a score)")
        return [threshold_policy(t) for t in thresholds]
    match = _THRESHOLD.match(word)
    if match:
        if not thresholds:
            raise ConfigError(
                f"policy '{word}' thresholds a confidence score, but no step of this suite's graph reports one"
            )
        return [threshold_policy(float(match["value"]))]
    raise ConfigError(
        f"unknown policy '{word}'; use {', '.join(BASE_POLICIES)}, tiered-confX (X in 0..1, e.g. tiered-conf0.7) "
        f"or {SWEEP}"
    )


def resolve_policies(
    words: Iterable[str] | None, *, defaults: Sequence[str], thresholds: Sequence[float] = (), **overrides: Any
) -> list[Policy]:
    """The policies of a run, in the order given, without duplicates; `overrides` (e.g.
    on_top_failure) are set on every policy's run context."""
    chosen: dict[str, Policy] = {}
    for word in list(words or ()) or list(defaults):
        for policy in parse_policy(word, thresholds=thresholds):
            chosen.setdefault(policy.name, policy.with_overrides(**overrides))
    return list(chosen.values())
