"""One factory per role. Each returns a `StepSpec` bound to its role (never to a model),
which the graph builder turns into a node followed by the verifier."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypedDict, Unpack

from pydantic import BaseModel, Field, create_model

from tierflow.agents.label_ranker import LabelRanker
from tierflow.agents.spec import Check, PlanItem, StepInput, StepKind, StepSpec

__all__ = [
    "StepOptions",
    "planner",
    "classifier",
    "extractor",
    "tool_caller",
    "writer",
    "action",
    "label_model",
    "grounded_in_request",
    "Plan",
    "PlannedStep",
    "default_plan",
]


class PlannedStep(BaseModel):
    step: str = Field(description="name of one of the allowed steps")
    tool: str | None = Field(default=None, description="for tool steps: the tool to call")
    instruction: str = Field(default="", description="what this step must achieve, in one sentence")


class Plan(BaseModel):
    steps: list[PlannedStep] = Field(min_length=1, max_length=12)


class StepOptions(TypedDict, total=False):
    """What every model step's factory also takes, each optional."""

    # The step's user prompt from its input (default: the request and the verified results).
    prompt: Callable[[StepInput], str] | None
    # Domain checks of the step's output, run after the factory's own.
    checks: Iterable[Check]
    # The step sees private data: only tiers declared local may run it.
    local_only: bool


def _model_step(
    name: str,
    kind: StepKind,
    instructions: str,
    options: StepOptions,
    *own_checks: Check,
    output: type[BaseModel] | None = None,
    tools: Sequence[str] = (),
    client_tools: bool = False,
) -> StepSpec:
    """A step of `kind` (its role is the kind's name) answering with `output` (a tool step:
    a call of `tools`, or of the caller's functions), with the options all factories share;
    each factory then sets the fields that are its own (`dataclasses.replace`)."""
    return StepSpec(
        name=name,
        kind=kind,
        role=kind.value,
        instructions=instructions,
        output_model=output,
        tools=tuple(tools),
        client_tools=client_tools,
        prompt=options.get("prompt"),
        checks=(*own_checks, *options.get("checks", ())),
        local_only=options.get("local_only", False),
    )


def planner(
    name: str = "plan",
    *,
    allowed_steps: Sequence[str],
    allowed_tools: Sequence[str] = (),
    instructions: str,
    **options: Unpack[StepOptions],
) -> StepSpec:
    """The planning step (role `plan`): request -> typed plan over the allowed steps and tools."""
    steps, tools = tuple(allowed_steps), tuple(allowed_tools)

    def only_allowed(plan: Plan, _: StepInput) -> str | None:
        for i, s in enumerate(plan.steps):
            if s.step not in steps:
                return f"plan step {i} uses '{s.step}', which is not an allowed step ({', '.join(steps)})"
            if s.tool is not None and s.tool not in tools:
                return f"plan step {i} uses tool '{s.tool}', which is not allowed ({', '.join(tools) or 'none'})"
        return None

    allowed = Check("plan uses only allowed steps and tools", only_allowed)
    return _model_step(name, StepKind.PLAN, instructions, options, allowed, output=Plan)


def fenced_request(inp: StepInput) -> str:
    """The compact prompt of a step that reads only the request: the request, fenced as data."""
    return f"Customer message:\n<<<\n{inp.request}\n>>>"


def label_model(name: str, labels: Sequence[str]) -> type[BaseModel]:
    """A schema whose `label` is one of `labels` (an enum the grammar enforces) plus a confidence."""
    if not labels:
        raise ValueError("a classifier needs at least one label")
    # A Literal built at run time: a type to pydantic, a value to the type checker.
    label_type: Any = Literal[tuple(labels)]
    return create_model(
        name,
        label=(label_type, Field(description="one label from the allowed set")),
        confidence=(float, Field(ge=0.0, le=1.0, description="how sure you are, 0 to 1")),
    )


def classifier(
    name: str,
    *,
    labels: Sequence[str],
    instructions: str,
    descriptions: Mapping[str, str] | None = None,
    shortlist: int | None = None,
    fallback_label: str | None = None,
    plausible_rank: int | None = None,
    **options: Unpack[StepOptions],
) -> StepSpec:
    """A label from a fixed set, with the model's confidence (role `classify`).

    The prompt lists the candidate labels (with `descriptions`, when given). With
    `shortlist=K` it lists only the K labels whose descriptions are most similar to the
    request, most similar first; the grammar still admits every label. `fallback_label`
    (e.g. "other") is not listed but named as the answer when no label fits: listed last
    among the candidates, Qwen2.5-1.5B chose it for a third of visible Banking77 messages.
    With `plausible_rank=R`, a soft check sends a label that is not among the R most
    similar ones to a stronger tier (on the top tier it is only a warning).
    """
    allowed = frozenset(labels)
    if (shortlist or plausible_rank) and not descriptions:
        raise ValueError(f"classifier '{name}': shortlist and plausible_rank rank labels by their descriptions")
    ranker = LabelRanker({label: (descriptions or {}).get(label, label) for label in labels}) if descriptions else None

    def in_set(value: BaseModel, _: StepInput) -> str | None:
        label = getattr(value, "label", None)
        return None if label in allowed else f"label '{label}' is not one of the allowed labels"

    def candidates_prompt(inp: StepInput) -> str:
        ranked = labels if ranker is None or not shortlist else ranker.ranking(inp.request)
        offered = [label for label in ranked if label != fallback_label]
        offered = offered[:shortlist] if shortlist else offered
        lines = [f"Customer message:\n<<<\n{inp.request}\n>>>", "", "Candidate labels" + (" (most likely first):" if shortlist else ":")]
        for label in offered:
            text = descriptions.get(label) if descriptions else None
            lines.append(f"- {label}: {text}" if text else f"- {label}")
        if fallback_label:
            lines.append(f"If none of these fits because the message is not such a request at all, answer '{fallback_label}'.")
        lines.append("Answer with the one label that fits the message best, and how sure you are (0 to 1).")
        return "\n".join(lines)

    extra: list[Check] = []
    if ranker is not None and plausible_rank:

        def plausible(value: BaseModel, inp: StepInput) -> str | None:
            label = str(getattr(value, "label", ""))
            rank = ranker.rank_of(label, inp.request)
            if rank < plausible_rank:
                return None
            best = ", ".join(ranker.ranking(inp.request)[: max(3, plausible_rank)])
            return f"'{label}' is unlikely for this message (similarity rank {rank + 1}); the closest labels are {best}"

        what = "the most similar label" if plausible_rank == 1 else f"label among the {plausible_rank} most similar"
        extra.append(Check(what, plausible, soft=True))

    labelled = label_model(f"{name.title().replace('_', '')}Label", labels)
    step = _model_step(name, StepKind.CLASSIFY, instructions, options, Check("label in set", in_set), *extra, output=labelled)
    return dataclasses.replace(
        step,
        prompt=step.prompt or candidates_prompt,
        confidence_field="confidence",
        # A tier fine-tuned on this step needs neither the instructions nor the candidates:
        # the fenced message alone is about 45 tokens, against about 300 with a shortlist of 5.
        compact_prompt=fenced_request,
    )


def _normalise(text: str) -> str:
    return re.sub(r"[\s,]+", " ", text.casefold()).strip()


def grounded_in_request(*fields: str) -> Check:
    """Every listed field that has a value must occur in the request text (no invented values)."""

    def check(value: BaseModel, inp: StepInput) -> str | None:
        haystack = _normalise(inp.request)
        for f in fields:
            v = getattr(value, f, None)
            if v in (None, "", []):
                continue
            for item in v if isinstance(v, list) else [v]:
                if _normalise(str(item)) not in haystack:
                    return f"{f}='{item}' does not occur in the message; extract only values written in it"
        return None

    return Check(f"values occur in the input ({', '.join(fields)})", check)


def extractor(
    name: str,
    *,
    schema: type[BaseModel],
    instructions: str,
    grounded_fields: Sequence[str] = (),
    compact_prompt: Callable[[StepInput], str] | None = None,
    **options: Unpack[StepOptions],
) -> StepSpec:
    """Fields of a pydantic schema, out of the input (role `extract`).

    On a tier fine-tuned on compact prompts it sends `compact_prompt`, by default its own
    `prompt` or, without one, the fenced request alone (no instructions, no schema listing).
    """
    grounded = (grounded_in_request(*grounded_fields),) if grounded_fields else ()
    step = _model_step(name, StepKind.EXTRACT, instructions, options, *grounded, output=schema)
    return dataclasses.replace(step, compact_prompt=compact_prompt or step.prompt or fenced_request)


def tool_caller(
    name: str,
    *,
    tools: Sequence[str] = (),
    instructions: str,
    client_tools: bool = False,
    may_decline: bool = False,
    **options: Unpack[StepOptions],
) -> StepSpec:
    """Pick a tool and its arguments (role `tool`); validated, verified, then executed.

    With `client_tools`, the tools are the functions sent with the request and the verified
    call is returned instead of executed; with `may_decline`, "no call" is a valid answer.
    """
    step = _model_step(name, StepKind.TOOL, instructions, options, tools=tools, client_tools=client_tools)
    return dataclasses.replace(step, may_decline=may_decline)


def writer(
    name: str,
    *,
    schema: type[BaseModel],
    instructions: str,
    judge: bool = False,
    **options: Unpack[StepOptions],
) -> StepSpec:
    """A written answer (role `respond`: a reply to the customer, a summary), grounded in earlier
    verified results. Not the engine's `responder` node, which ends a run and calls no model."""
    return dataclasses.replace(_model_step(name, StepKind.RESPOND, instructions, options, output=schema), judge=judge)


def action(name: str, run: Callable[[StepInput], Any], *, checks: Iterable[Check] = ()) -> StepSpec:
    """Deterministic code as a step (retrieval, a fixed write): no model, still verified."""
    # No model runs an action, so its role maps to no tier ("action" names what it is).
    return StepSpec(name=name, kind=StepKind.ACTION, role="action", run=run, checks=tuple(checks))


def default_plan(*steps: str) -> tuple[PlanItem, ...]:
    return tuple(PlanItem(id=f"{i}:{s}", step=s) for i, s in enumerate(steps))
