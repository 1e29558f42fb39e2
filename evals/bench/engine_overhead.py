"""What the tiered engine costs over a hand-written LangGraph graph making the same calls:
`python -m evals.bench.engine_overhead [--runs 300]`.

Both graphs make the same two structured-output calls through the same `TierRegistry` on
instant scripted tiers, so what differs is the engine alone: routing, verification,
the ledger and events, checkpoints. Each is timed with no checkpointer and with a
SqliteSaver ("sync" durability, as `tierflow run` uses), after a warm-up; the figures are
the median per run of `--runs`, and the ratio engine / hand-written. Checkpoints per run are
counted in the SQLite file. Target: a ratio of 1.5 or less.
"""

from __future__ import annotations

import argparse
import operator
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel
from typing_extensions import TypedDict

from agents.workers import classifier, default_plan, extractor
from graphs.builder import Workflow, build_graph
from model_tiers import TierRegistry, config_from_mapping
from model_tiers.testing import ScriptedChatModel

__all__ = ["main"]

MESSAGE = "I want a refund of 50 EUR for order 1234"
LABEL = {"label": "refund", "confidence": 0.9}
AMOUNT = {"amount": "50", "currency": "EUR"}


class Amount(BaseModel):
    amount: str | None = None
    currency: str | None = None


class Label(BaseModel):
    label: str
    confidence: float


def _reply(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> Any:
    system = str(messages[0].content)
    return LABEL if "intent" in system else AMOUNT


def _registry() -> TierRegistry:
    scripted = {"provider": "scripted", "options": {"replies": ["unused"]}}
    config = config_from_mapping(
        {
            "tiers": [{**scripted, "name": "slm", "model": "s"}, {**scripted, "name": "frontier", "model": "f"}],
            "roles": {"plan": "frontier", "classify": "slm", "extract": "slm", "tool": "slm", "respond": "frontier", "judge": "frontier"},
        },
        source="engine bench",
    )
    registry = TierRegistry(config, env={})
    for tier in ("slm", "frontier"):
        registry.set_model(tier, ScriptedChatModel(replies=_reply))
    return registry


def _engine(registry: TierRegistry, checkpointer: Any) -> Any:
    workflow = Workflow(
        name="bench",
        description="classify then extract",
        steps=(
            classifier("classify", labels=["refund", "other"], instructions="Pick the intent."),
            extractor("extract", schema=Amount, instructions="Copy the amount.", grounded_fields=("amount", "currency")),
        ),
        default_plan=default_plan("classify", "extract"),
    )
    return build_graph(workflow, registry=registry, resources={}, checkpointer=checkpointer)


class _HandState(TypedDict, total=False):
    request: str
    label: dict[str, Any]
    amount: dict[str, Any]
    ledger: Annotated[list[dict[str, Any]], operator.add]


def _hand_written(registry: TierRegistry, checkpointer: Any) -> Any:
    def call(schema: type[BaseModel], system: str, key: str) -> Callable[[_HandState], dict[str, Any]]:
        def node(state: _HandState) -> dict[str, Any]:
            reply = registry.call("slm", [SystemMessage(system), HumanMessage(state["request"])], schema=schema)
            return {key: reply.value.model_dump(), "ledger": [reply.usage.model_dump()]}

        return node

    graph = StateGraph(_HandState)
    graph.add_node("classify", call(Label, "Pick the intent.", "label"))
    graph.add_node("extract", call(Amount, "Copy the amount.", "amount"))
    graph.add_edge(START, "classify")
    graph.add_edge("classify", "extract")
    graph.add_edge("extract", END)
    return graph.compile(checkpointer=checkpointer)


def _time(graph: Any, runs: int, durable: bool) -> float:
    """Median seconds per run (after 20 warm-up runs)."""
    times = []
    for i in range(runs + 20):
        config = {"configurable": {"thread_id": f"t{i}"}}
        started = time.perf_counter()
        out = graph.invoke({"request": MESSAGE}, config, durability="sync" if durable else None) if durable else graph.invoke({"request": MESSAGE}, config)
        elapsed = time.perf_counter() - started
        if out.get("status", "done") != "done":
            raise RuntimeError(f"the run ended {out.get('status')}: {out.get('failure')}")
        if i >= 20:
            times.append(elapsed)
    return statistics.median(times)


def _checkpoints_per_run(path: Path, runs: int) -> float:
    with sqlite3.connect(str(path)) as conn:
        return conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0] / (runs + 20)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.bench.engine_overhead", description=__doc__)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args(argv)
    registry = _registry()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tierflow-engine-bench-") as tmp:
        for label, build in (("tiered engine", _engine), ("hand-written StateGraph", _hand_written)):
            memory = _time(build(registry, None), args.runs, durable=False)
            path = Path(tmp) / f"{label.split()[0]}.sqlite"
            conn = sqlite3.connect(str(path), check_same_thread=False)
            try:
                sqlite = _time(build(registry, SqliteSaver(conn)), args.runs, durable=True)
            finally:
                conn.close()
            rows.append((label, memory, sqlite, _checkpoints_per_run(path, args.runs)))
    (_, e_mem, e_sql, e_ck), (_, h_mem, h_sql, h_ck) = rows
    for label, memory, sqlite, checkpoints in rows:
        print(f"{label:>24}: {1000 * memory:6.2f} ms per run, {1000 * sqlite:6.2f} ms with SqliteSaver; {checkpoints:.1f} checkpoints per run")
    print(f"engine / hand-written: {e_mem / h_mem:.2f}x without a checkpointer, {e_sql / h_sql:.2f}x with SqliteSaver "
          f"(target <= 1.5x); checkpoints {e_ck:.0f} vs {h_ck:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
