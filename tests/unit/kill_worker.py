"""A workflow whose action step writes (idempotently) and then hangs, run in a subprocess
that the test kills with SIGKILL: `python -m tests.unit.kill_worker LEDGER_DB CKPT THREAD BLOCK`."""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from tests.unit.engine_fixtures import registry
from tierflow.agents.spec import StepInput
from tierflow.agents.workers import action, default_plan
from tierflow.graphs.builder import Workflow, build_graph


def write_row(db: Path, key: str, value: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS writes (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT OR IGNORE INTO writes (key, value) VALUES (?, ?)", (key, value))


def workflow(db: Path, block: Path | None) -> Workflow:
    def record(inp: StepInput) -> dict[str, Any]:
        write_row(db, f"{inp.run_id}:{inp.item.id}", inp.request)
        if block is not None and not block.exists():
            block.write_text("written, now hanging")
            time.sleep(120)
        return {"written": True}

    return Workflow(
        name="kill_test",
        description="write then hang",
        steps=(action("first", lambda inp: {"ok": 1}), action("record", record), action("last", lambda inp: {"ok": 2})),
        default_plan=default_plan("first", "record", "last"),
    )


def compiled(db: Path, ckpt: Path, block: Path | None) -> tuple[Any, sqlite3.Connection]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(ckpt, check_same_thread=False)
    reg, _, _ = registry({}, {})
    return build_graph(workflow(db, block), registry=reg, resources={}, checkpointer=SqliteSaver(conn)), conn


if __name__ == "__main__":
    db, ckpt, thread, block = (Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]))
    graph, _ = compiled(db, ckpt, block)
    graph.invoke({"request": "write me once"}, {"configurable": {"thread_id": thread}}, durability="sync")
