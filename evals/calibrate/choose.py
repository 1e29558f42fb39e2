"""Choosing the setting: the cheapest (router, check) thresholds whose quality meets the target.

A case of a step ends one of three ways under the calibrated tiered policy:

* routed (the router's P(fail) is above ``skip_above``): only the higher tier is called;
* escalated (the cheap answer failed a check, or its calibrated P(right) is below
  ``escalate_below``): both are paid for, the higher tier's answer counts;
* kept: the cheap answer counts, and only it is paid for.

Quality is the share of right answers; the target is ``target`` times the reference
policy's quality on the same cases; cost saved is against the reference's cost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tierflow.evals.calibrate.table import StepSample

__all__ = ["Outcomes", "Setting", "outcomes_of", "evaluate", "choose", "curve", "bootstrap"]


@dataclass(frozen=True)
class Outcomes:
    passed: np.ndarray
    cheap_correct: np.ndarray
    ref_correct: np.ndarray
    cheap_cost: np.ndarray
    ref_cost: np.ndarray

    def take(self, index: np.ndarray) -> Outcomes:
        return Outcomes(*(getattr(self, f)[index] for f in ("passed", "cheap_correct", "ref_correct", "cheap_cost", "ref_cost")))

    def __len__(self) -> int:
        return len(self.passed)


@dataclass(frozen=True)
class Setting:
    escalate_below: float | None  # None: no calibrated check
    skip_above: float | None  # None: no router
    quality: float
    ref_quality: float
    cost: float
    ref_cost: float
    escalated: float  # share of cases with both calls
    routed: float  # share of cases sent straight up
    # The quality `choose` expected of it, kept answers counted at their probability.
    expected_quality: float | None = None

    @property
    def quality_ratio(self) -> float:
        return self.quality / self.ref_quality if self.ref_quality else float("nan")

    @property
    def expected_ratio(self) -> float | None:
        return None if self.expected_quality is None or not self.ref_quality else self.expected_quality / self.ref_quality

    @property
    def cost_saved(self) -> float:
        return 1.0 - self.cost / self.ref_cost if self.ref_cost else float("nan")


def outcomes_of(samples: Sequence[StepSample]) -> Outcomes:
    return Outcomes(
        passed=np.array([s.passed for s in samples], dtype=bool),
        cheap_correct=np.array([s.cheap_correct for s in samples], dtype=float),
        ref_correct=np.array([s.ref_correct for s in samples], dtype=float),
        cheap_cost=np.array([s.cheap_cost for s in samples], dtype=float),
        ref_cost=np.array([s.ref_cost for s in samples], dtype=float),
    )


def evaluate(
    o: Outcomes, p_right: np.ndarray | None, p_fail: np.ndarray | None, escalate_below: float | None, skip_above: float | None
) -> Setting:
    """The figures of one setting on these cases."""
    n = max(1, len(o))
    routed = np.zeros(len(o), dtype=bool) if p_fail is None or skip_above is None else p_fail > skip_above
    doubted = np.zeros(len(o), dtype=bool) if p_right is None or escalate_below is None else p_right < escalate_below
    escalated = ~routed & (~o.passed | doubted)
    higher = routed | escalated
    quality = float(np.where(higher, o.ref_correct, o.cheap_correct).sum()) / n
    cost = float(np.where(routed, o.ref_cost, o.cheap_cost + escalated * o.ref_cost).sum())
    return Setting(
        escalate_below, skip_above, quality, float(o.ref_correct.sum()) / n, cost, float(o.ref_cost.sum()),
        float(escalated.mean()) if len(o) else 0.0, float(routed.mean()) if len(o) else 0.0,
    )


def _cuts(values: np.ndarray) -> list[float]:
    """Thresholds between distinct values (a tie cannot be split by a threshold)."""
    distinct = np.unique(values)
    return [0.0, *((distinct[:-1] + distinct[1:]) / 2).tolist(), 1.0]


def _router_grid(p_fail: np.ndarray | None, points: int) -> list[float | None]:
    if p_fail is None or len(p_fail) == 0:
        return [None]
    qs = np.unique(np.quantile(p_fail, np.linspace(0.0, 1.0, points)))
    # 0.0 first: route everything but a certain success.
    return [None, 0.0, *[float(q) for q in qs if q > 0.0]]


def _best_check(
    o: Outcomes, p_right: np.ndarray | None, routed: np.ndarray, target: float, ref_quality: float, countings: Sequence[np.ndarray]
) -> tuple[float | None, float, float] | None:
    """For a fixed routing, the cheapest check threshold meeting the target under every one
    of `countings` (what a kept cheap answer counts as: its outcome, or its probability of
    being right): (threshold, cost, quality under the first counting), or None when none
    does. Linear in the cases after one sort."""
    n = max(1, len(o))
    base_escalated = ~routed & ~o.passed
    kept = ~routed & o.passed
    cost0 = float(np.where(routed, o.ref_cost, o.cheap_cost + base_escalated * o.ref_cost).sum())
    order = np.flatnonzero(kept)
    if p_right is not None:
        order = order[np.argsort(p_right[order], kind="stable")]
    # k escalated (the k least likely right first) is reachable only at a boundary between
    # distinct probabilities; without a check only k = 0 is.
    allowed = np.zeros(len(order) + 1, dtype=bool)
    allowed[0] = True
    if p_right is not None:
        p_sorted = p_right[order]
        allowed[-1] = True
        if len(order) > 1:
            allowed[1:-1] = p_sorted[:-1] < p_sorted[1:]
    qualities = []
    for counted in countings:
        quality0 = float(np.where(routed | base_escalated, o.ref_correct, counted).sum())
        gain = np.concatenate([[0.0], np.cumsum(o.ref_correct[order] - counted[order])])
        qualities.append((quality0 + gain) / n)
        allowed &= qualities[-1] >= target * ref_quality - 1e-12
    if not allowed.any():
        return None
    extra = np.concatenate([[0.0], np.cumsum(o.ref_cost[order])])
    costs = np.where(allowed, cost0 + extra, np.inf)
    k = int(np.argmin(costs))
    if p_right is None:
        threshold: float | None = None
    elif k == 0:
        threshold = 0.0
    elif k == len(order):
        threshold = 1.0
    else:
        threshold = float((p_sorted[k - 1] + p_sorted[k]) / 2)
    return threshold, float(costs[k]), float(qualities[0][k])


def choose(
    o: Outcomes, p_right: np.ndarray | None, p_fail: np.ndarray | None, target: float, router_points: int = 51, *,
    expected: bool = True, strict: bool = False,
) -> Setting | None:
    """The cheapest setting meeting `target` (None when even escalating everything cannot).

    With `expected` (the default), a kept cheap answer counts as its calibrated probability
    of being right, not as its outcome. Taking the cheapest of many thresholds on outcomes
    picks the one where the kept answers happened to be right more often than their
    probability said, and that luck does not carry over to new cases (on GSM8K halves it
    cost 4-6 points of held-out quality in 2 of 5 seeds); the probabilities are out of fold
    and calibrated, so their sum estimates the kept answers' quality without that bias.
    `strict` also requires the target on outcomes: a margin against a calibration that is
    off where the threshold falls, paid for in cost."""
    ref_quality = float(o.ref_correct.mean()) if len(o) else 0.0
    countings = [o.cheap_correct]
    if expected and p_right is not None:
        countings = [np.where(o.passed, p_right, o.cheap_correct), *countings[: int(strict)]]
    elif expected and p_fail is not None:
        countings = [1.0 - p_fail, *countings[: int(strict)]]
    best: tuple[float, float | None, float | None, float] | None = None
    for skip_above in _router_grid(p_fail, router_points):
        routed = np.zeros(len(o), dtype=bool) if skip_above is None or p_fail is None else p_fail > skip_above
        found = _best_check(o, p_right, routed, target, ref_quality, countings)
        if found is not None and (best is None or found[1] < best[0] - 1e-15):
            best = (found[1], found[0], skip_above, found[2])
    if best is None:
        return None
    return dataclasses.replace(evaluate(o, p_right, p_fail, best[1], best[2]), expected_quality=best[3])


def curve(o: Outcomes, p: np.ndarray, *, router: bool) -> list[Setting]:
    """Every threshold of one model alone (the check, or the router): cost against quality."""
    values = p[o.passed] if not router else p
    cuts = _cuts(values) if len(values) else [0.0]
    if len(cuts) > 400:
        cuts = [float(c) for c in np.quantile(cuts, np.linspace(0, 1, 400))]
    if router:
        return [evaluate(o, None, p, None, c) for c in [*cuts, 1.0]]
    return [evaluate(o, p, None, c, None) for c in cuts]


def bootstrap(
    o: Outcomes, p_right: np.ndarray | None, p_fail: np.ndarray | None, chosen: Setting, target: float, *,
    rounds: int = 300, seed: int = 0, strict: bool = False,
) -> dict[str, list[float]]:
    """95% percentile intervals, over case resamples, of the chosen setting's quality ratio
    and cost saved, and of the thresholds re-chosen on each resample."""
    rng = np.random.default_rng(seed)
    ratio, saved, check_t, router_t = [], [], [], []
    for _ in range(rounds):
        index = rng.integers(0, len(o), len(o))
        sample = o.take(index)
        pr = None if p_right is None else p_right[index]
        pf = None if p_fail is None else p_fail[index]
        fixed = evaluate(sample, pr, pf, chosen.escalate_below, chosen.skip_above)
        ratio.append(fixed.quality_ratio)
        saved.append(fixed.cost_saved)
        again = choose(sample, pr, pf, target, router_points=21, strict=strict)
        if again is not None:
            check_t.append(np.nan if again.escalate_below is None else again.escalate_below)
            router_t.append(np.nan if again.skip_above is None else again.skip_above)

    def interval(values: list[float]) -> list[float]:
        finite = np.array([v for v in values if np.isfinite(v)])
        return [float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))] if len(finite) else []

    return {
        "quality_ratio": interval(ratio),
        "cost_saved": interval(saved),
        "escalate_below": interval(check_t),
        "skip_above": interval(router_t),
    }
