"""What the tiered engine costs over a hand-written LangGraph graph making the same calls:
`python -m tierflow.evals.bench.engine_overhead [--runs 300]`.

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
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Protocol

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel
from typing_extensions import TypedDict

from tierflow.agents.workers import classifier, default_plan, extractor
from tierflow.graphs.builder import Workflow, build_graph
from tierflow.model_tiers import TierRegistry, config_from_mapping
from tierflow.model_tiers.ledger import UsageRecord
from tierflow.model_tiers.testing import ScriptedChatModel

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
    ledger: Annotated[list[UsageRecord], operator.add]


class _HandNode(Protocol):
    # A protocol, not a Callable: LangGraph's add_node matches a parameter named `state`.
    def __call__(self, state: _HandState) -> dict[str, Any]: ...


def _hand_written(registry: TierRegistry, checkpointer: Any) -> Any:
    def call(schema: type[BaseModel], system: str, key: str) -> _HandNode:
        def node(state: _HandState) -> dict[str, Any]:
            reply = registry.call("slm", [SystemMessage(system), HumanMessage(state["request"])], schema=schema)
            return {key: reply.value.model_dump(), "ledger": [reply.usage.record()]}

        return node

    graph = StateGraph(_HandState)
    graph.add_node("classify", call(Label, "Pick the intent.", "label"))
    graph.add_node("extract", call(Amount, "Copy the amount.", "amount"))
    graph.add_edge(START, "classify")
    graph.add_edge("classify", "extract")
    graph.add_edge("extract", END)
    return graph.compile(checkpointer=checkpointer)


def _run_block(graph: Any, start: int, runs: int, durable: bool) -> list[float]:
    times = []
    for i in range(start, start + runs):
        config = {"configurable": {"thread_id": f"t{i}"}}
        started = time.perf_counter()
        out = graph.invoke({"request": MESSAGE}, config, durability="sync") if durable else graph.invoke({"request": MESSAGE}, config)
        times.append(time.perf_counter() - started)
        if out.get("status", "done") != "done":
            raise RuntimeError(f"the run ended {out.get('status')}: {out.get('failure')}")
    return times


def _paired(graphs: Sequence[Any], runs: int, durable: bool) -> list[float]:
    """Median seconds per run of each graph, timed in alternating blocks (the machine's
    drift, a neighbour's load or the disk's fsync then weigh on both alike), after a warm-up."""
    block = max(1, runs // 10)
    times: list[list[float]] = [[] for _ in graphs]
    for g in graphs:
        _run_block(g, 10**6, 20, durable)
    for round_ in range(0, runs, block):
        for k, g in enumerate(graphs):
            times[k] += _run_block(g, round_, block, durable)
    return [statistics.median(t) for t in times]


def _checkpoints_per_run(path: Path) -> float:
    with sqlite3.connect(str(path)) as conn:
        threads: int = conn.execute("SELECT count(DISTINCT thread_id) FROM checkpoints").fetchone()[0]
        checkpoints: int = conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0]
        return checkpoints / max(1, threads)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tierflow.evals.bench.engine_overhead", description=__doc__)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args(argv)
    registry = _registry()
    labels = ("tiered engine", "hand-written StateGraph")
    builders = (_engine, _hand_written)
    memory = _paired([b(registry, None) for b in builders], args.runs, durable=False)
    with tempfile.TemporaryDirectory(prefix="tierflow-engine-bench-") as tmp:
        paths = [Path(tmp) / f"{i}.sqlite" for i in range(len(builders))]
        conns = [sqlite3.connect(str(p), check_same_thread=False) for p in paths]
        try:
            sqlite = _paired([b(registry, SqliteSaver(c)) for b, c in zip(builders, conns, strict=True)], args.runs, durable=True)
        finally:
            for c in conns:
                c.close()
        checkpoints = [_checkpoints_per_run(p) for p in paths]
    rows = list(zip(labels, memory, sqlite, checkpoints, strict=True))
    (_, e_mem, e_sql, e_ck), (_, h_mem, h_sql, h_ck) = rows
    for label, in_memory_s, sqlite_s, per_run in rows:
        print(
            f"{label:>24}: {1000 * in_memory_s:6.2f} ms per run, {1000 * sqlite_s:6.2f} ms with SqliteSaver; "
            f"{per_run:.1f} checkpoints per run"
        )
    print(f"engine / hand-written: {e_mem / h_mem:.2f}x without a checkpointer, {e_sql / h_sql:.2f}x with SqliteSaver "
          f"(target <= 1.5x); checkpoints {e_ck:.0f} vs {h_ck:.0f}")
    return 0


if __name__ == "__main__":
    from tierflow.cli.guard import guard

    sys.exit(guard("python -m tierflow.evals.bench.engine_overhead", main))
