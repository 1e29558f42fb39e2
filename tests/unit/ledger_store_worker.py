"""Subprocess bodies for the ledger store tests.

`python -m tests.unit.ledger_store_worker append STORE WORKER N`: append N rows as one
process of several writing at once. `... graph STORE CKPT THREAD MARKER`: run a two-step
graph whose second step's check hangs (after its model call) until MARKER exists; the test
kills it there, then resumes the thread in its own process (`compiled`).
"""

from __future__ import annotations

import sqlite3
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tests.unit.engine_fixtures import Amount, registry
from tierflow.agents.spec import Check, StepInput
from tierflow.agents.workers import classifier, default_plan, extractor
from tierflow.graphs.builder import Workflow, build_graph
from tierflow.model_tiers.ledger_store.rows import LedgerRow, day_of
from tierflow.model_tiers.ledger_store.sqlite import SqliteLedgerStore


def row(worker: str, i: int, *, run_id: str | None = None, item_id: str = "0:step", attempt: int = 1, seq: int = 1) -> LedgerRow:
    now = time.time()
    return LedgerRow(
        request_id=uuid.uuid4().hex, ts=now, day=day_of(now), source="run", run_id=run_id or f"{worker}-{i}", thread_id="t",
        graph="g", graph_version="v1", item_id=item_id, step="step", label="step", role="classify", attempt=attempt, seq=seq,
        execution=1, tier="slm", provider="scripted", model="s", adapter=None, input_tokens=10, output_tokens=2,
        tokens_estimated=False, latency_s=0.01, cost_usd=0.001, top_tier_cost_usd=0.01, error=None, cache_hit=False, confidence=None,
    )


def _hang_once(marker: Path) -> Any:
    def check(_value: Any, _inp: StepInput) -> str | None:
        if not marker.exists():
            marker.write_text("the model call is recorded; now hanging")
            time.sleep(120)
        return None

    return check


def workflow(marker: Path) -> Workflow:
    return Workflow(
        name="ledger_kill",
        description="classify, then extract with a check that hangs once",
        steps=(
            classifier("classify", labels=["refund", "card_lost"], instructions="[classify] Pick the intent."),
            extractor("extract", schema=Amount, instructions="[extract] Extract the amount.", checks=(Check("hang", _hang_once(marker)),)),
        ),
        default_plan=default_plan("classify", "extract"),
    )


SCRIPT = {"classify": [{"label": "refund", "confidence": 0.9}] * 4, "extract": [{"amount": "12.00", "currency": "EUR"}] * 4}


def compiled(ckpt: Path, marker: Path) -> tuple[Any, sqlite3.Connection]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(ckpt, check_same_thread=False)
    reg, _, _ = registry(SCRIPT, SCRIPT)
    return build_graph(workflow(marker), registry=reg, resources={}, checkpointer=SqliteSaver(conn)), conn


if __name__ == "__main__":
    if sys.argv[1] == "append":
        store = SqliteLedgerStore(Path(sys.argv[2]))
        for i in range(int(sys.argv[4])):
            store.append(row(sys.argv[3], i))
            print(i + 1, flush=True)  # rows committed so far
    else:
        ckpt, thread, marker = Path(sys.argv[3]), sys.argv[4], Path(sys.argv[5])
        graph, _ = compiled(ckpt, marker)
        graph.invoke({"request": "refund my 12.00 EUR"}, {"configurable": {"thread_id": thread}}, durability="sync")
