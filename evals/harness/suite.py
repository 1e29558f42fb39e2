"""A `Suite` declares how one graph is evaluated on one dataset.

It says which graph runs, where its cases come from, how a case becomes the graph's input,
how the graph's end state becomes a gradable output, which evaluators grade it, which
run-level metrics are computed over all cases, and - for verifier precision/recall - how to
tell from the ground truth whether one step's candidate answer was right.

The harness (runner, report, CLI) knows nothing about any particular graph; everything
graph-specific lives in a suite module under `evals/suites/`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tierflow.evals.datasets import Case, Dataset
from tierflow.evals.evaluators.base import EvaluationResult, evaluator_name, run_evaluator

__all__ = [
    "OutcomeStatus",
    "GraphOutcome",
    "StepTruth",
    "Aggregate",
    "Suite",
    "EvaluatorLike",
    "on_output_field",
]

# How a case's run ended. `needs_human`: the graph paused at an interrupt (human review, a
# confirmation, a budget question); `error`: the graph raised instead of ending.
OutcomeStatus = Literal["done", "failed", "stopped", "rejected", "needs_human", "error"]

EvaluatorLike = Any  # an object with `name` and `evaluate(output, case)`, or a function (output, case)


@dataclass(frozen=True)
class GraphOutcome:
    """What a suite's `to_output` sees: how the run ended and the graph's full state."""

    status: OutcomeStatus
    values: Mapping[str, Any]
    interrupt: Mapping[str, Any] | None = None
    error: str | None = None
    resources: Mapping[str, Any] | None = None

    def result_of(self, step: str) -> Any:
        """The verified result of the latest plan item that ran `step` (None if none did)."""
        results = self.values.get("results") or {}
        for key in reversed(list(results)):
            if key == step or key.endswith(f":{step}"):
                return results[key]
        return None

    def decided_by(self, step: str) -> str | None:
        """Which tier (or "human" / "code") produced the result of `step`."""
        deciders = self.values.get("decided_by") or {}
        for key in reversed(list(deciders)):
            if key == step or key.endswith(f":{step}"):
                return str(deciders[key])
        return None

    @property
    def final(self) -> Mapping[str, Any]:
        return self.values.get("final") or {}

    @property
    def stopped_at(self) -> str | None:
        """The step the run ended on without a result: the interrupt's step, or the failure's."""
        if self.interrupt is not None:
            return self.interrupt.get("step")
        failure = self.values.get("failure") or {}
        return failure.get("step") if isinstance(failure, Mapping) else None


@dataclass(frozen=True)
class StepTruth:
    """Ground truth for one step's candidates, for the verifier's precision and recall.

    `is_correct(candidate, case)` says whether a candidate value the step proposed (None
    when the model's reply could not be parsed) is right for the case; None = unknown.
    """

    node: str
    # (candidate, case), or (candidate, case, model) where `model_aware` (below).
    is_correct: Callable[..., bool | None]
    description: str
    # The step's right answer for a case (a value of its output schema), where the dataset
    # gives one: `tierflow finetune` builds a training set from it.
    answer: Callable[[Case[Any, Any]], Mapping[str, Any]] | None = None
    # True: `is_correct(candidate, case, model)` also gets the model that proposed the
    # candidate (recorded traffic is graded by the recorded outcome of that model).
    model_aware: bool = False

    def correct_for(self, candidate: Any, case: Case[Any, Any], model: str | None) -> bool | None:
        if self.model_aware:
            return self.is_correct(candidate, case, model)
        return self.is_correct(candidate, case)


@dataclass(frozen=True)
class Aggregate:
    """A run-level metric over all (case, output) pairs (e.g. macro-F1), reported with a
    bootstrap 95% interval; `compute` is called on resamples, so keep it linear-time."""

    name: str
    compute: Callable[[Sequence[tuple[Case[Any, Any], Any]]], float]
    description: str


DatasetLoader = Callable[[Path | None, int | None, int], Dataset[Any, Any]]
# (path or None, limit, seed, split) -> the sampled dataset, for suites whose file holds splits.
SplitLoader = Callable[[Path | None, int | None, int, str], Dataset[Any, Any]]


@dataclass(frozen=True)
class Suite:
    """One graph on one dataset: inputs, outputs, graders, ground truth, policies."""

    name: str
    graph: str
    description: str
    # Folder name of the dataset under the datasets root (used to pick a suite from a path).
    dataset: str
    # (path or None for the default file, limit, seed) -> the sampled dataset.
    load: DatasetLoader
    to_input: Callable[[Case[Any, Any]], dict[str, Any]]
    to_output: Callable[[GraphOutcome], Any]
    evaluators: tuple[EvaluatorLike, ...]
    # The headline quality metric: the name of an evaluator or of an aggregate.
    primary: str
    aggregates: tuple[Aggregate, ...] = ()
    truths: tuple[StepTruth, ...] = ()
    # Confidence thresholds for `--policy sweep`; empty when no step reports a score.
    thresholds: tuple[float, ...] = ()
    default_policies: tuple[str, ...] = ("all-slm", "all-frontier", "tiered")
    # Resources the graph uses during the eval, opened once per run in the run folder (so
    # an eval never writes into the production helpdesk or database); None = the graph's own.
    open_resources: Callable[[Path], Mapping[str, Any]] | None = None
    # Upper bound on concurrent cases (a graph whose cases share mutable state may need 1).
    max_concurrency: int | None = None
    # Called before each case with the run's resources (e.g. reset a database to its
    # pristine state); a suite that sets it must set max_concurrency = 1.
    prepare_case: Callable[[Mapping[str, Any] | None, Case[Any, Any]], None] | None = None
    # Answers an interrupt's payload for the harness (e.g. "yes" to a confirmation), or
    # None to leave it to a human (the case is recorded as needs_human). When set, the
    # graph is built with an in-memory checkpointer so a run can be resumed.
    answer_interrupt: Callable[[Mapping[str, Any]], Any] | None = None
    # The steps the graders read. A case runs only until these have a verified result
    # (the run context's `stop_after`), unless the eval asks for the whole graph.
    graded_steps: tuple[str, ...] = ()
    # The dataset file is itself the recording replay tiers answer from (RouteLLM's CSVs):
    # an eval of another file points every replay tier at it.
    replays_dataset: bool = False
    # Files with several splits (CLINC150's train / val / test): the splits `--split` may
    # name, the default first, and the loader that takes one.
    splits: tuple[str, ...] = ()
    load_split: SplitLoader | None = None
    # What each evaluator measures, by name (printed in the report).
    metric_notes: Mapping[str, str] = field(default_factory=dict)
    # What the suite measures and does not, printed in the report.
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [_name_of(e) for e in self.evaluators] + [a.name for a in self.aggregates]
        if len(set(names)) != len(names):
            raise ValueError(f"suite '{self.name}': evaluator and aggregate names must be unique, got {names}")
        if self.primary not in names:
            raise ValueError(f"suite '{self.name}': primary metric '{self.primary}' is not one of {names}")
        if self.prepare_case is not None and self.max_concurrency != 1:
            raise ValueError(f"suite '{self.name}': prepare_case resets shared state, so max_concurrency must be 1")
        if bool(self.splits) != (self.load_split is not None):
            raise ValueError(f"suite '{self.name}': splits and load_split go together")
        if any(not 0.0 <= t <= 1.0 for t in self.thresholds):
            raise ValueError(f"suite '{self.name}': thresholds must be in [0, 1]")

    @property
    def metric_names(self) -> list[str]:
        return [_name_of(e) for e in self.evaluators] + [a.name for a in self.aggregates]

    def load_cases(self, path: Path | None, limit: int | None, seed: int, split: str | None = None) -> Dataset[Any, Any]:
        """The sampled cases, from `split` where the suite's file has several."""
        if split is None:
            return self.load(path, limit, seed)
        if self.load_split is None:
            from tierflow.model_tiers import ConfigError

            raise ConfigError(f"suite '{self.name}' reads one split; --split applies to suites with several (clinc150)")
        if split not in self.splits:
            from tierflow.model_tiers import ConfigError

            raise ConfigError(f"suite '{self.name}' has no split '{split}'; its splits: {', '.join(self.splits)}")
        return self.load_split(path, limit, seed, split)

    def truth_for(self, node: str) -> StepTruth | None:
        return next((t for t in self.truths if t.node == node), None)


def _name_of(evaluator: EvaluatorLike) -> str:
    return evaluator_name(evaluator)


@dataclass(frozen=True)
class _OnField:
    inner: EvaluatorLike
    key: str
    name: str

    def evaluate(self, output: Any, case: Any) -> EvaluationResult:
        value = output.get(self.key) if isinstance(output, Mapping) else None
        result = run_evaluator(self.inner, value, case)
        return result.model_copy(update={"name": self.name})


def on_output_field(evaluator: EvaluatorLike, key: str, *, name: str | None = None) -> EvaluatorLike:
    """Grade `output[key]` with an evaluator written for that one value (e.g. a label)."""
    return _OnField(evaluator, key, name or evaluator_name(evaluator))
