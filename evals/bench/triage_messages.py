"""ticket_triage on a file of messages, as `tierflow run` would run each one:
`python -m tierflow.evals.bench.triage_messages [--file samples/banking_messages.jsonl] [--policy P]`.

Prints, per message: how the run ended (verified, or waiting for a human), whether the
intent is the expected one, the escalations; then latency p50 / p95 per (step, tier) from
the ledger and per whole run. The default file holds 12 messages written for this
benchmark (not from any dataset), each with the intent a bank would file it under.
Runs use a throw-away $TIERFLOW_HOME-like folder (helpdesk, checkpoints), and the shared
policy knowledge base.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table

from tierflow.graphs import ticket_triage
from tierflow.model_tiers import ConfigError, TierflowError, TierRunContext
from tierflow.tools.helpdesk import Helpdesk
from tierflow.tools.knowledge_base import KnowledgeBase

__all__ = ["Message", "run_messages", "main"]

DEFAULT_FILE = Path(__file__).resolve().parents[2] / "samples" / "banking_messages.jsonl"


class Message(BaseModel):
    request: str
    intent: str | None = None


def load_messages(path: Path) -> list[Message]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err}") from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(Message.model_validate_json(line))
        except ValidationError as err:
            raise ConfigError(f"line {number} is not a message object ({err.errors()[0]['msg']})", source=str(path)) from None
    if not out:
        raise ConfigError("no messages in the file", source=str(path))
    return out


def _percentiles(samples: Sequence[float]) -> tuple[float, float]:
    if len(samples) == 1:
        return samples[0], samples[0]
    return statistics.median(samples), statistics.quantiles(samples, n=100, method="inclusive")[94]


def run_messages(messages: Sequence[Message], *, policy: str | None = None, tiers_file: str | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tierflow-triage-bench-") as home:
        kb = KnowledgeBase()
        if kb.count() == 0:
            kb.ingest()
        graph = ticket_triage.build(
            checkpointer=InMemorySaver(), tiers_file=tiers_file,
            resources={"kb": kb, "helpdesk": Helpdesk(Path(home) / "helpdesk.sqlite")},
        )
        rows, by_step, walls = [], defaultdict(list), []
        for i, message in enumerate(messages):
            started = time.perf_counter()
            config = {"configurable": {"thread_id": f"bench-{i}"}}
            out = graph.invoke({"request": message.request}, config, context=TierRunContext(policy=policy))
            walls.append(time.perf_counter() - started)
            for usage in out.get("ledger", []):
                by_step[(usage["node"], usage["tier"])].append(usage["latency_s"])
            intent = (out.get("results") or {}).get("0:classify", {}).get("label")
            rows.append({
                "request": message.request, "expected": message.intent, "intent": intent,
                "ended": "human review" if "__interrupt__" in out else out.get("status"),
                "escalations": [f"{e['step']} {e['from']}->{e['to']}" for e in out.get("events", []) if e["type"] == "escalate"],
                "wall_s": walls[-1],
            })
    steps = {
        f"{node} on {tier}": dict(zip(("p50_s", "p95_s"), _percentiles(lat), strict=True), n=len(lat))
        for (node, tier), lat in sorted(by_step.items())
    }
    return {"messages": rows, "steps": steps, "run": dict(zip(("p50_s", "p95_s"), _percentiles(walls), strict=True))}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tierflow.evals.bench.triage_messages", description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE, help="JSONL of {request, intent}")
    parser.add_argument("--policy", choices=["tiered", "all-slm", "all-frontier"], default=None)
    parser.add_argument("--tiers", default=None, help="tiers file")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    console = Console()
    try:
        report = run_messages(load_messages(args.file), policy=args.policy, tiers_file=args.tiers)
    except TierflowError as err:
        Console(stderr=True).print(f"[red]error:[/red] {err}", highlight=False)
        return 2
    table = Table(title="ticket_triage per message")
    for col in ("request", "expected", "intent", "ended", "escalations", "s"):
        table.add_column(col, overflow="fold")
    for r in report["messages"]:
        mark = "" if r["expected"] is None else (" [green]ok[/green]" if r["intent"] == r["expected"] else " [red]x[/red]")
        table.add_row(
            r["request"][:60], r["expected"] or "", f"{r['intent']}{mark}", str(r["ended"]), ", ".join(r["escalations"]),
            f"{r['wall_s']:.1f}",
        )
    console.print(table)
    graded = [r for r in report["messages"] if r["expected"] is not None]
    right = sum(r["intent"] == r["expected"] for r in graded)
    verified = sum(r["ended"] == "done" for r in report["messages"])
    console.print(
        f"intent right: {right}/{len(graded)}; ended verified with no human: {verified}/{len(report['messages'])}", highlight=False
    )
    lat = Table(title="latency per step (ledger)")
    for col in ("step on tier", "calls", "p50 s", "p95 s"):
        lat.add_column(col)
    for name, fig in report["steps"].items():
        lat.add_row(name, str(fig["n"]), f"{fig['p50_s']:.2f}", f"{fig['p95_s']:.2f}")
    lat.add_row("whole run", str(len(report["messages"])), f"{report['run']['p50_s']:.2f}", f"{report['run']['p95_s']:.2f}")
    console.print(lat)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    from tierflow.cli.guard import guard

    sys.exit(guard("python -m tierflow.evals.bench.triage_messages", main))
