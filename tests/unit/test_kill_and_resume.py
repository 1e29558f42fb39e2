"""A run killed with SIGKILL right after a write resumes from its SQLite checkpoint, and the
re-executed step's write is applied exactly once (idempotency key = run id + plan item)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

from tests.conftest import REPO_ROOT
from tests.unit.kill_worker import compiled


def test_sigkill_after_a_write_then_resume_applies_it_once(tmp_path):
    db, ckpt, block = tmp_path / "writes.sqlite", tmp_path / "ckpt.sqlite", tmp_path / "blocked"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.unit.kill_worker", str(db), str(ckpt), "t1", str(block)],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not block.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "worker died"
            assert time.monotonic() < deadline
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
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
