"""math_qa suite: RouteLLM's GSM8K responses file (contaminated prompts dropped).

The graph answers a word problem (`final["answer"]`, `final["solution"]`); with
tiers/replay_gsm8k.toml its tiers replay the file's real Mixtral-8x7B (slm) and
GPT-4-1106 (frontier) answers. Graded here:

* ``math_answer_correct``: an answer whose worked solution is one of the case's recorded
  responses takes that recording's grade (the file's ground truth); any other answer is
  compared with the case's reference number (`MathAnswerCorrect`), and a case without one
  is not judged. The answer is graded whether or not it passed the verifier (under
  ``on_top_failure = "fail"`` the top tier's rejected answer is still returned);
* ``verified``: the answer returned passed the arithmetic verifier.

Verifier ground truth for `solve`: a candidate is right by the same rule (its solution's
recorded grade, else its number against the reference; unknown when neither applies).

No threshold sweep: the verifier-score threshold of math_qa is a build option
(`build(min_score=...)`), not part of the run context, and the solution reports no
confidence; `python -m tierflow.evals.bench.replay_gsm8k` sweeps it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tierflow.evals.datasets import Case, default_dataset_file
from tierflow.evals.datasets.gsm8k import MathDataset, load_routellm_gsm8k
from tierflow.evals.evaluators.base import EvaluationResult, verdict
from tierflow.evals.evaluators.numeric import MathAnswerCorrect
from tierflow.evals.harness.suite import GraphOutcome, StepTruth, Suite

__all__ = ["SUITES", "ROUTELLM_GSM8K", "math_output", "AnswerCorrect", "solve_is_correct", "verified"]

_GRADER = MathAnswerCorrect()


def _load(path: Path | None, limit: int | None, seed: int) -> MathDataset:
    return load_routellm_gsm8k(path if path is not None else default_dataset_file("routellm_gsm8k"), limit=limit, seed=seed)


def _to_input(case: Case[Any, Any]) -> dict[str, Any]:
    return {"request": case.inputs.question}


def math_output(outcome: GraphOutcome) -> dict[str, Any]:
    final = outcome.final
    return {
        "status": outcome.status,
        "answer": final.get("answer"),
        "final_answer": final.get("final_answer"),
        "solution": final.get("solution"),
        "answered_by": final.get("answered_by"),
        "verified": bool(final.get("verified")),
    }


def _grade(solution: Any, answer: Any, case: Case[Any, Any]) -> EvaluationResult:
    recorded = {case.expected.strong.response, case.expected.weak.response}
    if isinstance(solution, str) and solution in recorded:
        return _GRADER.evaluate(solution, case)
    if answer is None and solution is None:
        return verdict(_GRADER.name, False, "the run returned no answer")
    return _GRADER.evaluate(answer, case)


class AnswerCorrect:
    """The returned answer is right (see the module docstring)."""

    name = "math_answer_correct"

    def evaluate(self, output: Any, case: Case[Any, Any]) -> EvaluationResult:
        output = output if isinstance(output, Mapping) else {}
        answer = output.get("answer")
        if answer is None:
            answer = output.get("final_answer")
        return _grade(output.get("solution"), answer, case)


def verified(output: Any, case: Case[Any, Any]) -> EvaluationResult:
    ok = isinstance(output, Mapping) and output.get("verified") is True
    return verdict("verified", ok, "the returned answer did not pass the verifier (or there was none)")


def solve_is_correct(value: Any, case: Case[Any, Any]) -> bool | None:
    """A solve candidate's correctness; None when the file cannot tell."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if not isinstance(value, Mapping):
        return False
    result = _grade(value.get("solution"), value.get("final_answer"), case)
    return result.passed


ROUTELLM_GSM8K = Suite(
    name="routellm_gsm8k",
    graph="math_qa",
    description=(
        "GSM8K word problems from RouteLLM's responses file (contaminated prompts dropped): the returned answer is "
        "graded by the recorded grade of the response it replays, else against the reference number."
    ),
    dataset="routellm_gsm8k",
    load=_load,
    to_input=_to_input,
    to_output=math_output,
    evaluators=(AnswerCorrect(), verified),
    primary="math_answer_correct",
    replays_dataset=True,
    truths=(
        StepTruth(
            "solve", solve_is_correct, "a solve candidate is right iff its recorded grade (else its number vs the reference) says so"
        ),
    ),
    metric_notes={
        "math_answer_correct": "the returned answer is right (recorded grade of the replayed response, else the reference number)",
        "verified": "the returned answer passed the arithmetic verifier (unverified answers are returned under on_top_failure=fail)",
    },
    notes=(
        "Use with --tiers tiers/replay_gsm8k.toml to replay the file's real Mixtral (slm) and GPT-4 (frontier) answers; "
        "with --dataset, every replay tier replays that file (the tiers file names gsm8k_responses_even.csv).",
        "Sampling with --limit is stratified by (Mixtral correct, GPT-4 correct), seed 0 unless --seed.",
        "No threshold sweep here (no confidence in the run context); evals.bench.replay_gsm8k sweeps the verifier score.",
    ),
)

SUITES: tuple[Suite, ...] = (ROUTELLM_GSM8K,)
