"""Scripted tiers for ticket_triage CLI tests (loaded by tiers files via options.function).

Setting TIERFLOW_TEST_BLOCK_FILE makes the draft step create that file and hang, so a test
can SIGKILL the run at a known point and resume it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage, SystemMessage

from tierflow.model_tiers.testing import scripted_ladder_toml


def _system(messages: Sequence[BaseMessage]) -> str:
    return next((str(m.content) for m in messages if isinstance(m, SystemMessage)), "")


def slm(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> Any:
    system = _system(messages)
    if "triage customer messages" in system:
        return {"label": "lost_or_stolen_card", "confidence": 0.92}
    if "Copy the entities" in system:
        return {"date": "yesterday"}
    raise AssertionError(f"slm script has no reply for: {system[:80]!r}")


def frontier(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> Any:
    system = _system(messages)
    if "support agent" in system:
        block = os.environ.get("TIERFLOW_TEST_BLOCK_FILE")
        if block and not Path(block).exists():
            Path(block).write_text("draft step reached\n")
            time.sleep(120)
        return {"reply": "We have blocked your card and a replacement is on its way.", "cited": ["S1"]}
    raise AssertionError(f"frontier script has no reply for: {system[:80]!r}")


TIERS_TOML = scripted_ladder_toml("tests.unit.triage_scripts:slm", "tests.unit.triage_scripts:frontier")
