"""The act node: runs a verified tool call, after a human's yes where the toolbox asks for one."""

from __future__ import annotations

import sqlite3
import traceback
from typing import TYPE_CHECKING

from langgraph.types import Command, interrupt

from tierflow.agents.context import LoopNode, NodeRuntime, ServiceResolver, as_jsonable, current_item
from tierflow.agents.loop.common import (
    commit_and_advance,
    is_yes,
    stop_for_error,
    tool_result,
)
from tierflow.agents.loop.events import Event
from tierflow.agents.loop.verify import Escalate
from tierflow.model_tiers import TierflowError, ToolRefusal

if TYPE_CHECKING:
    from tierflow.graphs.state import TieredState

__all__ = [
    "make_act_node",
]


def make_act_node(resolve: ServiceResolver, on_refusal: Escalate) -> LoopNode:
    """Execute a verified tool call, after a human's yes where the toolbox asks for one.

    A tool that refuses (a policy the verifier could not see) is a failed verdict: the same
    escalation as the verifier's applies, through `on_refusal`.
    """

    def act(state: TieredState, runtime: NodeRuntime) -> Command[str]:
        services = resolve(runtime)
        item = current_item(state)
        proposal = state.get("proposal")
        assert proposal is not None  # the verifier routes here only with the verified call in state
        call = proposal["value"]
        toolbox = services.toolbox
        assert toolbox is not None
        name, args = call["name"], dict(call["args"])
        confirm = toolbox.confirm.get(name)
        question = confirm(args) if confirm else None
        if question:
            answer = interrupt(
                {"type": "confirm", "step": item.step, "item_id": item.id, "action": {"name": name, "args": args}, "question": question}
            )
            if not is_yes(answer):
                event: Event = {"type": "declined", "step": item.step, "item_id": item.id, "tool": name}
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
        executed: Event = {"type": "tool_executed", "step": item.step, "item_id": item.id, "tool": name, "write": name in toolbox.writes}
        result = tool_result(call, "done", as_jsonable(output))
        return commit_and_advance(state, runtime, item, result, proposal.get("tier") or "human", [executed])

    return act
