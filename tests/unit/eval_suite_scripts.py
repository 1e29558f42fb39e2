"""Scripted tier replies for tests/unit/test_eval_suites.py (imported by tiers TOML files)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage

__all__ = [
    "SLOT_SLM",
    "SLOT_GOLD",
    "slot_slm",
    "slot_frontier",
    "order_slm",
    "order_frontier",
    "BFCL_SLM",
    "BFCL_FRONTIER",
    "bfcl_slm",
    "bfcl_frontier",
]

# restaurant8k train_0 rows 0-3 -> the slm's extract reply (see the test for what each exercises).
SLOT_SLM: dict[str, dict[str, Any]] = {
    "There will be 5 adults and 1 child.": {"people": "5 adults and 1 child"},
    "We will require and outside table to seat 9 people on August 23rd": {"people": "9", "date": "August 23rd"},
    "Do you have room for 11 of us?": {"people": "11", "time": "room"},
    "We are 13 and have a table.": {"people": "13", "first_name": "table"},
}
SLOT_GOLD: dict[str, dict[str, Any]] = {
    "There will be 5 adults and 1 child.": {"people": "5 adults and 1 child"},
    "We will require and outside table to seat 9 people on August 23rd": {"people": "9 people", "date": "August 23rd"},
    "Do you have room for 11 of us?": {"people": "11"},
    "We are 13 and have a table.": {"people": "13"},
}


def _message(messages: Sequence[BaseMessage]) -> str:
    first = next(str(m.content) for m in messages if isinstance(m, HumanMessage))
    return first.split("<<<\n", 1)[1].split("\n>>>", 1)[0]


def slot_slm(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> Any:
    return SLOT_SLM[_message(messages)]


def slot_frontier(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> Any:
    return SLOT_GOLD[_message(messages)]


# -- order_agent: an oracle that follows a tau2 task's gold actions ----------------------------

_TASKS: dict[str, Any] = {}
_STEP_OF_TOOL = {"find_user_id_by_email": "identify", "find_user_id_by_name_zip": "identify", "transfer_to_human_agents": "handoff"}
_WRITES = frozenset(
    {"cancel_pending_order", "modify_pending_order_items", "modify_pending_order_address", "modify_pending_order_payment",
     "modify_user_address", "return_delivered_order_items", "exchange_delivered_order_items"}
)


def _task_of(messages: Sequence[BaseMessage]) -> Any:
    from tierflow.evals.datasets import default_dataset_file
    from tierflow.evals.datasets.tau2 import load_tau2_retail

    if not _TASKS:
        for case in load_tau2_retail(default_dataset_file("tau2_retail")).cases:
            _TASKS[case.inputs.customer_request] = case
    prompt = _message(messages)
    return _TASKS[prompt]


def _plan(case: Any, *, writes: bool) -> dict[str, Any]:
    steps = []
    for action in case.expected.actions:
        if action.name in _WRITES and not writes:
            continue
        step = _STEP_OF_TOOL.get(action.name, "change" if action.name in _WRITES else "inspect")
        steps.append({"step": step, "tool": action.name, "instruction": f"gold action {action.action_id}"})
    steps.append({"step": "reply", "tool": None, "instruction": "Tell the customer what was done."})
    return {"steps": steps}


def _order_reply(messages: Sequence[BaseMessage], *, writes: bool, informative: bool) -> Any:
    from langchain_core.messages import SystemMessage

    from tierflow.model_tiers.testing import tool_call

    system = next(str(m.content) for m in messages if isinstance(m, SystemMessage))
    step = system.split("Order agent step: ", 1)[1].split(".", 1)[0]
    case = _task_of(messages)
    if step == "plan":
        return _plan(case, writes=writes)
    if step == "reply":
        info = " ".join(case.expected.communicate_info) if informative else ""
        return {"reply": f"Thank you, your request has been handled. {info}".strip()}
    prompt = next(str(m.content) for m in messages if isinstance(m, HumanMessage))
    action_id = prompt.split("gold action ", 1)[1].split()[0].rstrip(".")
    action = next(a for a in case.expected.actions if a.action_id == action_id)
    return tool_call(action.name, dict(action.arguments))


def order_slm(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> Any:
    """Follows a plan's gold actions, but plans no write and says nothing required."""
    return _order_reply(messages, writes=False, informative=False)


def order_frontier(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> Any:
    """The gold trajectory, and a reply with every required piece of information."""
    return _order_reply(messages, writes=True, informative=True)


# -- function_calling on BFCL: replies keyed by the question -----------------------------------

# simple_python_0-2 and irrelevance_0-1 (see tests/unit/test_function_calling_suite.py).
BFCL_SLM: dict[str, Any] = {
    "Find the area of a triangle with a base of 10 units and height of 5 units.": ("calculate_triangle_area", {"base": 10, "height": 5}),
    "Calculate the factorial of 5 using math functions.": ("math_factorial", {"number": 6}),  # invented: not in the question
    "Calculate the hypotenuse of a right triangle given the lengths of the other two sides as 4 and 5.": ("math_hypot", {"x": 4, "y": 4}),
    "Calculate the area of a triangle given the base is 10 meters and height is 5 meters.": ("determine_body_mass_index", {"weight": 10, "height": 5}),
    "Solve the quadratic equation with coefficients a = 1, b = 2, and c = 3.": None,
}
BFCL_FRONTIER: dict[str, Any] = {
    "Find the area of a triangle with a base of 10 units and height of 5 units.": ("calculate_triangle_area", {"base": 10, "height": 5}),
    "Calculate the factorial of 5 using math functions.": ("math_factorial", {"number": 5}),
    "Calculate the hypotenuse of a right triangle given the lengths of the other two sides as 4 and 5.": ("math_hypot", {"x": 4, "y": 5}),
    "Calculate the area of a triangle given the base is 10 meters and height is 5 meters.": None,
    "Solve the quadratic equation with coefficients a = 1, b = 2, and c = 3.": None,
}


def _bfcl_reply(table: dict[str, Any], messages: Sequence[BaseMessage]) -> Any:
    from tierflow.model_tiers.testing import tool_call

    answer = table[_message(messages)]
    return "No function here fits the request." if answer is None else tool_call(*answer)


def bfcl_slm(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> Any:
    return _bfcl_reply(BFCL_SLM, messages)


def bfcl_frontier(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> Any:
    return _bfcl_reply(BFCL_FRONTIER, messages)
