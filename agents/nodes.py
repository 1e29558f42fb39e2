"""The step node (one per declared step) and the act node (executes verified tool calls).

A step node makes exactly one attempt: it picks the tier the escalation state says, checks
the budget, calls the model (or runs the action) and hands a *proposal* to the verifier.
Retries and escalation are edges the verifier takes back to this node, never loops here.
"""

from __future__ import annotations

import json
import sqlite3
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.types import Command, interrupt

from agents.context import (
    RESET,
    ServiceResolver,
    Services,
    as_jsonable,
    current_item,
    emit,
    step_input,
    step_needs,
)
from agents.client_tools import openai_tools
from agents.escalation import budget_block, budget_state, cheaper_alternative, first_tier, usable_ladder
from agents.prompts import step_messages
from agents.spec import Attempt, PlanItem, Proposal, StepKind, StepSpec
from model_tiers import InvalidModelOutput, TierflowError, TierMisconfigured, TierUnreachable, ToolRefusal, Usage
from model_tiers.config import coerce_context
from model_tiers.providers._tool_calling import messages_as_text

__all__ = [
    "make_step_node",
    "make_act_node",
    "new_attempt",
    "attempt_for",
    "is_yes",
    "tools_for",
    "tools_text",
    "tool_result",
    "ledger_row",
    "stop_for_error",
    "commit_and_advance",
    "next_node",
    "VERIFY",
    "DISPATCH",
    "RESPONDER",
]

VERIFY, DISPATCH, RESPONDER, ACT, HUMAN_REVIEW = "verify", "dispatch", "responder", "act", "human_review"


def new_attempt(item: PlanItem) -> Attempt:
    return Attempt(item_id=item.id, tier=None, tries=0, number=0, feedback=[], faults=[], approved_over_budget=None)


def attempt_for(state: Mapping[str, Any], item: PlanItem) -> Attempt:
    """The item's escalation state from `state` (a copy, safe to edit), or a fresh one."""
    att = state.get("attempt")
    if att and att.get("item_id") == item.id:
        return Attempt(
            item_id=att["item_id"], tier=att["tier"], tries=att["tries"], number=att["number"],
            feedback=list(att["feedback"]), faults=list(att["faults"]), approved_over_budget=att.get("approved_over_budget"),
        )
    return new_attempt(item)


def is_yes(answer: Any) -> bool:
    if isinstance(answer, Mapping):
        answer = answer.get("approve", answer.get("answer", answer.get("action")))
    if isinstance(answer, bool):
        return answer
    return str(answer).strip().lower() in {"y", "yes", "approve", "approved", "true", "ok", "confirm"}


def _stop(item: PlanItem, reason: str, events: list[dict[str, Any]]) -> Command:
    event = {"type": "budget_stop", "step": item.step, "item_id": item.id, "reason": reason}
    return Command(
        goto=RESPONDER,
        update={"status": "stopped", "failure": {"step": item.step, "reason": reason}, "events": [*events, event]},
    )


def tools_for(spec: StepSpec, item: PlanItem, services: Services, state: Mapping[str, Any]) -> list[Any]:
    """What a tool step's model is shown: the request's functions, or the toolbox's tools."""
    if spec.client_tools:
        functions = state.get("functions") or []
        return openai_tools([f for f in functions if not item.tool or f["name"] == item.tool])
    if services.toolbox is None:
        raise TierflowError(f"step '{spec.name}' calls tools but the graph has no toolbox")
    names = [item.tool] if item.tool else list(spec.tools)
    return [services.toolbox.tools[n] for n in names if n in services.toolbox.tools]


def tools_text(tools: Sequence[Any]) -> str:
    """The tool definitions as the prompt carries them (for the context-window estimate)."""
    return "\n".join(json.dumps(t if isinstance(t, Mapping) else convert_to_openai_tool(t), default=str) for t in tools)


def tool_result(value: Mapping[str, Any], status: str, output: Any = None) -> dict[str, Any]:
    """The recorded result of a tool step: done (executed here), proposed (a client call,
    returned to the caller), declined (a human said no) or no_call (the model declined)."""
    if value.get("name") is None:
        return {"tool": None, "args": None, "status": "no_call", "reply": value.get("reply", "")}
    return {"tool": value["name"], "args": dict(value.get("args") or {}), "status": status, "output": output}


def _budget_gate(
    spec: StepSpec, item: PlanItem, att: dict[str, Any], state: Mapping[str, Any], services: Services, needs: Any
) -> tuple[str | None, Command | None, list[dict[str, Any]]]:
    """Apply the budget policy before a call. Returns (tier to use, stop command, events)."""
    cfg = services.registry.config
    tier = att["tier"]
    # Budgets are per run; a thread may hold earlier runs' ledger entries.
    spent = budget_state(cfg, [u for u in state.get("ledger") or [] if u.get("run_id") == state.get("run_id")])
    block = budget_block(cfg, spent, tier)
    if block is None or att.get("approved_over_budget") == (tier, att["number"]):
        return tier, None, []
    policy = cfg.budget.on_exhausted
    if policy == "cheaper_only":
        alt = cheaper_alternative(cfg, spec.role, needs, tier)
        if alt is not None and budget_block(cfg, spent, alt) is None:
            event = {"type": "budget_downgrade", "step": item.step, "item_id": item.id, "from": tier, "to": alt, "reason": block}
            return alt, None, [event]
        return None, _stop(item, f"{block}; no cheaper tier can run '{item.step}'", []), []
    if policy == "interrupt":
        answer = interrupt(
            {
                "type": "budget",
                "step": item.step,
                "item_id": item.id,
                "tier": tier,
                "reason": block,
                "question": f"The run's budget is spent ({block}). Allow one more call on '{tier}'? yes/no",
            }
        )
        if is_yes(answer):
            att["approved_over_budget"] = (tier, att["number"])
            return tier, None, [{"type": "budget_approved", "step": item.step, "item_id": item.id, "tier": tier}]
        return None, _stop(item, f"{block}; a human declined to go over budget", []), []
    return None, _stop(item, block, []), []


def next_node(
    state: Mapping[str, Any], runtime: Any, *, plan: Sequence[Mapping[str, Any]] | None = None, cursor: int, done: Sequence[str] = ()
) -> str:
    """Where the run goes once the plan is at `cursor`: that item's step, or the responder
    when the plan is over or every step the run context's `stop_after` names has a verified
    result (`done`: plan item ids verified by the update being written)."""
    items = list(state.get("plan") or []) if plan is None else list(plan)
    if cursor >= len(items):
        return RESPONDER
    ctx = coerce_context(getattr(runtime, "context", None))
    if ctx is not None and ctx.stop_after:
        verified = {key.split(":", 1)[-1] for key in [*(state.get("results") or {}), *done] if key != RESET}
        if all(step in verified for step in ctx.stop_after):
            return RESPONDER
    return str(items[cursor]["step"])


def commit_and_advance(
    state: Mapping[str, Any], runtime: Any, item: PlanItem, result: Any, decided_by: str,
    events: Sequence[Mapping[str, Any]], **extra: Any,
) -> Command:
    """The one way a plan item ends well: its verified result and who decided it are
    committed, the escalation state is cleared, and the run goes to the next item."""
    cursor = int(state.get("cursor", 0)) + 1
    return Command(
        goto=next_node(state, runtime, cursor=cursor, done=[item.id]),
        update={
            "results": {item.id: result},
            "decided_by": {item.id: decided_by},
            "cursor": cursor,
            "attempt": None,
            "proposal": None,
            "events": list(events),
            **extra,
        },
    )


def _usage_dump(usage: object) -> dict[str, Any] | None:
    return usage.model_dump() if isinstance(usage, Usage) else None


def ledger_row(proposal: Mapping[str, Any], spec: StepSpec, state: Mapping[str, Any], verdict: str, reason: str | None) -> list[dict[str, Any]]:
    """The ledger entry of a proposal's model call (none when no request was made)."""
    usage = proposal.get("usage")
    if not usage:
        return []
    return [
        {
            **usage,
            "run_id": state.get("run_id"),
            "node": spec.name,
            "step": proposal["item_id"],
            "role": spec.role,
            "attempt": proposal.get("attempt", 0),
            "verdict": verdict,
            "reason": reason,
        }
    ]


def stop_for_error(
    state: Mapping[str, Any], runtime: Any, spec: StepSpec | None, proposal: Mapping[str, Any], kind: str, reason: str,
    events: Sequence[Mapping[str, Any]] = (), detail: str | None = None,
) -> Command:
    """End the run at this step with status "error": a misconfigured tier ("configuration")
    or a check, tool or action that crashed ("bug", with its traceback in `detail`).
    Neither is a model's mistake, so neither is fed back to a model or escalated."""
    item = current_item(state)
    verdict = "fault" if kind == "configuration" else "fail"
    failure = {"step": item.step, "item_id": item.id, "kind": kind, "reason": reason, **({"traceback": detail} if detail else {})}
    event = {"type": "run_error", "step": item.step, "item_id": item.id, "kind": kind, "reason": reason}
    return Command(
        goto=RESPONDER,
        update={
            "status": "error",
            "failure": failure,
            "ledger": ledger_row(proposal, spec, state, verdict, reason) if spec else [],
            "events": [*events, event],
        },
    )


def make_step_node(spec: StepSpec, resolve: ServiceResolver) -> Any:
    """The node that runs one attempt of `spec` on the tier the escalation state names."""

    def step_node(state: dict[str, Any], runtime: Any) -> Command:
        services = resolve(runtime)
        item = current_item(state)
        inp = step_input(state, item, services)
        att = attempt_for(state, item)
        att["number"] += 1
        base = Proposal(item_id=item.id, step=item.step, attempt=att["number"])
        proposal: Proposal

        if spec.kind == StepKind.ACTION:
            assert spec.run is not None
            try:
                proposal = Proposal(**base, tier=None, value=as_jsonable(spec.run(inp)))
            except ToolRefusal as err:
                proposal = Proposal(**base, tier=None, error_kind="action_error", error=str(err))
            except TierflowError:
                raise  # a misconfiguration or a broken resource: said as such
            except sqlite3.OperationalError:
                raise  # storage contention: the node's retry policy runs it again
            except Exception as err:
                why = f"the action '{spec.name}' raised {type(err).__name__}: {err}"
                return stop_for_error(state, runtime, None, {}, "bug", why, detail=traceback.format_exc())
            return Command(goto=VERIFY, update={"proposal": proposal, "attempt": att})

        feedback = att["feedback"]
        if not services.registry.config.escalation.feedback_to_next_tier:
            feedback = [f for f in feedback if f.get("tier") == att["tier"]]
        messages = step_messages(spec, inp, feedback)
        tools = tools_for(spec, item, services, state) if spec.kind == StepKind.TOOL else []
        needs = step_needs(spec, messages_as_text(messages) + tools_text(tools))
        cfg = services.registry.config
        if att["tier"] is None:
            att["tier"] = first_tier(cfg, spec.role, needs)
        if att["tier"] is None:
            _, skipped = usable_ladder(cfg, spec.role, needs)
            why = "; ".join(f"{t}: {r}" for t, r in skipped) or "the ladder is empty for this role"
            proposal = Proposal(**base, tier=None, error_kind="no_tier", error=f"no tier can run this step ({why})")
            return Command(goto=VERIFY, update={"proposal": proposal, "attempt": att})

        tier, stop, events = _budget_gate(spec, item, att, state, services, needs)
        if stop is not None:
            return stop
        att["tier"] = tier
        base = Proposal(**base, tier=tier)
        if cfg.tier(tier).prompt == "compact":
            messages = step_messages(spec, inp, feedback, compact=True)
        try:
            if spec.kind == StepKind.TOOL:
                choice = item.tool or ("auto" if spec.may_decline else "any")
                reply = services.registry.call(tier, messages, tools=tools, tool_choice=choice)
                calls = reply.value
                value: Any
                if calls:
                    value = {"name": calls[0]["name"], "args": calls[0]["args"]}
                elif spec.may_decline:
                    content = reply.message.content
                    text = content if isinstance(content, str) else json.dumps(content)
                    if text.lstrip().startswith(("{", "[")):
                        # JSON where a call was due is a call the model wrote as text (or
                        # broke), not a decision to make none.
                        raise InvalidModelOutput(tier, "the reply is JSON text, not a tool call nor a plain-text decline", raw=text[:2000], usage=reply.usage)
                    value = {"name": None, "args": None, "reply": text}
                else:
                    raise InvalidModelOutput(tier, "the reply contains no tool call", usage=reply.usage)
            else:
                reply = services.registry.call(tier, messages, schema=spec.output_model)
                value = as_jsonable(reply.value)
            proposal = Proposal(**base, value=value, usage=reply.usage.model_dump())
        except TierMisconfigured as err:
            # Never a fallback: the next tier would pay for what a config fix makes cheap.
            proposal = Proposal(**base, error_kind="config", error=str(err), usage=_usage_dump(err.usage))
            return stop_for_error(state, runtime, spec, proposal, "configuration", str(err), events)
        except TierUnreachable as err:
            proposal = Proposal(**base, error_kind="fault", error=str(err), usage=_usage_dump(err.usage))
        except InvalidModelOutput as err:
            proposal = Proposal(**base, error_kind="invalid", error=err.reason, raw=err.raw, usage=_usage_dump(err.usage))
        emit(runtime, {"type": "model_call", **base, "error": proposal.get("error_kind")})
        return Command(goto=VERIFY, update={"proposal": proposal, "attempt": att, "events": events})

    step_node.__name__ = f"step_{spec.name}"
    return step_node


def make_act_node(resolve: ServiceResolver, on_refusal: Any) -> Any:
    """Execute a verified tool call, after a human's yes where the toolbox asks for one.

    A tool that refuses (a policy the verifier could not see) is a failed verdict: the same
    escalation as the verifier's applies, through `on_refusal`.
    """

    def act(state: dict[str, Any], runtime: Any) -> Command:
        services = resolve(runtime)
        item = current_item(state)
        proposal = state["proposal"]
        call = proposal["value"]
        toolbox = services.toolbox
        assert toolbox is not None
        name, args = call["name"], dict(call["args"])
        confirm = toolbox.confirm.get(name)
        question = confirm(args) if confirm else None
        if question:
            answer = interrupt({"type": "confirm", "step": item.step, "item_id": item.id, "action": {"name": name, "args": args}, "question": question})
            if not is_yes(answer):
                event = {"type": "declined", "step": item.step, "item_id": item.id, "tool": name}
                return commit_and_advance(state, runtime, item, tool_result(call, "declined"), "human", [event])
        key = f"{state.get('run_id', '')}:{item.id}"
        try:
            output = toolbox.execute(name, args, key)
        except ToolRefusal as err:
            return on_refusal(state, runtime, f"the tool '{name}' refused: {err}")
        except TierflowError:
            raise  # a misconfiguration or a broken resource: said as such, not fed to a model
        except sqlite3.OperationalError:
            raise  # storage contention: the node's retry policy runs it again
        except Exception as err:
            why = f"the tool '{name}' raised {type(err).__name__}: {err}"
            return stop_for_error(state, runtime, None, {}, "bug", why, detail=traceback.format_exc())
        event = {"type": "tool_executed", "step": item.step, "item_id": item.id, "tool": name, "write": name in toolbox.writes}
        return commit_and_advance(state, runtime, item, tool_result(call, "done", as_jsonable(output)), proposal.get("tier") or "human", [event])

    return act


def plan_items(steps: Sequence[Mapping[str, Any]], start: int) -> list[dict[str, Any]]:
    return [
        PlanItem(id=f"{start + i}:{s['step']}", step=s["step"], tool=s.get("tool"), instruction=s.get("instruction", "")).model_dump()
        for i, s in enumerate(steps)
    ]
