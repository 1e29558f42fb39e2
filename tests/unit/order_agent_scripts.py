"""Scripted tiers for the order agent's tests: replies per step (each step's system prompt
starts with 'Order agent step: NAME.'), reply builders, and a kill worker.

Kill worker (run by the SIGKILL test as a subprocess):
    python -m tests.unit.order_agent_scripts RETAIL_DB CKPT THREAD BLOCK EMAIL ORDER_ID
It cancels ORDER_ID after a scripted yes; right after the write commits (inside the act
node, before LangGraph checkpoints it) it writes BLOCK and hangs until it is killed.
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, SystemMessage

from tests.unit.engine_fixtures import registry
from tierflow.agents.spec import ToolBox
from tierflow.graphs.builder import build_graph
from tierflow.graphs.order_agent import WORKFLOW, retail_toolbox
from tierflow.model_tiers import TierRegistry
from tierflow.model_tiers.testing import ScriptedChatModel, tool_call
from tierflow.tools.retail import WRITE_TOOL_NAMES, RetailDB

__all__ = [
    "step_of",
    "by_step",
    "order_registry",
    "identify",
    "get_order",
    "cancel",
    "reply",
    "plan",
    "cancel_request",
    "kill_worker_graph",
]

_STEP_LINE = re.compile(r"^Order agent step: (\w+)\.")
Script = Mapping[str, Sequence[Any]]


def step_of(messages: Sequence[BaseMessage]) -> str:
    system = next(str(m.content) for m in messages if isinstance(m, SystemMessage))
    found = _STEP_LINE.match(system)
    if found is None:
        raise AssertionError(f"system prompt names no order agent step: {system[:80]!r}")
    return found.group(1)


def by_step(script: Script) -> Callable[[list[BaseMessage], Sequence[dict[str, Any]]], Any]:
    """Each step pops its own replies; a callable reply is called with the messages."""
    queues = {k: list(v) for k, v in script.items()}

    def answer(messages: list[BaseMessage], tools: Sequence[dict[str, Any]]) -> Any:
        step = step_of(messages)
        queue = queues.get(step)
        if not queue:
            raise AssertionError(f"no scripted reply left for step '{step}'")
        found = queue.pop(0)
        return found(messages) if callable(found) else found

    return answer


def order_registry(slm: Script, frontier: Script, **config: Any) -> tuple[TierRegistry, ScriptedChatModel, ScriptedChatModel]:
    """slm and frontier scripted tiers; `plan` starts on the frontier, every other role on the slm."""
    return registry(slm, frontier, script=by_step, **config)


# --- reply builders ---------------------------------------------------------------------------


def identify(email: str) -> AIMessage:
    return tool_call("find_user_id_by_email", {"email": email})


def get_order(order_id: str) -> AIMessage:
    return tool_call("get_order_details", {"order_id": order_id})


def cancel(order_id: str, reason: str = "no longer needed") -> AIMessage:
    return tool_call("cancel_pending_order", {"order_id": order_id, "reason": reason})


def reply(text: str) -> dict[str, str]:
    return {"reply": text}


def plan(*steps: tuple[str, str | None, str]) -> dict[str, Any]:
    """A planner reply from (step, tool, instruction) triples."""
    return {"steps": [{"step": s, "tool": t, "instruction": i} for s, t, i in steps]}


def cancel_request(email: str, order_id: str) -> str:
    return f"Hi, my email is {email}. Please cancel my order {order_id}, I no longer need it."


# --- kill worker ------------------------------------------------------------------------------


def _blocking(toolbox: ToolBox, block: Path) -> ToolBox:
    def execute(name: str, args: dict[str, Any], key: str) -> Any:
        output = toolbox.execute(name, args, key)
        if name in WRITE_TOOL_NAMES and not block.exists():
            block.write_text("written, now hanging")
            time.sleep(120)
        return output

    return dataclasses.replace(toolbox, execute=execute)


def kill_worker_graph(retail: Path, ckpt: Path, block: Path, email: str, order_id: str) -> tuple[Any, sqlite3.Connection]:
    """The cancel run of the SIGKILL test; the write hangs once, until BLOCK exists."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    workflow = dataclasses.replace(WORKFLOW, toolbox=lambda resources: _blocking(retail_toolbox(resources), block))
    reg, _, _ = order_registry(
        {"identify": [identify(email)], "inspect": [get_order(order_id)], "change": [cancel(order_id)],
         "reply": [reply(f"Your order {order_id} is cancelled.")]},
        {},
    )
    conn = sqlite3.connect(ckpt, check_same_thread=False)
    graph = build_graph(workflow, registry=reg, resources={"retail": RetailDB(retail)}, checkpointer=SqliteSaver(conn))
    return graph, conn


if __name__ == "__main__":
    from langgraph.types import Command

    retail_path, ckpt_path, thread, block_path, email_arg, order_arg = sys.argv[1:7]
    compiled, _ = kill_worker_graph(Path(retail_path), Path(ckpt_path), Path(block_path), email_arg, order_arg)
    config = {"configurable": {"thread_id": thread}}
    out = compiled.invoke({"request": cancel_request(email_arg, order_arg)}, config)
    assert out["__interrupt__"][0].value["type"] == "confirm", out
    compiled.invoke(Command(resume="yes"), config)
