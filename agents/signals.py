"""What the verifier knew about one attempt, as numbers: the features `tierflow calibrate`
learns from and the calibrated check reads back.

They are computed in one place, here, at the verdict, and recorded with it (the verdict
event, the ledger row, the eval record), so a calibration is fitted on exactly the numbers
it will be served at run time.

Names: ``check.<check name>.pass`` (1 or 0, for each check that ran), ``check.<check
name>.<score>`` (a check's raw scores, `Check.scores`), ``logprob_confidence`` (the
provider's token log-probability confidence), ``self_confidence`` (the step's own
confidence field), and sizes: ``input_chars``, ``output_chars``, ``output_tokens``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from tierflow.agents.spec import Check, StepInput, StepSpec

__all__ = ["CheckOutcome", "attempt_signals", "check_scores", "SIZE_SIGNALS"]

# (the check, its objection or None)
CheckOutcome = tuple[Check, str | None]
# Sizes are spread over orders of magnitude: a calibration takes their logarithm.
SIZE_SIGNALS = frozenset({"input_chars", "output_chars", "output_tokens"})


def check_scores(outcomes: Sequence[CheckOutcome], value: Any, inp: StepInput) -> dict[str, float]:
    """Each check's pass/fail and raw scores. A `scores` function that raises is a bug in
    the check, and the exception propagates (the verifier stops the run and says so)."""
    signals: dict[str, float] = {}
    for check, problem in outcomes:
        signals[f"check.{check.name}.pass"] = 0.0 if problem else 1.0
        if check.scores is not None:
            for key, number in check.scores(value, inp).items():
                number = float(number)
                if math.isfinite(number):
                    signals[f"check.{check.name}.{key}"] = number
    return signals


def attempt_signals(
    spec: StepSpec,
    value: Any,
    parsed: Any,
    inp: StepInput,
    user_text: str,
    usage: Mapping[str, Any] | None,
    outcomes: Sequence[CheckOutcome],
) -> dict[str, float]:
    """The numbers of one attempt that reached the verifier with a candidate."""
    signals = check_scores(outcomes, parsed, inp)
    signals["input_chars"] = float(len(user_text))
    signals["output_chars"] = float(len(json.dumps(value, sort_keys=True, default=str)))
    if usage:
        signals["output_tokens"] = float(usage.get("output_tokens") or 0)
        if usage.get("confidence") is not None:
            signals["logprob_confidence"] = float(usage["confidence"])
    if spec.confidence_field and parsed is not None:
        own = getattr(parsed, spec.confidence_field, None)
        if isinstance(own, int | float) and math.isfinite(float(own)):
            signals["self_confidence"] = float(own)
    return signals
