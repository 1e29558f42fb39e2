"""How big the CLI's checkpoint database grows, and what `tierflow gc` gives back:
`python -m tierflow.evals.bench.checkpoint_growth [--runs 300]`.

Runs ticket_triage N times, each on its own thread, exactly as `tierflow run` does (SQLite
saver, "sync" durability: one checkpoint per step), with scripted tiers: the size depends
on the state the graph writes, not on which model answered, and scripted tiers keep 300
runs to about a minute. Then prunes a copy of the file three ways and prints each size
and its ratio to the unpruned one.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage, SystemMessage
from langgraph.checkpoint.sqlite import SqliteSaver

from tierflow.graphs import ticket_triage
from tierflow.graphs.retention import PruneReport, prune_checkpoints
from tierflow.model_tiers import TierRegistry, config_from_mapping
from tierflow.model_tiers.testing import ScriptedChatModel
from tierflow.tools.helpdesk import Helpdesk
from tierflow.tools.knowledge_base import KnowledgeBase

__all__ = ["main"]

MESSAGE = "I lost my card yesterday on the bus, please block it."


def _reply(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> Any:
    system = next((str(m.content) for m in messages if isinstance(m, SystemMessage)), "")
    if "triage customer messages" in system:
        return {"label": "lost_or_stolen_card", "confidence": 0.92}
    if "Copy the entities" in system:
        return {"date": "yesterday"}
    return {"reply": "We have blocked your card and a replacement is on its way.", "cited": ["S1"]}


def _registry() -> TierRegistry:
    scripted = {"provider": "scripted", "options": {"replies": ["unused"]}}
    config = config_from_mapping(
        {
            "tiers": [{**scripted, "name": "slm", "model": "s"}, {**scripted, "name": "frontier", "model": "f"}],
            "roles": {"plan": "frontier", "classify": "slm", "extract": "slm", "tool": "slm", "verify": "slm",
                      "respond": "frontier", "judge": "frontier"},
        },
        source="checkpoint bench",
    )
    registry = TierRegistry(config, env={})
    for tier in ("slm", "frontier"):
        registry.set_model(tier, ScriptedChatModel(replies=_reply))
    return registry


def _prune_copy(source: Path, folder: Path, name: str, **how: Any) -> PruneReport:
    copy = folder / f"{name}.sqlite"
    shutil.copyfile(source, copy)
    return prune_checkpoints(copy, **how)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tierflow.evals.bench.checkpoint_growth", description=__doc__)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tierflow-ckpt-bench-") as tmp:
        folder = Path(tmp)
        kb = KnowledgeBase(folder / "kb")
        kb.ingest()
        resources = {"kb": kb, "helpdesk": Helpdesk(folder / "helpdesk.sqlite").open()}
        path = folder / "checkpoints.sqlite"
        conn = sqlite3.connect(str(path), check_same_thread=False)
        started = time.perf_counter()
        try:
            graph = ticket_triage.build(registry=_registry(), resources=resources, checkpointer=SqliteSaver(conn))
            for i in range(args.runs):
                config = {"configurable": {"thread_id": f"bench-{i}"}}
                out = graph.invoke({"request": MESSAGE}, config, durability="sync")
                if out.get("status") != "done":
                    print(f"run {i} ended {out.get('status')}: {out.get('failure')}", file=sys.stderr)
                    return 1
        finally:
            conn.close()
        wall = time.perf_counter() - started
        size = path.stat().st_size
        print(f"{args.runs} ticket_triage runs in {wall:.1f} s: checkpoints.sqlite is {size / 1e6:.2f} MB "
              f"({size / args.runs / 1e3:.1f} kB per run)")
        for name, how in (
            ("tierflow gc (latest checkpoint per thread)", {"keep_history": 1}),
            ("tierflow gc --keep-threads 50", {"keep_threads": 50, "keep_history": 1}),
            ("tierflow gc --keep-history 1000 (vacuum only)", {"keep_history": 1000}),
        ):
            report = _prune_copy(path, folder, f"pruned-{len(name)}", **how)
            print(f"  {name}: {report.bytes_after / 1e6:.2f} MB, {report.bytes_after / size:.3f} of the unpruned size; {report.line()}")
    return 0


if __name__ == "__main__":
    from tierflow.cli.guard import guard

    sys.exit(guard("python -m tierflow.evals.bench.checkpoint_growth", main))
