"""Declarations of steps: what a step does, on which role, and how its output is checked.

A `StepSpec` is pure data plus small functions; the graph builder turns each one into a
LangGraph node. Steps never name a model: they name a role, and the tier ladder decides.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Required, TypeGuard

from pydantic import BaseModel
from typing_extensions import TypedDict

from tierflow.model_tiers.ledger import UsageRecord

__all__ = [
    "StepKind",
    "PlanItem",
    "StepInput",
    "Check",
    "StepSpec",
    "ToolBox",
    "ErrorKind",
    "Feedback",
    "Fault",
    "Attempt",
    "Proposal",
    "StepNeeds",
    "ToolResult",
    "is_tool_result",
    "BudgetName",
    "SpentBudgetFields",
    "FailureKind",
    "Failure",
]


class StepKind(StrEnum):
    PLAN = "plan"
    CLASSIFY = "classify"
    EXTRACT = "extract"
    TOOL = "tool"
    RESPOND = "respond"
    ACTION = "action"  # deterministic code, no model call (retrieval, a fixed write...)


class PlanItem(BaseModel):
    """One entry of a run's plan: which declared step runs, and (for tool steps) with which tool."""

    id: str
    step: str
    tool: str | None = None
    instruction: str = ""


@dataclass(frozen=True)
class StepInput:
    """Everything a step may look at: the request, verified results so far, its plan item."""

    request: str
    results: Mapping[str, Any]
    item: PlanItem
    resources: Mapping[str, Any]
    run_id: str = ""
    decided_by: Mapping[str, str] = field(default_factory=dict)
    # The caller's functions (graphs whose tool steps use client tools), as validated dicts.
    functions: Sequence[Mapping[str, Any]] = ()

    def result_of(self, step: str) -> Any:
        """The verified output of the latest plan item that ran `step` (None if none did)."""
        for key in reversed(list(self.results)):
            if key == step or key.endswith(f":{step}"):
                return self.results[key]
        return None


# A check returns None when the value passes, else the reason it fails (fed back to the model).
CheckFn = Callable[[Any, StepInput], str | None]
# A check's raw scores (name -> number): what `tierflow calibrate` learns from, recorded
# with every verdict whether the check passed or not.
ScoreFn = Callable[[Any, StepInput], Mapping[str, float]]


@dataclass(frozen=True)
class Check:
    """A deterministic domain check the verifier runs on a step's candidate output.

    A `soft` check is a heuristic that asks for a second opinion rather than an invariant:
    it fails a candidate only while a higher tier can still take the step, and sends it
    straight there (no same-tier retry); on the top tier its objection is recorded as a
    warning and the answer stands (no human review for it).
    """

    name: str
    fn: CheckFn
    soft: bool = False
    scores: ScoreFn | None = None

    def __call__(self, value: Any, inp: StepInput) -> str | None:
        return self.fn(value, inp)


@dataclass(frozen=True)
class ToolBox:
    """The tools a graph offers its tool steps, and which of them need a human's yes first."""

    tools: Mapping[str, Any]  # name -> langchain BaseTool (what a model is shown)
    # execute(name, args, idempotency_key): runs the tool; writes apply once per key.
    execute: Callable[[str, dict[str, Any], str], Any]
    # name -> function(args) returning the question to ask, or None when no confirmation is needed
    confirm: Mapping[str, Callable[[dict[str, Any]], str | None]] = field(default_factory=dict)
    writes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class StepSpec:
    """One declared step of a workflow.

    `output_model` is the pydantic schema the model must produce (structured output);
    tool steps produce a tool call instead, action steps run `run` with no model at all.
    """

    name: str
    kind: StepKind
    role: str
    instructions: str = ""
    output_model: type[BaseModel] | None = None
    prompt: Callable[[StepInput], str] | None = None
    checks: tuple[Check, ...] = ()
    tools: tuple[str, ...] = ()
    run: Callable[[StepInput], Any] | None = None
    local_only: bool = False
    judge: bool = False
    # Label steps report a self-assessed confidence the verifier can threshold.
    confidence_field: str | None = None
    # Tool steps: the functions come with the request (state "functions") and the verified
    # call is returned to the caller, not executed (see agents/client_tools.py).
    client_tools: bool = False
    # Tool steps: answering without any call is a valid outcome (tool_choice "auto").
    may_decline: bool = False
    # The whole prompt (one user turn) a tier declared `prompt = "compact"` is sent: such a
    # tier was fine-tuned on this step, so the candidates and schema need not be spelled out.
    compact_prompt: Callable[[StepInput], str] | None = None

    def __post_init__(self) -> None:
        if self.kind == StepKind.ACTION and self.run is None:
            raise ValueError(f"action step '{self.name}' needs a run function")
        if self.kind in (StepKind.PLAN, StepKind.CLASSIFY, StepKind.EXTRACT, StepKind.RESPOND) and self.output_model is None:
            raise ValueError(f"{self.kind} step '{self.name}' needs an output_model")
        if self.kind == StepKind.TOOL and not self.tools and not self.client_tools:
            raise ValueError(f"tool step '{self.name}' needs at least one tool (or client_tools=True)")
        if self.kind != StepKind.TOOL and (self.client_tools or self.may_decline):
            raise ValueError(f"step '{self.name}': client_tools and may_decline apply to tool steps only")

    @property
    def uses_model(self) -> bool:
        return self.kind != StepKind.ACTION

    @property
    def executes_tools(self) -> bool:
        """Whether a verified call of this step runs here (the act node) rather than at the caller."""
        return self.kind == StepKind.TOOL and not self.client_tools


@dataclass(frozen=True)
class StepNeeds:
    """What a step requires of a tier before it may run there."""

    tools: bool = False
    structured: bool = False
    prompt_tokens: int = 0
    local_only: bool = False


# -- what the loop's nodes hand each other -----------------------------------------------------
# TypedDicts, not models: they live in checkpointed state, which stores plain JSON-like data.

ErrorKind = Literal["fault", "invalid", "config", "action_error", "no_tier"]


class Feedback(TypedDict):
    """A rejected candidate, fed back to the next try: the value, why, and on which tier."""

    candidate: Any
    reason: str
    tier: str | None


class Fault(TypedDict):
    """A tier that did not answer (the step fell back from it)."""

    tier: str | None
    reason: str


class Attempt(TypedDict):
    """Where one plan item stands on the ladder: its tier, tries there, attempts made,
    the feedback so far and the faults; `approved_over_budget` is (tier, attempt number)
    when a human allowed that one call over budget."""

    item_id: str
    tier: str | None
    tries: int
    number: int
    feedback: list[Feedback]
    faults: list[Fault]
    approved_over_budget: tuple[str, int] | list[Any] | None


class Proposal(TypedDict, total=False):
    """One attempt's outcome, handed from the step node to the verifier: the candidate
    `value` with its `usage`, or an `error_kind` with the `error` (and the model's `raw`
    text, for invalid output)."""

    item_id: str
    step: str
    attempt: int
    tier: str | None
    value: Any
    usage: UsageRecord | None
    error_kind: ErrorKind
    error: str
    raw: str


class ToolResult(TypedDict, total=False):
    """The verified result of a tool step, as `results` holds it: the call and what became
    of it (done: executed here; proposed: a client call handed back to the caller;
    declined: a human said no; no_call: the model chose to call nothing, and `reply` says why)."""

    tool: Required[str | None]
    args: Required[dict[str, Any] | None]  # the call's JSON arguments
    status: Required[Literal["done", "proposed", "declined", "no_call"]]
    output: Any  # done: what the tool returned, as JSON
    reply: str  # no_call: the model's text instead of a call


def is_tool_result(value: object) -> TypeGuard[ToolResult]:
    """Whether a verified result (a value of `results`) is a tool step's."""
    return isinstance(value, Mapping) and "tool" in value and "status" in value


BudgetName = Literal["max_cost_usd", "max_frontier_calls"]


class SpentBudgetFields(TypedDict):
    """What a stopped run's failure adds about the budget it spent (`SpentBudget.as_failure`)."""

    kind: Literal["budget"]
    budget: BudgetName
    limit: float
    spent: float


FailureKind = Literal["configuration", "bug", "budget"]


class Failure(TypedDict, total=False):
    """Why a run did not finish (state's `failure`): the step and the reason, plus what the
    way it ended adds. A failed or rejected step: its candidates and faults; an error: its
    kind ("configuration" or "bug", with the traceback); a budget stop: kind "budget" with
    the limit and the spend."""

    step: Required[str]
    reason: Required[str]
    item_id: str
    kind: FailureKind
    traceback: str
    candidates: list[Feedback]
    faults: list[Fault]
    budget: BudgetName
    limit: float
    spent: float

