"""The verifier: where a candidate passes (and the run goes on), retries, climbs the
ladder, or stops at a human. It runs inside each step's node, on that attempt's proposal.

Checks run cheapest first: schema validity (already enforced when the proposal was parsed;
a parse failure arrives here as `invalid`), the tool's argument schema, the graph's
deterministic domain checks, the confidence threshold, then an optional LLM judge.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.types import Command
from pydantic import BaseModel, Field, ValidationError

from tierflow.agents.calibration import CalibratedCheck, answer_text, load_calibration
from tierflow.agents.client_tools import call_problem
from tierflow.agents.context import NodeRuntime, ServiceResolver, Services, current_item, step_input, step_needs
from tierflow.agents.loop.common import (
    ACT,
    HUMAN_REVIEW,
    RESPONDER,
    attempt_for,
    commit_and_advance,
    ledger_row,
    next_node,
    plan_items,
    stop_for_error,
    tool_result,
    tools_for,
    tools_text,
)
from tierflow.agents.loop.events import Event
from tierflow.agents.loop.ladder import Decision, after_failure, after_fault, has_higher_tier
from tierflow.agents.loop.step import Verify
from tierflow.agents.prompts import user_prompt
from tierflow.agents.signals import CheckOutcome, attempt_signals
from tierflow.agents.spec import Failure, PlanItem, Proposal, StepInput, StepKind, StepNeeds, StepSpec
from tierflow.model_tiers import TierConfig, TierflowError
from tierflow.model_tiers.ledger import UsageRecord
from tierflow.model_tiers.ledger_store.scope import labelled_calls

__all__ = [
    "make_verifier",
    "JudgeVerdict",
    "tool_reason",
    "Escalate",
]


class Escalate(Protocol):
    """The ladder climb after a failed verdict or a fault (the act node's, on a tool's refusal)."""

    def __call__(
        self, state: Mapping[str, Any], runtime: NodeRuntime, reason: str, *,
        fault: bool = False, soft: bool = False, extra: dict[str, Any] | None = None,
    ) -> Command[str]: ...


class JudgeVerdict(BaseModel):
    ok: bool = Field(description="true only if the answer is correct, complete and grounded")
    reason: str = Field(description="one sentence")


def tool_reason(spec: StepSpec, item: PlanItem, value: Mapping[str, Any], services: Services, state: Mapping[str, Any]) -> str | None:
    """Why a proposed call (or no call) does not fit the step's tools (None when it does)."""
    name = value.get("name")
    if name is None:
        return None if spec.may_decline else "no tool call; this step must call a tool"
    if spec.client_tools:
        functions = [f for f in state.get("functions") or [] if not item.tool or f["name"] == item.tool]
        return call_problem(functions, name, value.get("args"))
    resolve_tools = services.toolbox.tools if services.toolbox else {}
    allowed = [item.tool] if item.tool else list(spec.tools)
    if name not in allowed or name not in resolve_tools:
        return f"unknown tool '{name}'; this step may call: {', '.join(allowed)}"
    tool = resolve_tools[name]
    schema = getattr(tool, "args_schema", None)
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        unknown = sorted(str(k) for k in (value.get("args") or {}) if k not in schema.model_fields)
        if unknown and schema.model_config.get("extra") != "allow":
            return f"{unknown} are not arguments of '{name}'; it takes: {', '.join(schema.model_fields) or 'none'}"
        try:
            schema.model_validate(value.get("args") or {})
        except ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(x) for x in first["loc"])
            return f"arguments of '{name}' are invalid: {loc}: {first['msg']}"
    return None


def _normalised_call(spec: StepSpec, value: Mapping[str, Any], services: Services) -> Mapping[str, Any]:
    """A tool call with its arguments as the tool's own schema reads them (an id written
    without its prefix, say), so the domain checks judge, and the act node runs, what the
    tool will receive. Called only once the arguments validated."""
    tools = services.toolbox.tools if services.toolbox else {}
    schema = getattr(tools.get(value["name"]), "args_schema", None)
    if spec.client_tools or not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        return value
    args = schema.model_validate(value.get("args") or {}).model_dump(mode="json", exclude_unset=True)
    return {**value, "args": args}


def _judge(services: Services, spec: StepSpec, inp: StepInput, value: Any) -> tuple[str | None, list[UsageRecord], list[Event]]:
    """Optional LLM judge. Returns (failure reason, ledger usages, events)."""
    cfg = services.registry.config
    tier = cfg.escalation.judge_tier or cfg.roles["judge"]
    messages = [
        SystemMessage("You review another model's answer for one step of a workflow. Be strict."),
        HumanMessage(f"Step: {spec.name}\nInstructions: {spec.instructions}\n\n{user_prompt(spec, inp)}\n\nAnswer to review:\n{value}"),
    ]
    try:
        with labelled_calls(f"{spec.name}.judge", role="judge"):
            reply = services.registry.call(tier, messages, schema=JudgeVerdict)
    except TierflowError as err:
        # An unusable judge is recorded, and the step keeps the verdict of the cheaper checks.
        return None, [], [{"type": "judge_fault", "step": spec.name, "tier": tier, "reason": str(err)}]
    # The judge runs inside the step's node; its rows are the step's, apart by role and name.
    usage: UsageRecord = {
        **reply.usage.record(), "role": "judge", "node": f"{spec.name}.judge", "verdict": "pass" if reply.value.ok else "fail",
    }
    return (None if reply.value.ok else f"judge: {reply.value.reason}"), [usage], []


def _calibrated_check(cfg: TierConfig, step: str, tier: str | None) -> CalibratedCheck | None:
    """The calibrated check for `step`'s answers on `tier` (None when there is none)."""
    if cfg.escalation.calibration is None or tier is None:
        return None
    found = load_calibration(cfg.escalation.calibration).for_step(step)
    check = found.check if found is not None else None
    return check if check is not None and check.tier == tier else None


def _needs(spec: StepSpec, item: PlanItem, services: Services, state: Mapping[str, Any]) -> StepNeeds:
    """What the step needs of a tier (as the step node estimates it), for ladder decisions."""
    inp = step_input(state, item, services)
    tools = tools_for(spec, item, services, state) if spec.kind == StepKind.TOOL else []
    return step_needs(spec, user_prompt(spec, inp) + tools_text(tools))


def make_verifier(
    steps: Mapping[str, StepSpec], resolve: ServiceResolver, default_plan: Sequence[PlanItem]
) -> tuple[Verify, Escalate]:
    """Return (verify, escalate): the verifier's decision for a state holding a proposal (each
    step node calls it on its own attempt), and the ladder climb the act node shares."""

    def escalate(
        state: Mapping[str, Any], runtime: NodeRuntime, reason: str, *,
        fault: bool = False, soft: bool = False, extra: dict[str, Any] | None = None,
    ) -> Command[str]:
        services = resolve(runtime)
        cfg = services.registry.config
        item = current_item(state)
        spec = steps[item.step]
        proposal = state.get("proposal") or {}
        att = attempt_for(state, item)
        update: dict[str, Any] = dict(extra or {})
        events: list[Event] = list(update.pop("events", []))
        tier = att.get("tier")
        if fault:
            att["faults"].append({"tier": tier, "reason": reason})
        else:
            att["feedback"].append({"candidate": proposal.get("value"), "reason": reason, "tier": tier})
            att["tries"] += 1
        decision: Decision
        if not spec.uses_model or tier is None:
            decision = Decision("top", None, reason)
        else:
            needs = _needs(spec, item, services, state)
            # A soft check asks for a second opinion: the same tier again rarely gives one
            # (BFCL, embedded slm: 1 rescue in 40 retries), so it goes straight up.
            tries = max(att["tries"], cfg.escalation.max_retries + 1) if soft else att["tries"]
            decision = (after_fault if fault else after_failure)(cfg, spec.role, needs, tier, *(() if fault else (tries,)))
        event: Event = {"type": decision.action, "step": item.step, "item_id": item.id, "from": tier, "to": decision.tier, "reason": reason}
        events.append(event)
        if decision.tier is not None:
            if decision.tier != tier:
                att["tier"], att["tries"] = decision.tier, 0
            return Command(goto=item.step, update={**update, "attempt": att, "proposal": None, "events": events})
        if spec.kind == StepKind.PLAN:
            plan = [state["plan"][0], *plan_items([p.model_dump() for p in default_plan], start=1)]
            events.append({"type": "default_plan", "step": item.step, "reason": reason})
            goto = next_node(state, runtime, plan=plan, cursor=1)
            fallback_plan = {"plan": plan, "plan_source": "default", "cursor": 1, "attempt": None, "proposal": None, "events": events}
            return Command(goto=goto, update={**update, **fallback_plan})
        if cfg.escalation.on_top_failure == "interrupt":
            return Command(goto=HUMAN_REVIEW, update={**update, "attempt": att, "events": events})
        failure: Failure = {"step": item.step, "item_id": item.id, "reason": reason, "candidates": att["feedback"], "faults": att["faults"]}
        return Command(goto=RESPONDER, update={**update, "attempt": att, "status": "failed", "failure": failure, "events": events})

    def verify(state: Mapping[str, Any], runtime: NodeRuntime) -> Command[str]:
        services = resolve(runtime)
        cfg = services.registry.config
        item = current_item(state)
        spec = steps[item.step]
        proposal: Proposal = state["proposal"]
        inp = step_input(state, item, services)
        kind = proposal.get("error_kind")
        if kind == "fault":
            ledger = ledger_row(proposal, spec, state, "fault", proposal["error"])
            return escalate(state, runtime, proposal["error"], fault=True, extra={"ledger": ledger})

        reason: str | None = None
        value: Any = proposal.get("value")  # the candidate: JSON of the step's output, or a tool call
        usages: list[UsageRecord] = []
        events: list[Event] = []
        if kind is not None:
            reason = f"{kind}: {proposal.get('error')}"
        elif spec.kind == StepKind.TOOL:
            reason = tool_reason(spec, item, value, services, state)
            if reason is None and value.get("name") is not None:
                value = _normalised_call(spec, value, services)
        parsed: Any = value
        if reason is None and spec.output_model is not None:
            try:
                parsed = spec.output_model.model_validate(value)
            except ValidationError as err:
                reason = f"schema: {err.errors()[0]['msg']} at {err.errors()[0]['loc']}"
        warnings: list[str] = []
        soft_failure = False
        tier = proposal.get("tier")
        soft_checks = any(c.soft for c in spec.checks)
        can_climb = (
            soft_checks
            and tier is not None
            and cfg.tier(tier).soft_checks
            and has_higher_tier(cfg, spec.role, _needs(spec, item, services, state), tier)
        )
        outcomes: list[CheckOutcome] = []
        signals: dict[str, float] | None = None
        running = ""
        try:
            for check in spec.checks if reason is None else ():
                running = f"check '{check.name}'"
                problem = check(parsed, inp)
                outcomes.append((check, problem))
                if problem and check.soft and not can_climb:
                    warnings.append(f"{check.name}: {problem}")
                elif problem:
                    reason, soft_failure = f"{check.name}: {problem}", check.soft
                    break
            if kind is None and (spec.output_model is None or isinstance(parsed, BaseModel)):
                running = "the scores of the checks"
                signals = attempt_signals(spec, value, parsed, inp, user_prompt(spec, inp), proposal.get("usage"), outcomes)
        except Exception as err:
            # A check that crashes is a bug in the check, not the model's mistake: feeding
            # it back would turn the bug into frontier cost. The run stops and says so.
            why = f"{running} raised {type(err).__name__}: {err}"
            return stop_for_error(state, runtime, spec, proposal, "bug", why, events, detail=traceback.format_exc())
        threshold = cfg.escalation.confidence_threshold
        if reason is None and threshold is not None and spec.confidence_field:
            conf = float(getattr(parsed, spec.confidence_field, 1.0))
            if conf < threshold:
                reason = f"confidence {conf:.2f} is below the threshold {threshold:.2f}"
        calibrated = _calibrated_check(cfg, spec.name, tier)
        if reason is None and calibrated is not None and signals is not None:
            p_right = calibrated.model.probability(signals, user_prompt(spec, inp), answer_text(value))
            signals["p_right"] = round(p_right, 6)
            if p_right < calibrated.escalate_below:
                objection = f"calibrated p(right) {p_right:.2f} is below {calibrated.escalate_below:.2f}"
                # calibrated.tier is this proposal's tier (_calibrated_check matched them).
                if has_higher_tier(cfg, spec.role, _needs(spec, item, services, state), calibrated.tier):
                    reason, soft_failure = f"calibration: {objection}", True
                else:
                    warnings.append(f"calibration: {objection}")
        if reason is None and spec.judge:
            reason, usages, events = _judge(services, spec, inp, value)
        verdict: Literal["pass", "fail"] = "pass" if reason is None else "fail"
        judge_entries: list[UsageRecord] = [
            {**u, "run_id": state.get("run_id"), "step": item.id, "attempt": proposal.get("attempt", 0)} for u in usages
        ]
        ledger = ledger_row(proposal, spec, state, verdict, reason, signals) + judge_entries
        verdict_event: Event = {
            "type": "verdict", "step": item.step, "item_id": item.id, "tier": proposal.get("tier"), "attempt": proposal.get("attempt"),
            "verdict": verdict, "reason": reason,
        }
        if signals is not None:
            verdict_event["signals"] = signals
        if warnings:  # soft checks that objected where no second opinion is asked: recorded, not enforced
            verdict_event["warnings"] = warnings
        events.append(verdict_event)
        if reason is not None:
            return escalate(state, runtime, reason, soft=soft_failure, extra={"ledger": ledger, "events": events})
        if spec.executes_tools and value.get("name") is not None:
            return Command(goto=ACT, update={"ledger": ledger, "events": events, "proposal": {**proposal, "value": value}})
        if spec.kind == StepKind.PLAN:
            plan = [state["plan"][0], *plan_items(value["steps"], start=1)]
            update = {
                "ledger": ledger, "events": events, "attempt": None, "proposal": None, "plan": plan, "plan_source": "planner", "cursor": 1,
            }
            return Command(goto=next_node(state, runtime, plan=plan, cursor=1), update=update)
        result = tool_result(value, "proposed") if spec.kind == StepKind.TOOL else value
        return commit_and_advance(state, runtime, item, result, proposal.get("tier") or "code", events, ledger=ledger)

    return verify, escalate
