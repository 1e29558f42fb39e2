"""`tierflow gc`: pruning keeps what get_state and resume read, and frees the space."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command

from tests.conftest import REPO_ROOT
from tests.unit.engine_fixtures import compile_toy, registry
from tests.unit.test_engine_paths import OK_AMOUNT, OK_LABEL, OK_REPLY
from tierflow.graphs.retention import checkpoint_time, parse_age, prune_checkpoints
from tierflow.model_tiers import ConfigError

BAD = {"amount": "7", "currency": "EUR"}  # not in the message: fails the grounding check


def _fill(path: Path, finished: int) -> dict[str, dict]:
    """`finished` done threads and one waiting for a human; their states, as get_state reads them."""
    conn = sqlite3.connect(str(path), check_same_thread=False)
    try:
        saver = SqliteSaver(conn)
        for i in range(finished):
            reg, _, _ = registry({"classify": [OK_LABEL], "extract": [OK_AMOUNT], "reply": [OK_REPLY]}, {})
            compile_toy(reg, checkpointer=saver).invoke({"request": "refund of 50 EUR"}, {"configurable": {"thread_id": f"done-{i}"}})
        reg, _, _ = registry({"classify": [OK_LABEL], "extract": [BAD, BAD]}, {"extract": [BAD, BAD]}, escalation={"on_top_failure": "interrupt"})
        compile_toy(reg, checkpointer=saver).invoke({"request": "refund of 50 EUR"}, {"configurable": {"thread_id": "waiting"}})
        graph = compile_toy(reg, checkpointer=saver)
        return {t: graph.get_state({"configurable": {"thread_id": t}}).values for t in [*(f"done-{i}" for i in range(finished)), "waiting"]}
    finally:
        conn.close()


def test_latest_checkpoints_survive_and_an_interrupted_thread_still_resumes(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.sqlite"
    before = _fill(path, finished=3)
    report = prune_checkpoints(path, keep_history=1)
    assert report.threads_deleted == 0 and report.checkpoints_deleted > 0
    assert report.bytes_after < report.bytes_before
    conn = sqlite3.connect(str(path), check_same_thread=False)
    try:
        saver = SqliteSaver(conn)
        assert conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0] == 4
        reg, _, _ = registry({"reply": [OK_REPLY]}, {}, escalation={"on_top_failure": "interrupt"})
        graph = compile_toy(reg, checkpointer=saver)
        for thread, values in before.items():
            assert graph.get_state({"configurable": {"thread_id": thread}}).values == values
        waiting = {"configurable": {"thread_id": "waiting"}}
        assert graph.get_state(waiting).next == ("human_review",)
        out = graph.invoke(Command(resume={"action": "edit", "value": OK_AMOUNT}), waiting)
        assert out["status"] == "done" and out["decided_by"]["1:extract"] == "human"
    finally:
        conn.close()


def test_threads_go_by_age_and_by_count(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.sqlite"
    _fill(path, finished=3)
    dry = prune_checkpoints(path, keep_threads=1, dry_run=True)
    assert dry.threads_deleted == 3 and dry.bytes_after == dry.bytes_before
    assert prune_checkpoints(path, older_than_s=3600, keep_history=None).threads_deleted == 0
    assert prune_checkpoints(path, older_than_s=60, keep_history=None, now=time.time() + 3600).threads_deleted == 4
    assert prune_checkpoints(path).threads_before == 0


def test_uuid6_ids_carry_their_time_and_ages_parse() -> None:
    from langgraph.checkpoint.base.id import uuid6

    assert abs((checkpoint_time(str(uuid6())) or 0) - time.time()) < 5
    assert checkpoint_time("not-a-uuid") is None
    assert parse_age("30d") == 30 * 86400 and parse_age("12h") == 43200 and parse_age("2w") == 14 * 86400
    with pytest.raises(ConfigError, match="30d, 12h"):
        parse_age("soon")
    with pytest.raises(ConfigError, match="keep-history must be 1 or more"):
        prune_checkpoints(Path("x"), keep_history=0)


def test_gc_command_reports_what_it_pruned(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    _fill(home / "checkpoints.sqlite", finished=2)
    env = {"TIERFLOW_HOME": str(home), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-m", "tierflow.cli", "gc", "--keep-threads", "1"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "deleted 2 of 3 threads" in done.stdout
    (home / "checkpoints.sqlite").write_bytes(b"garbage" * 500)
    bad = subprocess.run([sys.executable, "-m", "tierflow.cli", "gc"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not a readable SQLite database" in bad.stderr and "Traceback" not in bad.stderr
