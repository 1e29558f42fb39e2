"""A small workflow and scripted tiers for the engine's control-flow tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, SystemMessage
from pydantic import BaseModel

from agents.workers import classifier, default_plan, extractor, responder
from graphs.builder import Workflow, build_graph
from model_tiers import TierRegistry, config_from_mapping
from model_tiers.testing import ScriptedChatModel

ROLES = ("plan", "classify", "extract", "tool", "verify", "respond", "judge")


class Amount(BaseModel):
    amount: str | None = None
    currency: str | None = None


class Reply(BaseModel):
    text: str


def toy_workflow(*, local_only_extract: bool = False) -> Workflow:
    steps = (
        classifier("classify", labels=["refund", "card_lost"], instructions="[classify] Pick the intent."),
        extractor(
            "extract",
            schema=Amount,
            instructions="[extract] Extract the amount.",
            grounded_fields=("amount", "currency"),
            local_only=local_only_extract,
        ),
        responder("reply", schema=Reply, instructions="[reply] Write the reply."),
    )
    return Workflow(
        name="toy",
        description="classify, extract, reply",
        steps=steps,
        default_plan=default_plan("classify", "extract", "reply"),
        finalize=lambda s: {"results": s.get("results", {})},
    )


def by_step(script: dict[str, list[Any]]):
    """Reply function: each step (named in its system prompt) pops its own list of replies."""
    queues = {k: list(v) for k, v in script.items()}

    def reply(messages: Sequence[BaseMessage], tools: Sequence[dict]) -> Any:
        system = next(m.content for m in messages if isinstance(m, SystemMessage))
        for step, queue in queues.items():
            if f"[{step}]" in system:
                if not queue:
                    raise AssertionError(f"no scripted reply left for step {step}")
                return queue.pop(0)
        raise AssertionError(f"no script for system prompt {system[:60]!r}")

    return reply


def registry(slm: dict[str, list[Any]], frontier: dict[str, list[Any]], **config: Any) -> tuple[TierRegistry, ScriptedChatModel, ScriptedChatModel]:
    data = {
        "tiers": [
            {"name": "slm", "provider": "scripted", "model": "s", "options": {"replies": ["unused"]},
             "price_input_per_mtok": 0.1, "price_output_per_mtok": 0.1},
            {"name": "frontier", "provider": "scripted", "model": "f", "options": {"replies": ["unused"]},
             "local": False, "price_input_per_mtok": 10.0, "price_output_per_mtok": 30.0},
        ],
        "roles": {r: ("frontier" if r == "plan" else "slm") for r in ROLES},
        **config,
    }
    reg = TierRegistry(config_from_mapping(data), env={})
    slm_model = ScriptedChatModel(replies=by_step(slm))
    top_model = ScriptedChatModel(replies=by_step(frontier))
    reg.set_model("slm", slm_model)
    reg.set_model("frontier", top_model)
    return reg, slm_model, top_model


def compile_toy(reg: TierRegistry, checkpointer: Any = None, **kw: Any) -> Any:
    return build_graph(toy_workflow(**kw), registry=reg, resources={}, checkpointer=checkpointer)
