"""A two-tier ladder of scripted models, in process: for tests of a graph's control flow.

    ladder = tierflow.scripted_ladder(slm=reply, frontier=reply)
    result = tierflow.run(WORKFLOW, "Refund order 4417", tiers=ladder, checkpointer=InMemorySaver())

A reply is what `ScriptedChatModel` takes: a list of replies (in order), a dict keyed by
prompt, or a function `(messages, tools) -> reply`. For a run in another process (the CLI, a
server, `tierflow.evaluate`'s tiers file) write a tiers file with `scripted_ladder_toml`.
"""

from __future__ import annotations

from typing import Any

from tierflow.model_tiers import ROLES, TierRegistry, config_from_mapping
from tierflow.model_tiers.testing import ScriptedChatModel

__all__ = ["scripted_ladder"]


def scripted_ladder(slm: Any, frontier: Any, *, cycle: bool = True) -> TierRegistry:
    """Tiers `slm` (local, cheap) and `frontier` (remote, priced like a frontier model) whose
    models answer from `slm` and `frontier`; planning starts on the frontier, every other
    role on the slm. The models are `registry.model("slm")` / `("frontier")`, whose `calls`
    record what each was asked."""
    tiers = [
        {"name": "slm", "provider": "scripted", "model": "scripted-slm", "options": {"replies": ["(set in process)"]},
         "price_input_per_mtok": 0.1, "price_output_per_mtok": 0.1},
        {"name": "frontier", "provider": "scripted", "model": "scripted-frontier", "options": {"replies": ["(set in process)"]},
         "local": False, "price_input_per_mtok": 10.0, "price_output_per_mtok": 30.0},
    ]
    roles = {role: ("frontier" if role == "plan" else "slm") for role in ROLES}
    registry = TierRegistry(config_from_mapping({"tiers": tiers, "roles": roles}, source="scripted_ladder"), env={})
    registry.set_model("slm", ScriptedChatModel(replies=slm, model="scripted:slm", cycle=cycle))
    registry.set_model("frontier", ScriptedChatModel(replies=frontier, model="scripted:frontier", cycle=cycle))
    return registry
