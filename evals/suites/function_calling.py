"""bfcl suite: the tool caller on BFCL single-turn function calling (simple, multiple,
irrelevance), through the `function_calling` graph.

Each case's functions go to the graph as the caller's functions (BFCL types mapped to JSON
Schema, see `FunctionDoc.openai_function`); the graph returns one verified call or none.
Graded as BFCL's AST checker grades (`evals.evaluators.function_calls`): the right
function, every required argument, each value among the accepted ones; for irrelevance,
no call at all. A run that ends with a human or an error made no decision and fails the
case, even on irrelevance (an abstention by exhaustion is not a correct "no call").

Verifier ground truth: a candidate of the `call` step is right iff it alone would pass the
case (a declined call is right exactly on irrelevance cases).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tierflow.evals.datasets import Case, default_dataset_file
from tierflow.evals.datasets.bfcl import FunctionCallDataset, load_bfcl
from tierflow.evals.evaluators.base import EvaluationResult, verdict
from tierflow.evals.evaluators.function_calls import FunctionCallMatch
from tierflow.evals.harness.suite import GraphOutcome, StepTruth, Suite
from tierflow.model_tiers import ConfigError

__all__ = ["SUITES", "BFCL", "calls_output", "call_is_correct", "bfcl_input"]


def _load(path: Path | None, limit: int | None, seed: int) -> FunctionCallDataset:
    dataset = load_bfcl(path if path is not None else default_dataset_file("bfcl_simple_python"), limit=limit, seed=seed)
    if any(len(case.expected.calls) > 1 for case in dataset.cases):
        raise ConfigError(
            f"{dataset.source.path}: some cases expect several calls (BFCL parallel categories); the function_calling "
            "graph makes one call per request. Use the simple, multiple or irrelevance files."
        )
    return dataset


def bfcl_input(case: Case[Any, Any]) -> dict[str, Any]:
    """The graph input for a BFCL case: the question's messages as the request, its
    functions as the caller's functions."""
    request = "\n\n".join(message.content for message in case.inputs.messages if message.content.strip())
    return {"request": request, "functions": [doc.openai_function() for doc in case.inputs.functions]}


def calls_output(outcome: GraphOutcome) -> dict[str, Any]:
    """The calls the run decided on (none when it ended without a decision), and how it ended."""
    return {
        "status": outcome.status,
        "calls": list(outcome.final.get("calls") or []) if outcome.status == "done" else [],
        "reply": outcome.final.get("reply"),
        "decided_by": outcome.decided_by("call"),
        "stopped_at": outcome.stopped_at,
    }


class DecidedCallMatch:
    """`FunctionCallMatch` on the run's calls, failing a run that reached no decision."""

    name = "function_call_match"

    def evaluate(self, output: Any, case: Case[Any, Any]) -> EvaluationResult:
        status = output.get("status") if isinstance(output, Mapping) else None
        if status != "done":
            stopped_at = output.get("stopped_at") if isinstance(output, Mapping) else None
            return verdict(self.name, False, f"the run ended '{status}' (stopped at {stopped_at}) without a decision")
        return FunctionCallMatch(name=self.name).evaluate(output.get("calls") or [], case)


class CalledWhenRelevant:
    """Relevance detection alone: a call was made iff the case expects one."""

    name = "relevance"

    def evaluate(self, output: Any, case: Case[Any, Any]) -> EvaluationResult:
        if not isinstance(output, Mapping) or output.get("status") != "done":
            return verdict(self.name, False, "the run reached no decision")
        called, expected = bool(output.get("calls")), bool(case.expected.calls) or case.expected.any_call
        why = f"{'called' if called else 'made no call'}; the case expects {'a call' if expected else 'none'}"
        return verdict(self.name, called == expected, why)


def call_is_correct(value: Any, case: Case[Any, Any]) -> bool | None:
    """A `call` candidate ({"name", "args"}, or name None for no call) alone passes the case."""
    if not isinstance(value, Mapping) or "name" not in value:
        return False
    calls = [] if value["name"] is None else [{"name": value["name"], "arguments": value.get("args") or {}}]
    return bool(FunctionCallMatch().evaluate(calls, case).passed)


BFCL = Suite(
    name="bfcl",
    graph="function_calling",
    description=(
        "BFCL v4 single-turn function calling (simple_python, multiple, irrelevance files): the graph's one verified "
        "call, or no call, against BFCL's possible answers (AST match); irrelevance passes only with no call."
    ),
    dataset="bfcl",
    load=_load,
    to_input=bfcl_input,
    to_output=calls_output,
    evaluators=(DecidedCallMatch(), CalledWhenRelevant()),
    primary="function_call_match",
    truths=(StepTruth("call", call_is_correct, "a call candidate is right iff it alone passes the case (no call: right on irrelevance)"),),
    metric_notes={
        "function_call_match": "BFCL AST match of the decided call (irrelevance: pass iff no call); a run without a decision fails",
        "relevance": "a call was made iff the case expects one (BFCL's relevance / irrelevance detection)",
    },
    notes=(
        "One file (category) per run: pass --dataset .../bfcl/BFCL_v4_<category>.json; the default is simple_python.",
        "Parallel categories (several calls per request) are refused: the graph makes one call per request.",
        "The step may decline (no call). Besides the JSON-Schema check, three soft checks (they escalate, and "
        "the top tier's answer stands with a warning) judge the answer: the function is semantically close to "
        "the request (wordllama similarity >= 0.15), a decline leaves no function at >= 0.5, and the arguments' "
        "numbers are stated in the request. Under all-slm the slm is the top tier, so they only warn.",
        "On the visible files the thresholds flag 0.7% of gold functions and 41% of irrelevance functions; "
        "77% of relevant cases (12.5% of irrelevance cases) offer a function >= 0.5. The numeric check knows "
        "common implied values (0, 1, g, c...) but not domain facts (a deck has 52 cards): it flags 21 of 400 "
        "simple_python and 4 of 200 multiple gold calls.",
    ),
)

SUITES: tuple[Suite, ...] = (BFCL,)
