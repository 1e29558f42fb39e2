"""The arithmetic of an eval report: confidence intervals, percentiles, precision/recall.

Pure functions over plain numbers, so every figure in a report can be checked by hand:

* proportions (accuracy, a detection rate) get a Wilson score interval, which stays inside
  [0, 1] and behaves at 0/n and n/n, where the normal approximation does not;
* statistics that are not a proportion of independent cases (macro-F1) get a percentile
  bootstrap interval over the cases, with a fixed seed so a report is reproducible;
* percentiles interpolate linearly between order statistics (numpy's default, "type 7").
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from pydantic import BaseModel, ConfigDict

__all__ = [
    "Z_95",
    "Estimate",
    "wilson_interval",
    "proportion",
    "bootstrap_interval",
    "bootstrap_estimate",
    "percentile",
    "precision_recall",
    "macro_f1_score",
]

T = TypeVar("T")

# Two-sided 95% normal quantile.
Z_95 = 1.959963984540054


class Estimate(BaseModel):
    """A point estimate with its 95% interval; all None when there was nothing to measure."""

    model_config = ConfigDict(frozen=True)

    value: float | None
    low: float | None
    high: float | None
    n: int
    method: str
    successes: int | None = None


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for `successes` out of `n` (n > 0)."""
    if n <= 0:
        raise ValueError("a proportion needs n > 0")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n], got {successes} of {n}")
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(successes: int, n: int) -> Estimate:
    """successes / n with its Wilson 95% interval (None everywhere when n == 0)."""
    if n == 0:
        return Estimate(value=None, low=None, high=None, n=0, method="wilson", successes=0)
    low, high = wilson_interval(successes, n)
    return Estimate(value=successes / n, low=low, high=high, n=n, method="wilson", successes=successes)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation; None for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def bootstrap_interval(
    items: Sequence[T],
    statistic: Callable[[Sequence[T]], float],
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over `items` resampled with replacement."""
    if not items:
        raise ValueError("a bootstrap needs at least one item")
    rng = random.Random(seed)
    n = len(items)
    scores = sorted(statistic([items[rng.randrange(n)] for _ in range(n)]) for _ in range(resamples))
    tail = (1 - confidence) / 2 * 100
    low, high = percentile(scores, tail), percentile(scores, 100 - tail)
    assert low is not None and high is not None
    return low, high


def bootstrap_estimate(
    items: Sequence[T], statistic: Callable[[Sequence[T]], float], *, resamples: int = 1000, seed: int = 0
) -> Estimate:
    """`statistic(items)` with its bootstrap 95% interval (None everywhere for no items)."""
    if not items:
        return Estimate(value=None, low=None, high=None, n=0, method="bootstrap")
    low, high = bootstrap_interval(items, statistic, resamples=resamples, seed=seed)
    return Estimate(value=statistic(items), low=low, high=high, n=len(items), method=f"bootstrap({resamples})")


def precision_recall(tp: int, fp: int, fn: int) -> tuple[float | None, float | None]:
    """Precision and recall; None (not 0) where the denominator is empty, so an absent
    class is not reported as a perfectly bad verifier."""
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    return precision, recall


def macro_f1_score(pairs: Iterable[tuple[str, str | None]], labels: Sequence[str] | None = None) -> float:
    """Macro-F1 over (gold, predicted) pairs with the semantics of
    `evals.evaluators.labels.macro_f1` (labels seen in neither gold nor predictions are skipped;
    a None prediction is a miss), in one pass so a bootstrap of it stays fast."""
    pairs = list(pairs)
    if not pairs:
        return 0.0
    tp: Counter[str] = Counter()
    gold_count: Counter[str] = Counter()
    predicted_count: Counter[str] = Counter()
    for gold, predicted in pairs:
        gold_count[gold] += 1
        if predicted is not None:
            predicted_count[predicted] += 1
            if predicted == gold:
                tp[gold] += 1
    chosen = list(labels) if labels is not None else sorted(set(gold_count) | set(predicted_count))
    scores: list[float] = []
    for label in chosen:
        hits, gold_n, predicted_n = tp[label], gold_count[label], predicted_count[label]
        fp, fn = predicted_n - hits, gold_n - hits
        if hits + fp + fn == 0:
            continue
        precision = hits / (hits + fp) if hits + fp else 0.0
        recall = hits / (hits + fn) if hits + fn else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(scores) / len(scores) if scores else 0.0
