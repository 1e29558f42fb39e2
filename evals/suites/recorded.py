"""recorded suite: logged traffic in the recorded-outcomes JSONL format
(model_tiers/providers/recorded.py), replayed through the `recorded` graph.

Each case is one logged input; its tiers are replay tiers answering from the same file
(`replays_dataset`: ``--dataset`` repoints them). Graded:

* ``recorded_correct``: the recorded outcome (``correct``) of the model whose answer the run
  returned. A case whose model has no recorded grade is not judged.

Step ground truth for `answer`: the same, for each candidate's model, so `tierflow
calibrate` learns from a run of this suite when the slm can be trusted, or (with no answer
text, as in RouteLLM's MMLU file) which inputs to route past it.

Convert RouteLLM's files with ``python -m tierflow.evals.datasets.recorded_convert``; cases marked
``"contaminated": true`` are dropped (as RouteLLM's evaluator drops them).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tierflow.evals.datasets.cases import Case, Dataset, DatasetSource, FrozenModel
from tierflow.evals.evaluators.base import EvaluationResult, verdict
from tierflow.evals.harness.suite import GraphOutcome, StepTruth, Suite
from tierflow.graphs.recorded import request_for
from tierflow.model_tiers import ConfigError
from tierflow.model_tiers.providers.recorded import read_recorded

__all__ = ["SUITES", "RECORDED", "RecordedInputs", "RecordedExpected", "load_recorded_cases"]


class RecordedInputs(FrozenModel):
    text: str
    group: str | None = None


class RecordedExpected(FrozenModel):
    # model -> its recorded grade (None: not recorded)
    correct: dict[str, bool | None]


def load_recorded_cases(path: Path | None, limit: int | None, seed: int) -> Dataset[RecordedInputs, RecordedExpected]:
    if path is None:
        raise ConfigError("the recorded suite has no default dataset: pass --dataset FILE.jsonl (recorded outcomes)")
    # An unreadable file, or one with no valid line, is a ConfigError naming the file.
    recorded = read_recorded(path)
    cases: list[Case[RecordedInputs, RecordedExpected]] = []
    dropped = 0
    for case in recorded.cases:
        if (case.model_extra or {}).get("contaminated") is True:
            dropped += 1
            continue
        cases.append(
            Case(
                id=case.id,
                inputs=RecordedInputs(text=case.input, group=case.group),
                expected=RecordedExpected(correct={m: o.correct for m, o in case.outcomes.items()}),
                metadata={"group": case.group} if case.group else {},
            )
        )
    dataset = Dataset[RecordedInputs, RecordedExpected](
        name=f"recorded:{Path(path).stem}",
        cases=cases,
        source=DatasetSource(path=str(path), format="tierflow recorded outcomes (JSONL)"),
        metadata={
            "models": list(recorded.models),
            "dropped_contaminated": dropped,
            "bad_lines": [str(e) for e in recorded.errors],
        },
    )
    # Stratified by the pattern of grades, so a sample keeps the models' accuracies.
    return dataset.sample(limit, seed, stratify=lambda c: tuple(sorted(c.expected.correct.items())))


def _to_input(case: Case[Any, Any]) -> dict[str, Any]:
    return {"request": request_for(case.inputs.text, case.inputs.group)}


def _output(outcome: GraphOutcome) -> dict[str, Any]:
    final = outcome.final
    return {"status": outcome.status, "answer": final.get("answer"), "model": final.get("model"), "answered_by": final.get("answered_by")}


def _grade_of(model: str | None, case: Case[Any, Any]) -> bool | None:
    if model is None:
        return None
    grade: bool | None = case.expected.correct.get(model)
    return grade


class RecordedCorrect:
    """The recorded grade of the model whose answer the run returned."""

    name = "recorded_correct"

    def evaluate(self, output: Any, case: Case[Any, Any]) -> EvaluationResult:
        model = output.get("model") if isinstance(output, Mapping) else None
        if model is None:
            return verdict(self.name, False, "the run returned no accepted answer")
        grade = _grade_of(model, case)
        if grade is None:
            return verdict(self.name, False, f"the recording has no grade of '{model}' for this case")
        return verdict(self.name, grade, f"'{model}' answered this case wrong in the recording")


def _answer_is_correct(_value: Any, case: Case[Any, Any], model: str | None) -> bool | None:
    return _grade_of(model, case)


RECORDED = Suite(
    name="recorded",
    graph="recorded",
    description="Logged traffic (recorded outcomes JSONL): each answer is graded by its model's recorded outcome.",
    dataset="recorded",
    load=load_recorded_cases,
    to_input=_to_input,
    to_output=_output,
    evaluators=(RecordedCorrect(),),
    primary="recorded_correct",
    replays_dataset=True,
    truths=(StepTruth("answer", _answer_is_correct, "a candidate is right iff its model's recorded outcome says so", model_aware=True),),
    metric_notes={"recorded_correct": "the recorded grade of the model whose answer the run returned"},
    notes=(
        "Use with replay tiers reading the same file (tiers/replay_mmlu.toml); --dataset repoints them.",
        "With a calibration artifact in the tiers file, the tiered policy routes and escalates as `tierflow calibrate` chose.",
    ),
)

SUITES: tuple[Suite, ...] = (RECORDED,)
