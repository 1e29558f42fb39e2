"""recorded: replay logged traffic (recorded outcomes of a ladder of models) through the
tiered engine, to tune and check escalation with no model call.

    answer (slm) -> verify -> [calibrated check / router: answer (frontier)] -> answer

One model step, `answer` (role `extract`, which starts on the cheapest tier). Its tiers are `replay` tiers reading a recorded
outcomes file (model_tiers/providers/recorded.py): each tier answers with what its model
answered in the recording. The request holds the case's input fenced in ``<<< >>>``
(that is how the replay finds the case), after a ``Topic:`` line when the case has a group.
There are no domain checks: what decides escalation is the calibration artifact
(`tierflow calibrate`), its router above all, since a recording may hold no answer text
(RouteLLM's MMLU file records only whether each model was right).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from tierflow.agents.spec import StepInput
from tierflow.agents.workers import default_plan, extractor
from tierflow.graphs.builder import Workflow

__all__ = ["WORKFLOW", "graph", "build", "RecordedReply", "ANSWER_STEP", "request_for"]

ANSWER_STEP = "answer"


class RecordedReply(BaseModel):
    """The answer a model gave (empty where the recording holds no text)."""

    answer: str = Field(description="the answer")


def request_for(text: str, group: str | None = None) -> str:
    """The request of one recorded case: its input, fenced, after its topic if it has one."""
    topic = f"Topic: {group}\n" if group else ""
    return f"{topic}<<<\n{text}\n>>>"


def _prompt(inp: StepInput) -> str:
    return f"{inp.request}\n\nAnswer the question."


def _finalize(state: Mapping[str, Any], _resources: Mapping[str, Any]) -> dict[str, Any]:
    results = state.get("results") or {}
    decided = state.get("decided_by") or {}
    key = next((k for k in results if k.endswith(f":{ANSWER_STEP}")), None)
    # The model whose answer the run returns: the recorded outcome of that model grades it.
    accepted = [
        u for u in state.get("ledger") or []
        if key is not None and u.get("step") == key and u.get("verdict") == "pass" and u.get("run_id") == state.get("run_id")
    ]
    return {
        "answer": (results.get(key) or {}).get("answer") if key else None,
        "answered_by": decided.get(key) if key else None,
        "model": accepted[-1].get("model") if accepted else None,
        "failure": state.get("failure"),
    }


WORKFLOW = Workflow(
    name="recorded",
    description=__doc__ or "",
    steps=(
        extractor(
            ANSWER_STEP,
            schema=RecordedReply,
            instructions="Answer the question.",
            prompt=_prompt,
        ),
    ),
    default_plan=default_plan(ANSWER_STEP),
    finalize=_finalize,
)


# `build(checkpointer=..., registry=..., resources=...)` compiles it (the CLI, tests); `graph`
# is for langgraph.json: no checkpointer here, the LangGraph server brings its own.
build = WORKFLOW.compile
graph = build()
