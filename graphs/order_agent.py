"""order_agent: a retail customer-service agent over tau2-bench's retail database.

    router -> [plan (frontier)] -> identify -> inspect ... -> change ... -> [handoff] -> reply
                                   (each tool step: slm proposes a call -> DB checks -> act)

The router sends a request it finds simple (one order, one change, the ids it needs, all in
the message: `needs_plan`) down the declared default plan; anything else goes to the
planner, which turns the request into tool steps over the allowed tools (and falls back to
the default plan when it cannot produce a valid plan). Tool steps run on the `tool` role;
the verifier checks every proposed call against the database before it runs
(graphs/order_agent_checks.py); a change asks the customer for an explicit yes first, and
writes are idempotent per run step, so a resumed run never applies one twice. The final
output holds the reply, every executed action and the database's state hash.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from tierflow.agents.spec import Check, PlanItem, StepInput, ToolBox
from tierflow.agents.workers import Plan, planner, tool_caller, writer
from tierflow.graphs.builder import Workflow
from tierflow.graphs.order_agent_checks import (
    CHANGE_TOOLS,
    HANDOFF_TOOLS,
    IDENTIFY_TOOLS,
    ORDER_CHECKS,
    READ_TOOLS,
    RESOURCE_KEY,
    identified_user,
    request_facts,
    retail_db,
    tool_results,
)
from tierflow.tools.retail import WRITE_TOOL_NAMES, RetailDB, RetailToolError, call_retail_tool, retail_tools

__all__ = [
    "WORKFLOW",
    "graph",
    "build",
    "CustomerReply",
    "DEFAULT_PLAN",
    "STEP_TOOLS",
    "TRANSFER_SENTENCE",
    "needs_plan",
    "tool_prompt",
    "reply_prompt",
    "retail_toolbox",
    "confirmation_question",
    "finalize",
]

TRANSFER_SENTENCE = "YOU ARE BEING TRANSFERRED TO A HUMAN AGENT. PLEASE HOLD ON."
STEP_TOOLS: dict[str, tuple[str, ...]] = {
    "identify": IDENTIFY_TOOLS,
    "inspect": READ_TOOLS,
    "change": CHANGE_TOOLS,
    "handoff": HANDOFF_TOOLS,
    "reply": (),
}
# A request is simple when the default plan has all it needs: an email to authenticate
# with (so the identify call is forced, not chosen), and a change that needs no look-up
# beyond the order; item swaps only when the message names the new item ids.
_SIMPLE_ACTIONS = frozenset({"cancel", "return", "address"})
_SWAP_ACTIONS = frozenset({"exchange", "modify_items"})
MAX_SECTION_CHARS = 1_200
MAX_CONTEXT_CHARS = 5_000


def _header(step: str) -> str:
    # The first line names the step: logs, scripted test models and humans rely on it.
    return f"Order agent step: {step}.\n"


class CustomerReply(BaseModel):
    reply: str = Field(min_length=1, max_length=2000, description="the message to the customer")


def needs_plan(request: str) -> bool:
    """True unless the message names one order, one change and the customer's email."""
    facts = request_facts(request)
    if len(facts.order_ids) != 1 or len(facts.actions) != 1 or len(facts.emails) != 1:
        return True
    action = facts.actions[0]
    return not (action in _SIMPLE_ACTIONS or (action in _SWAP_ACTIONS and len(facts.item_ids) >= 2))


# --- prompts ----------------------------------------------------------------------------------


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _clip(text: str, limit: int = MAX_SECTION_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 14] + "...(truncated)"


def _compact_order(order: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "order_id": order.get("order_id"),
        "user_id": order.get("user_id"),
        "status": order.get("status"),
        "address": order.get("address"),
        "items": [
            {k: item.get(k) for k in ("item_id", "product_id", "name", "options", "price")} for item in order.get("items", [])
        ],
        "paid_with": list(
            dict.fromkeys(e["payment_method_id"] for e in order.get("payment_history", []) if e.get("transaction_type") == "payment")
        ),
    }


def _compact_user(user: Mapping[str, Any]) -> dict[str, Any]:
    methods = {
        pid: {k: v for k, v in m.items() if k in ("source", "balance", "brand", "last_four")}
        for pid, m in (user.get("payment_methods") or {}).items()
    }
    return {k: user.get(k) for k in ("user_id", "email", "address", "orders")} | {"payment_methods": methods}


def _compact_product(product: Mapping[str, Any]) -> dict[str, Any]:
    variants = [
        {"item_id": v.get("item_id"), "options": v.get("options"), "available": v.get("available"), "price": v.get("price")}
        for v in (product.get("variants") or {}).values()
    ]
    return {"product_id": product.get("product_id"), "name": product.get("name"), "variants": variants}


def _sections(results: Mapping[str, Any]) -> list[str]:
    """One line per thing known, latest version of each, oldest first."""
    known: dict[tuple[str, str], str] = {}

    def put(key: tuple[str, str], line: str) -> None:
        known.pop(key, None)
        known[key] = _clip(line)

    for item_id, result in tool_results(results):
        tool, args, output = result["tool"], result.get("args") or {}, result.get("output")
        if result["status"] == "declined":
            put(("declined", item_id), f"The customer declined {tool} {_compact(args)}: nothing was changed.")
            continue
        if tool in WRITE_TOOL_NAMES:
            put(("done", item_id), f"Done: {tool} {_compact(args)}.")
        if isinstance(output, Mapping) and "items" in output and "order_id" in output:
            put(("order", str(output["order_id"])), f"Order {output['order_id']}: {_compact(_compact_order(output))}")
        elif isinstance(output, Mapping) and "payment_methods" in output:
            put(("user", str(output.get("user_id"))), f"User details: {_compact(_compact_user(output))}")
        elif tool == "get_product_details" and isinstance(output, Mapping):
            put(("product", str(output.get("product_id"))), f"Product {output.get('product_id')}: {_compact(_compact_product(output))}")
        elif tool == "get_item_details" and isinstance(output, Mapping):
            put(("item", str(output.get("item_id"))), f"Item {output.get('item_id')}: {_compact(output)}")
        elif tool == "list_all_product_types":
            put(("catalog", ""), f"Product types (name -> product id): {_compact(output)}")
        elif tool == "calculate":
            put(("calc", item_id), f"calculate({args.get('expression')}) = {output}")
        elif tool in HANDOFF_TOOLS:
            put(("handoff", ""), "The customer was transferred to a human agent.")
    return list(known.values())


def known_so_far(results: Mapping[str, Any]) -> str:
    """What earlier steps found, compact and bounded (the newest results are kept)."""
    user = identified_user(results)
    head = f"Authenticated customer: user_id {user}" if user else "The customer is not authenticated yet."
    lines = _sections(results)
    omitted = 0
    while lines and len(head) + sum(len(line) + 3 for line in lines) > MAX_CONTEXT_CHARS:
        lines.pop(0)
        omitted += 1
    note = [f"({omitted} older results omitted)"] if omitted else []
    return "\n".join(f"- {line}" for line in [head, *note, *lines])


def _ids_in_message(request: str) -> str:
    facts = request_facts(request)
    named = [f"order {o}" for o in facts.order_ids] + [f"item {i}" for i in facts.item_ids] + [f"email {e}" for e in facts.emails]
    return ", ".join(named) or "none"


def tool_prompt(inp: StepInput) -> str:
    """A tool step's prompt: the message, this plan item's task, and what is known so far."""
    parts = [f"Customer message:\n<<<\n{inp.request}\n>>>"]
    if inp.item.instruction:
        parts.append(f"Task for this step: {inp.item.instruction}")
    if inp.item.tool:
        parts.append(f"Call the tool {inp.item.tool}.")
    wanted = request_facts(inp.request).change_tools
    if inp.item.step == "change" and wanted and not inp.item.tool:
        parts.append(f"The customer's words ask for: {', '.join(wanted)}.")
    parts.append(f"Ids written in the message: {_ids_in_message(inp.request)}")
    parts.append(f"What earlier steps found:\n{known_so_far(inp.results)}")
    return "\n\n".join(parts)


def _handed_off(results: Mapping[str, Any]) -> bool:
    return any(r["tool"] in HANDOFF_TOOLS and r["status"] == "done" for _, r in tool_results(results))


def _outcome(result: Mapping[str, Any]) -> str:
    call = f"{result['tool']}({_compact(result.get('args') or {})})"
    if result["status"] == "declined":
        return f"{call}: the customer said no, nothing was changed"
    output = result.get("output")
    if isinstance(output, Mapping) and "status" in output and "order_id" in output:
        return f"{call}: done, order {output['order_id']} is now '{output['status']}'"
    return f"{call}: done" + ("" if result["tool"] not in HANDOFF_TOOLS else ", transferred to a human agent")


def reply_prompt(inp: StepInput) -> str:
    actions = [_outcome(r) for _, r in tool_results(inp.results) if r["tool"] in (*CHANGE_TOOLS, *HANDOFF_TOOLS)]
    parts = [
        f"Customer message:\n<<<\n{inp.request}\n>>>",
        "Changes made or declined:\n" + ("\n".join(f"- {a}" for a in actions) or "- none"),
        f"What is known:\n{known_so_far(inp.results)}",
        "Write a short reply that tells the customer what was done and what was not. Use only the facts above.",
    ]
    if _handed_off(inp.results):
        parts.append(f"End the reply with exactly: {TRANSFER_SENTENCE}")
    return "\n\n".join(parts)


# --- checks of the plan and of the reply --------------------------------------------------------


def _plan_tools_fit_steps(plan: Plan, _: StepInput) -> str | None:
    for i, s in enumerate(plan.steps):
        if s.tool is not None and s.tool not in STEP_TOOLS.get(s.step, ()):
            allowed = ", ".join(STEP_TOOLS.get(s.step, ())) or "no tool"
            return f"plan step {i} ({s.step}) names tool '{s.tool}'; a {s.step} step may use: {allowed}"
    return None


def _plan_shape(plan: Plan, _: StepInput) -> str | None:
    steps = [s.step for s in plan.steps]
    if steps[0] not in ("identify", "handoff"):
        return "the plan must start with an identify step (authenticate the customer), or a handoff"
    if steps[-1] != "reply" or steps.count("reply") != 1:
        return "the plan must end with exactly one reply step, and have no other reply step"
    if "handoff" in steps and steps.index("handoff") != len(steps) - 2:
        return "after a handoff step only the reply may follow"
    return None


def _reply_answers(value: CustomerReply, inp: StepInput) -> str | None:
    text = value.reply.strip()
    if not text or text.casefold() in inp.request.casefold() or "<<<" in text:
        return "the reply repeats the customer's message instead of answering it"
    return None


def _reply_announces_transfer(value: CustomerReply, inp: StepInput) -> str | None:
    if _handed_off(inp.results) and TRANSFER_SENTENCE not in value.reply:
        return f"the customer was transferred: the reply must contain exactly '{TRANSFER_SENTENCE}'"
    return None


def _reply_invents_no_orders(value: CustomerReply, inp: StepInput) -> str | None:
    known = _compact(inp.results) + inp.request
    invented = [o for o in request_facts(value.reply).order_ids if o not in known]
    if invented:
        return f"the reply mentions order(s) {', '.join(invented)} that appear nowhere in the message or the results"
    return None


# --- tools ----------------------------------------------------------------------------------------


def _describe_item(conn: Any, item_id: str) -> str:
    try:
        item = call_retail_tool(conn, "get_item_details", {"item_id": item_id})
    except RetailToolError:
        return f"item {item_id}"
    options = ", ".join(f"{k} {v}" for k, v in item["options"].items())
    return f"item {item_id} ({item['name']}: {options}; ${item['price']:.2f})"


def _address(args: Mapping[str, Any]) -> str:
    return ", ".join(str(args[k]) for k in ("address1", "address2", "city", "state", "zip", "country") if args.get(k))


def confirmation_question(db: RetailDB, name: str, args: Mapping[str, Any]) -> str:
    """The exact action, in words, that the customer must answer yes to (policy)."""
    with db.connection() as conn:
        if name == "cancel_pending_order":
            what = (
                f"Cancel order {args['order_id']} (reason: {args['reason']}). The total is refunded to the original "
                "payment method: at once for a gift card, otherwise in 5 to 7 business days."
            )
        elif name == "modify_pending_order_address":
            what = f"Change the shipping address of order {args['order_id']} to: {_address(args)}."
        elif name == "modify_user_address":
            what = f"Change the default address of user {args['user_id']} to: {_address(args)}."
        elif name == "modify_pending_order_payment":
            what = f"Pay order {args['order_id']} with {args['payment_method_id']} instead; the original payment method is refunded."
        elif name == "return_delivered_order_items":
            items = "; ".join(_describe_item(conn, i) for i in args["item_ids"])
            what = f"Return from order {args['order_id']}: {items}. The refund goes to {args['payment_method_id']}."
        else:
            # A call whose two lists differ in length is the tool's to refuse; the question shows the pairs it has.
            swaps = zip(args["item_ids"], args["new_item_ids"], strict=False)
            pairs = "; ".join(f"{_describe_item(conn, old)} -> {_describe_item(conn, new)}" for old, new in swaps)
            verb = "Exchange" if name == "exchange_delivered_order_items" else "Modify"
            what = (
                f"{verb} in order {args['order_id']}: {pairs}. The price difference is paid or refunded with "
                f"{args['payment_method_id']}. This can be done only once per order: are these all the items?"
            )
    return f"{what} Do you confirm? (yes/no)"


def retail_toolbox(resources: Mapping[str, Any]) -> ToolBox:
    """The 16 retail tools over the run's database; writes need a yes and apply once per key."""
    db = retail_db(resources)

    def execute(name: str, args: dict[str, Any], key: str) -> Any:
        with db.connection() as conn:
            return call_retail_tool(conn, name, args, idempotency_key=key if name in WRITE_TOOL_NAMES else None)

    def confirm_for(name: str) -> Any:
        return lambda args: confirmation_question(db, name, args)

    return ToolBox(
        tools={t.name: t for t in retail_tools(db.connect)},
        execute=execute,
        confirm={name: confirm_for(name) for name in WRITE_TOOL_NAMES},
        writes=WRITE_TOOL_NAMES,
    )


def _open_resources() -> Mapping[str, Any]:
    # $TIERFLOW_HOME/retail/retail.sqlite, built from the shared db.json on first use.
    return {RESOURCE_KEY: RetailDB.open()}


# --- the final output -----------------------------------------------------------------------------


def _fallback_reply(state: Mapping[str, Any]) -> str:
    failure = state.get("failure") or {}
    if state.get("status") == "rejected":
        return f"Sorry, I cannot process this message: {failure.get('reason', 'it is not a valid request')}."
    return "Sorry, I could not complete your request. A human agent will follow up with you."


def finalize(state: Mapping[str, Any], resources: Mapping[str, Any]) -> dict[str, Any]:
    """The reply, the executed actions of this run's plan (in order) and the DB's state hash."""
    results = state.get("results") or {}
    plan_ids = [p["id"] for p in state.get("plan") or []]
    this_run = {k: results[k] for k in plan_ids if k in results}
    actions = [
        {
            "item_id": k, "tool": r["tool"], "args": r["args"], "status": r["status"], "output": r["output"],
            "write": r["tool"] in WRITE_TOOL_NAMES,
        }
        for k, r in tool_results(this_run)
    ]
    reply = next((v.get("reply") for k, v in this_run.items() if k.endswith(":reply") and isinstance(v, Mapping)), None)
    return {
        "reply": reply if reply is not None else _fallback_reply(state),
        "reply_source": "reply step" if reply is not None else "fallback",
        "actions": actions,
        "user_id": identified_user(this_run),
        "plan_source": state.get("plan_source"),
        "state_hash": retail_db(resources).state_hash(),
        "decided_by": state.get("decided_by", {}),
        "failure": state.get("failure"),
    }


# --- the workflow -------------------------------------------------------------------------------

_POLICY = (
    "Policy: authenticate the customer first; act only for that customer and their own orders. Only pending "
    "orders can be cancelled or modified; only delivered orders can be returned or exchanged. A cancel reason "
    "is 'no longer needed' or 'ordered by mistake'. A new item must be another available variant of the same "
    "product. Payment methods must be the customer's own; a refund goes to the original payment method or a "
    "gift card. The customer confirms every change before it is made."
)

_TOOL_STEPS = {
    "identify": "You authenticate a retail customer with one tool call: find_user_id_by_email with the email the "
    "customer wrote, or find_user_id_by_name_zip with their first name, last name and zip code. Copy the values "
    "exactly as written.",
    "inspect": "You look up what the customer's request needs with one read-only tool call. Use ids exactly as "
    "they appear in the message or in earlier results (order ids start with '#W'; product ids and item ids differ).",
    "change": "You make the one change the customer asks for with one tool call, taking every id from the message "
    "or from earlier results. " + _POLICY,
    "handoff": "The request cannot be handled by the agent's tools: transfer the customer to a human agent with "
    "one call, giving a one-sentence summary of their issue.",
}

_PLANNER_INSTRUCTIONS = (
    _header("plan") + "You plan how a retail customer-service agent handles one customer message: a list of "
    "steps, in order. Allowed steps and the tools each may call:\n"
    + "\n".join(f"- {step}: {' | '.join(tools) or 'no tool (the answer to the customer)'}" for step, tools in STEP_TOOLS.items())
    + "\nStart with identify (authenticate the customer) and end with exactly one reply. Give every tool step "
    "the one tool it calls and a one-sentence instruction naming the ids it needs. Use handoff only when the "
    "request is outside these tools, just before the reply. " + _POLICY
)

DEFAULT_PLAN: tuple[PlanItem, ...] = (
    PlanItem(
        id="0:identify", step="identify", tool="find_user_id_by_email", instruction="Authenticate the customer with the email they gave."
    ),
    PlanItem(id="1:inspect", step="inspect", tool="get_order_details", instruction="Get the details of the order the message is about."),
    PlanItem(id="2:change", step="change", instruction="Make the change the customer asks for on that order."),
    PlanItem(id="3:reply", step="reply", instruction="Tell the customer what was done."),
)


def _plan_step() -> Any:
    all_tools = tuple(t for ts in STEP_TOOLS.values() for t in ts)
    spec = planner(allowed_steps=tuple(STEP_TOOLS), allowed_tools=all_tools, instructions=_PLANNER_INSTRUCTIONS)
    extra = (
        Check("plan tools fit their steps", _plan_tools_fit_steps),
        Check("plan starts by identifying, ends with the reply", _plan_shape),
    )
    return dataclasses.replace(spec, checks=(*spec.checks, *extra))


def _workflow() -> Workflow:
    tool_steps = tuple(
        tool_caller(step, tools=STEP_TOOLS[step], instructions=_header(step) + text, prompt=tool_prompt, checks=ORDER_CHECKS)
        for step, text in _TOOL_STEPS.items()
    )
    reply = writer(
        "reply",
        schema=CustomerReply,
        instructions=_header("reply") + "You are a retail store's customer-service agent. Reply to the customer in a "
        "few sentences, using only the facts given. Never claim a change that was not done.",
        prompt=reply_prompt,
        checks=(
            Check("answers the message", _reply_answers),
            Check("announces the transfer", _reply_announces_transfer),
            Check("mentions only known orders", _reply_invents_no_orders),
        ),
    )
    return Workflow(
        name="order_agent",
        description=__doc__ or "",
        steps=(*tool_steps, reply),
        default_plan=DEFAULT_PLAN,
        planner=_plan_step(),
        needs_plan=needs_plan,
        open_resources=_open_resources,
        toolbox=retail_toolbox,
        finalize=finalize,
    )


WORKFLOW = _workflow()


# `build(checkpointer=..., registry=..., resources=...)` compiles it (the CLI, tests); `graph`
# is for langgraph.json: no checkpointer here, the LangGraph server brings its own.
build = WORKFLOW.compile
graph = build()
