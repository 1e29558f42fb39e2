"""Numeric answers (math word problems): the final number, within a tolerance.

Text answers are read with ``extract_final_number`` (``#### 18``, ``The answer is 18.``,
``\\boxed{18}``, ``$1,234.50``...), so "18.0", "$18" and "18" are the same answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tierflow.agents.numbers import extract_final_number, parse_number
from tierflow.evals.datasets.gsm8k import MathCase

from .base import EvaluationError, EvaluationResult, verdict

__all__ = ["as_number", "numeric_match", "MathAnswerCorrect"]


def as_number(value: str | float | int | None) -> float | None:
    """A number as float: numbers as they are; a string read whole (``"$1,234.50"``)
    or, failing that, as a worked answer's final number; None when there is none."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    whole = parse_number(value)
    return whole if whole is not None else extract_final_number(value)


def numeric_match(
    predicted: str | float | int | None,
    expected: str | float | int,
    *,
    rel_tol: float = 1e-6,
    abs_tol: float = 1e-6,
) -> EvaluationResult:
    """Pass when the predicted number equals the expected one within the tolerances."""
    target = as_number(expected)
    if target is None:
        raise EvaluationError(f"the expected answer {expected!r} is not a number")
    guess = as_number(predicted)
    passed = guess is not None and math.isclose(guess, target, rel_tol=rel_tol, abs_tol=abs_tol)
    reason = "no number in the answer" if guess is None else f"answered {guess:g}, expected {target:g}"
    return verdict("numeric_match", passed, reason, expected=target, predicted=guess)


@dataclass(frozen=True)
class MathAnswerCorrect:
    """Grades an answer to a RouteLLM GSM8K case.

    An answer that is one of the case's recorded responses gets that response's recorded
    grade (the ground truth the file carries). Any other answer is compared with the
    case's derived reference number; a case without one cannot be judged (passed None).
    """

    name: str = "math_answer_correct"
    rel_tol: float = 1e-6
    abs_tol: float = 1e-6

    def evaluate(self, output: str | float | int | None, case: MathCase) -> EvaluationResult:
        for recorded in (case.expected.strong, case.expected.weak):
            if isinstance(output, str) and output == recorded.response:
                return verdict(
                    self.name, recorded.correct, f"recorded grade of {recorded.model}: incorrect", source=recorded.model
                )
        reference = case.expected.reference_answer
        if reference is None:
            return EvaluationResult(
                name=self.name,
                score=0.0,
                passed=None,
                reason="no reference number for this case (no recorded answer was right, or they disagree)",
            )
        result = numeric_match(output, reference, rel_tol=self.rel_tol, abs_tol=self.abs_tol)
        return result.model_copy(update={"name": self.name, "details": {**result.details, "source": "reference"}})
