"""math_qa: solve a math word problem with a worked solution; the arithmetic is re-checked.

    solve (slm) -> verify (recompute the arithmetic) -> [escalate: solve (frontier)] -> answer

One model step, `solve` (role `extract`: a typed record, `MathSolution`, drawn from the
question and verified by deterministic checks, which is the extractor contract; and
`extract` starts on the cheapest tier in every shipped tiers file, where `respond` starts
on the frontier, so the graph is tiered by default). The verifier (agents/arithmetic.py)
fails a solution whose final answer is not a number, that is cut off, whose arithmetic does
not recompute, or that counts things with a fraction; `build(min_score=t)` also fails one
whose verifier score is below `t` (threshold sweeps). This is the graph of the routing
benchmark: with tiers/replay_gsm8k.toml it replays real Mixtral (slm) and GPT-4 (frontier)
answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from tierflow.agents.arithmetic import check_solution
from tierflow.agents.numbers import parse_number
from tierflow.agents.spec import Check, StepInput
from tierflow.agents.workers import default_plan, extractor
from tierflow.graphs.builder import Workflow, build_graph

__all__ = ["WORKFLOW", "graph", "build", "workflow", "MathSolution", "arithmetic_check", "SOLVE_STEP"]

SOLVE_STEP = "solve"

INSTRUCTIONS = (
    "You solve grade-school math word problems. Work step by step and write every calculation "
    "explicitly as 'a op b = c' (for example '48 / 2 = 24'). Then give the final answer as a "
    "number only, without units."
)


class MathSolution(BaseModel):
    """A worked solution and its final answer."""

    solution: str = Field(description="the worked solution, every calculation written as 'a op b = c'")
    final_answer: str = Field(description="the final answer as a number only, e.g. 18 or 2.5, no units")


def _prompt(inp: StepInput) -> str:
    # The question goes in verbatim, fenced: the replay provider finds its recording by it.
    return f"Math word problem:\n<<<\n{inp.request}\n>>>\n\nSolve it."


def arithmetic_check(min_score: float | None = None) -> Check:
    """The verifier's domain check: the strict arithmetic checks, and with `min_score`
    also the verifier score (fail when it is below `min_score`)."""
    name = "arithmetic re-check" if min_score is None else f"arithmetic re-check (score >= {min_score:g})"

    def check(value: MathSolution, inp: StepInput) -> str | None:
        report = check_solution(value.solution, value.final_answer, inp.request)
        if report.reason is not None:
            return report.reason
        if min_score is not None and report.score < min_score:
            signals = []
            if report.final_matches_last is False:
                signals.append(f"the final answer is not the last computed result ({report.last_result:g})")
            if not report.statements:
                signals.append("no calculation is written out")
            if report.question_coverage < 1:
                signals.append("some numbers of the question are not used")
            detail = "; ".join(signals) or "weak evidence"
            return f"verifier score {report.score:.2f} is below {min_score:g}: {detail}; show every calculation"
        return None

    def scores(value: MathSolution, inp: StepInput) -> dict[str, float]:
        # The raw evidence behind the verdict, for `tierflow calibrate`.
        report = check_solution(value.solution, value.final_answer, inp.request)
        return {
            "score": report.score,
            "recompute_fraction": report.recompute_fraction,
            "statements": float(report.checked),
            "wrong_statements": float(len(report.wrong)),
            "question_coverage": report.question_coverage,
            "final_is_last_result": float(report.final_matches_last is True),
            "has_final_number": float(report.final_answer is not None),
            "truncated": float(report.truncated is not None),
            "whole_number_ok": float(report.whole_number_ok),
        }

    return Check(name, check, scores=scores)


def _candidate(state: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None, bool]:
    """(solution, who produced it, verified) of the answer the run ends with."""
    results = state.get("results") or {}
    decided = state.get("decided_by") or {}
    for key, value in results.items():
        if key.endswith(f":{SOLVE_STEP}"):
            return value, decided.get(key), True
    # A top-tier failure under on_top_failure = "fail": the last candidate, unverified.
    failure = state.get("failure") or {}
    for attempt in reversed(failure.get("candidates") or []):
        if attempt.get("candidate") is not None:
            return attempt["candidate"], attempt.get("tier"), False
    return None, None, False


def _finalize(state: Mapping[str, Any], _resources: Mapping[str, Any]) -> dict[str, Any]:
    solution, answered_by, verified = _candidate(state)
    final_text = (solution or {}).get("final_answer")
    return {
        "answer": parse_number(final_text),
        "final_answer": final_text,
        "solution": (solution or {}).get("solution"),
        "answered_by": answered_by,
        "verified": verified,
        "decided_by": state.get("decided_by", {}),
        "failure": state.get("failure"),
    }


def workflow(min_score: float | None = None) -> Workflow:
    """The math_qa workflow; `min_score` adds the verifier-score threshold to the checks."""
    return Workflow(
        name="math_qa",
        description=__doc__ or "",
        steps=(
            extractor(
                SOLVE_STEP,
                schema=MathSolution,
                instructions=INSTRUCTIONS,
                prompt=_prompt,
                checks=(arithmetic_check(min_score),),
            ),
        ),
        default_plan=default_plan(SOLVE_STEP),
        finalize=_finalize,
    )


WORKFLOW = workflow()


def build(*, min_score: float | None = None, **kwargs: Any) -> Any:
    """Compile math_qa (CLI, tests, benchmark); `min_score` as in `workflow`."""
    return build_graph(WORKFLOW if min_score is None else workflow(min_score), **kwargs)


# For langgraph.json: no checkpointer here, the LangGraph server brings its own.
graph = build()
