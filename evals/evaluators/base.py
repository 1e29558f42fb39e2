"""What every evaluator returns, and the one way the harness calls an evaluator.

Modelled on pydantic-evals: an evaluator looks at one case's output and returns a typed
``EvaluationResult``. ``run_evaluator`` is the harness's only entry point: whatever an
evaluator raises becomes a failed result carrying the error text, so one broken grader
marks its cases failed instead of killing the run (and the failure stays visible).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from tierflow.model_tiers.errors import TierflowError

__all__ = [
    "EvaluationResult",
    "EvaluationError",
    "Evaluator",
    "run_evaluator",
    "evaluator_name",
    "verdict",
    "precision_recall_f1",
]

OutputT_contra = TypeVar("OutputT_contra", contravariant=True)
CaseT_contra = TypeVar("CaseT_contra", contravariant=True)


class EvaluationResult(BaseModel):
    """One evaluator's judgement of one output (or of a whole run, for aggregate metrics).

    ``score`` is in [0, 1]. ``passed`` is None when there is no pass/fail notion (an
    aggregate metric) or the evaluator could not judge (no reference); ``reason`` says why
    it failed or could not judge.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    score: float = Field(ge=0.0, le=1.0)
    passed: bool | None
    reason: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class EvaluationError(TierflowError, ValueError):
    """An evaluator was given something it cannot grade (unparseable output, bad reference)."""


@runtime_checkable
class Evaluator(Protocol[OutputT_contra, CaseT_contra]):
    """An object with a ``name`` that grades one output against one case."""

    @property
    def name(self) -> str: ...

    def evaluate(self, output: OutputT_contra, case: CaseT_contra) -> EvaluationResult: ...


EvaluatorLike = Evaluator[Any, Any] | Callable[[Any, Any], EvaluationResult]


def evaluator_name(evaluator: EvaluatorLike) -> str:
    name = getattr(evaluator, "name", None)
    if isinstance(name, str) and name:
        return name
    return getattr(evaluator, "__name__", type(evaluator).__name__)


def run_evaluator(evaluator: EvaluatorLike, output: Any, case: Any) -> EvaluationResult:
    """Grade ``output`` for ``case``; an exception or a wrong return type is recorded as a
    failed result (``details["error"]``), never raised. KeyboardInterrupt still stops the run."""
    name = evaluator_name(evaluator)
    evaluate = evaluator.evaluate if isinstance(evaluator, Evaluator) else evaluator
    try:
        # Typed as whatever came back: user evaluators are checked for their return type below.
        result: object = evaluate(output, case)
    except Exception as err:  # recorded as a failed verdict, with the error, below
        return EvaluationResult(
            name=name,
            score=0.0,
            passed=False,
            reason=f"evaluator {name!r} raised {type(err).__name__}: {err}",
            details={
                "error": f"{type(err).__name__}: {err}",
                "traceback": "".join(traceback.format_exception(err, limit=-4)),
            },
        )
    if not isinstance(result, EvaluationResult):
        return EvaluationResult(
            name=name,
            score=0.0,
            passed=False,
            reason=f"evaluator {name!r} returned {type(result).__name__}, not an EvaluationResult",
            details={"error": f"bad return type {type(result).__name__}"},
        )
    return result


def verdict(name: str, passed: bool, reason: str | None = None, **details: Any) -> EvaluationResult:
    """A pass/fail result: score 1.0 or 0.0; the reason is kept only on failure."""
    return EvaluationResult(
        name=name, score=1.0 if passed else 0.0, passed=passed, reason=None if passed else reason, details=details
    )


def precision_recall_f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1 with 0 for an empty denominator."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1
