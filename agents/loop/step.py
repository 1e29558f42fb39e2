"""The step node (one per declared step): one attempt on the tier the escalation state names.

It picks the tier, checks the budget, calls the model (or runs the action) and hands a
`Proposal` to the verifier. Retries and escalation are edges the verifier takes back to
this node, never loops here.
"""

from __future__ import annotations

import json
import sqlite3
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langgraph.types import Command, interrupt

from tierflow.agents.calibration import load_calibration
from tierflow.agents.context import (
    LoopNode,
    NodeRuntime,
    ServiceResolver,
    Services,
    as_jsonable,
    current_item,
    emit,
    step_input,
    step_needs,
)
from tierflow.agents.loop.common import (
    RESPONDER,
    attempt_for,
    is_yes,
    stop_for_error,
    tools_for,
    tools_text,
    usage_dump,
)
from tierflow.agents.loop.events import Event
from tierflow.agents.loop.ladder import (
    SpentBudget,
    budget_block,
    budget_state,
    cheaper_alternative,
    first_tier,
    next_tier_above,
    usable_ladder,
)
from tierflow.agents.prompts import step_messages, user_prompt
from tierflow.agents.spec import Attempt, Failure, PlanItem, Proposal, StepInput, StepKind, StepNeeds, StepSpec
from tierflow.model_tiers import InvalidModelOutput, TierConfig, TierflowError, TierMisconfigured, TierUnreachable, ToolRefusal
from tierflow.model_tiers.ledger_store.scope import current_scope
from tierflow.model_tiers.providers._tool_calling import messages_as_text

if TYPE_CHECKING:
    from tierflow.graphs.state import TieredState

__all__ = [
    "make_step_node",
    "judged",
    "Verify",
]

# The verifier's decision for a state holding the proposal to judge (agents.loop.verify).
Verify = Callable[[Mapping[str, Any], NodeRuntime], Command[str]]


def _stop(item: PlanItem, spent: SpentBudget, why: str = "") -> Command[str]:
    """End the run at `item` under the budget policy: status "stopped", the verified results
    kept, and a failure of kind "budget" that names the limit and what was spent."""
    reason = f"{spent.reason}; {why}" if why else spent.reason
    event: Event = {"type": "budget_stop", "step": item.step, "item_id": item.id, "reason": reason}
    failure: Failure = {"step": item.step, "item_id": item.id, "reason": reason, **spent.as_failure()}
    return Command(goto=RESPONDER, update={"status": "stopped", "failure": failure, "events": [event]})


def _budget_gate(
    spec: StepSpec, item: PlanItem, att: Attempt, tier: str, state: Mapping[str, Any], services: Services, needs: StepNeeds
) -> tuple[str | None, Command[str] | None, list[Event]]:
    """Apply the budget policy before a call on `tier`. Returns (tier to use, stop command, events)."""
    cfg = services.registry.config
    # Budgets are per run; a thread may hold earlier runs' ledger entries.
    spent = budget_state(cfg, [u for u in state.get("ledger") or [] if u.get("run_id") == state.get("run_id")])
    block = budget_block(cfg, spent, tier)
    if block is None or att.get("approved_over_budget") == (tier, att["number"]):
        return tier, None, []
    policy = cfg.budget.on_exhausted
    if policy == "cheaper_only":
        alt = cheaper_alternative(cfg, spec.role, needs, tier)
        if alt is not None and budget_block(cfg, spent, alt) is None:
            event: Event = {
                "type": "budget_downgrade", "step": item.step, "item_id": item.id, "from": tier, "to": alt, "reason": block.reason,
            }
            return alt, None, [event]
        return None, _stop(item, block, f"no cheaper tier can run '{item.step}'"), []
    if policy == "interrupt":
        answer = interrupt(
            {
                "type": "budget",
                "step": item.step,
                "item_id": item.id,
                "tier": tier,
                "reason": block.reason,
                "question": f"The run's budget is spent ({block.reason}). Allow one more call on '{tier}'? yes/no",
            }
        )
        if is_yes(answer):
            att["approved_over_budget"] = (tier, att["number"])
            return tier, None, [{"type": "budget_approved", "step": item.step, "item_id": item.id, "tier": tier}]
        return None, _stop(item, block, "a human declined to go over budget"), []
    return None, _stop(item, block), []


def _routed(
    cfg: TierConfig, spec: StepSpec, item: PlanItem, inp: StepInput, needs: StepNeeds, tier: str
) -> tuple[str, list[Event]]:
    """The tier a fresh step starts on: `tier`, or the next one up when the calibration's
    router (agents/calibration.py) expects `tier` to fail on this input."""
    if cfg.escalation.calibration is None:
        return tier, []
    found = load_calibration(cfg.escalation.calibration).for_step(spec.name)
    router = found.router if found is not None else None
    if router is None or router.tier != tier:
        return tier, []
    text = user_prompt(spec, inp)
    p_fail = router.model.probability({"input_chars": float(len(text))}, text)
    higher = next_tier_above(cfg, spec.role, needs, tier)
    if p_fail <= router.skip_above or higher is None:
        return tier, []
    event: Event = {
        "type": "skip_tier", "step": item.step, "item_id": item.id, "from": tier, "to": higher,
        "reason": f"router: p({tier} fails) {p_fail:.2f} is above {router.skip_above:.2f}",
        "p_fail": round(p_fail, 6),
    }
    return higher, [event]


def judged(
    state: Mapping[str, Any], runtime: NodeRuntime, proposal: Proposal, att: Attempt, events: Sequence[Event], verify: Verify
) -> Command[str]:
    """The attempt's proposal, judged in the same node: the verifier's decision, with the
    attempt's own events (budget decisions) first. One node per attempt means one
    checkpoint per attempt and its verdict, not two."""
    emit(runtime, {"type": "proposal", **proposal})
    decision = verify({**state, "proposal": proposal, "attempt": att}, runtime)
    update = dict(decision.update or {}) if isinstance(decision.update, Mapping) else {}
    # The verifier's own attempt state wins where it set one (an escalation, a pass).
    update = {"attempt": att, **update, "events": [*events, *update.get("events", [])]}
    return Command(goto=decision.goto, update=update)


def make_step_node(spec: StepSpec, resolve: ServiceResolver, verify: Verify) -> LoopNode:
    """The node that runs one attempt of `spec` on the tier the escalation state names,
    and has the verifier judge it (`verify`: the verifier's decision for a proposal)."""

    def step_node(state: TieredState, runtime: NodeRuntime) -> Command[str]:
        services = resolve(runtime)
        item = current_item(state)
        inp = step_input(state, item, services)
        att = attempt_for(state, item)
        att["number"] += 1
        if (scope := current_scope()) is not None:
            scope.at(item_id=item.id, step=item.step, attempt=att["number"], role=spec.role)
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
            return judged(state, runtime, proposal, att, (), verify)

        feedback = att["feedback"]
        if not services.registry.config.escalation.feedback_to_next_tier:
            feedback = [f for f in feedback if f.get("tier") == att["tier"]]
        messages = step_messages(spec, inp, feedback)
        tools = tools_for(spec, item, services, state) if spec.kind == StepKind.TOOL else []
        needs = step_needs(spec, messages_as_text(messages) + tools_text(tools))
        cfg = services.registry.config
        routed: list[Event] = []
        if att["tier"] is None:
            start = first_tier(cfg, spec.role, needs)
            if start is not None:
                start, routed = _routed(cfg, spec, item, inp, needs, start)
            att["tier"] = start
        if att["tier"] is None:
            _, skipped = usable_ladder(cfg, spec.role, needs)
            why = "; ".join(f"{t}: {r}" for t, r in skipped) or "the ladder is empty for this role"
            proposal = Proposal(**base, tier=None, error_kind="no_tier", error=f"no tier can run this step ({why})")
            return judged(state, runtime, proposal, att, (), verify)

        tier, stop, events = _budget_gate(spec, item, att, att["tier"], state, services, needs)
        if stop is not None:
            return stop
        assert tier is not None  # the gate names a tier whenever it does not stop the run
        events = [*routed, *events]
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
                        why = "the reply is JSON text, not a tool call nor a plain-text decline"
                        raise InvalidModelOutput(tier, why, raw=text[:2000], usage=reply.usage)
                    value = {"name": None, "args": None, "reply": text}
                else:
                    raise InvalidModelOutput(tier, "the reply contains no tool call", usage=reply.usage)
            else:
                reply = services.registry.call(tier, messages, schema=spec.output_model)
                value = as_jsonable(reply.value)
            proposal = Proposal(**base, value=value, usage=reply.usage.record())
        except TierMisconfigured as err:
            # Never a fallback: the next tier would pay for what a config fix makes cheap.
            proposal = Proposal(**base, error_kind="config", error=str(err), usage=usage_dump(err.usage))
            return stop_for_error(state, runtime, spec, proposal, "configuration", str(err), events)
        except TierUnreachable as err:
            proposal = Proposal(**base, error_kind="fault", error=str(err), usage=usage_dump(err.usage))
        except InvalidModelOutput as err:
            proposal = Proposal(**base, error_kind="invalid", error=err.reason, raw=err.raw, usage=usage_dump(err.usage))
        emit(runtime, {"type": "model_call", **base, "error": proposal.get("error_kind")})
        return judged(state, runtime, proposal, att, events, verify)

    step_node.__name__ = f"step_{spec.name}"
    return step_node
