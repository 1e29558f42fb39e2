"""A run killed with SIGKILL right after a write resumes from its SQLite checkpoint, and the
re-executed step's write is applied exactly once (idempotency key = run id + plan item)."""

from __future__ import annotations

import sqlite3
import sys

from tests.kill import kill_at_marker
from tests.unit.kill_worker import compiled


def test_sigkill_after_a_write_then_resume_applies_it_once(tmp_path):
    db, ckpt, block = tmp_path / "writes.sqlite", tmp_path / "ckpt.sqlite", tmp_path / "blocked"
    kill_at_marker([sys.executable, "-m", "tests.unit.kill_worker", str(db), str(ckpt), "t1", str(block)], block, timeout_s=60)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM writes").fetchone()[0] == 1

    graph, conn = compiled(db, ckpt, block)
    config = {"configurable": {"thread_id": "t1"}}
    state = graph.get_state(config)
    assert state.next == ("record",)  # "first" was checkpointed; "record" must run again
    out = graph.invoke(None, config)
    conn.close()
    assert out["status"] == "done"
    assert list(out["results"]) == ["0:first", "1:record", "2:last"]
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT key FROM writes").fetchall()
    assert len(rows) == 1 and rows[0][0].endswith(":1:record")
