"""What `tierflow run` prints: one line per verdict and escalation, a short panel for a
question to a human, the final answer, and the ledger against the all-frontier price."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tierflow.model_tiers import LedgerSummary

__all__ = ["describe_event", "question_panel", "question_line", "final_panel", "ledger_table", "clip"]

_STEP_WIDTH = 10


def clip(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_event(event: Mapping[str, Any]) -> str | None:
    """One console line for a streamed event (None for events not worth a line)."""
    kind = event.get("type")
    step = f"[bold]{event.get('step', '')!s:<{_STEP_WIDTH}}[/bold]"
    if kind == "model_call" and event.get("error"):
        return f"  {step} on [cyan]{event.get('tier')}[/cyan] (attempt {event.get('attempt')}): [red]{event['error']}[/red]"
    if kind == "verdict":
        where = f"on [cyan]{event.get('tier')}[/cyan] (attempt {event.get('attempt')})" if event.get("tier") else "(code)"
        if event["verdict"] == "pass":
            warn = f" [yellow](warnings: {clip('; '.join(event['warnings']), 120)})[/yellow]" if event.get("warnings") else ""
            return f"  {step} {where}: [green]verified[/green]{warn}"
        return f"  {step} {where}: [red]rejected[/red] - {clip(event.get('reason') or '')}"
    if kind in ("retry", "escalate", "fallback"):
        verb = {"retry": "retry on", "escalate": "escalate to", "fallback": "fall back to"}[kind]
        return f"  {step} [yellow]{verb} {event.get('to')}[/yellow] (from {event.get('from')})"
    if kind == "top":
        return f"  {step} [yellow]no higher tier: {clip(event.get('reason') or '', 100)}[/yellow]"
    if kind == "tool_executed":
        return f"  {step} ran tool [cyan]{event.get('tool')}[/cyan]" + (" (write)" if event.get("write") else "")
    if kind == "run_error":
        return f"  {step} [red]stopped ({event.get('kind')})[/red]: {clip(event.get('reason') or '', 200)}"
    if kind in (
        "human_decision", "human_reject", "default_plan", "budget_downgrade", "budget_approved", "budget_stop", "declined",
        "rejected_input", "judge_fault",
    ):
        rest = {k: v for k, v in event.items() if k not in ("type", "item_id")}
        return f"  [magenta]{kind}[/magenta] {clip(rest)}"
    return None


def _how_to_answer(question: Mapping[str, Any]) -> str:
    if question.get("type") == "human_review":
        return "approve (take the last candidate), edit (give the value), or reject"
    return "yes or no"


def question_panel(question: Mapping[str, Any]) -> Panel:
    """A human-review, confirmation or budget question, short enough to read."""
    kind = question.get("type", "question")
    lines: list[Any] = [Text.assemble(("step: ", "bold"), str(question.get("step", "")))]
    if kind == "human_review":
        candidates: Sequence[Any] = question.get("candidates") or []
        reasons: Sequence[Any] = question.get("reasons") or []
        for i, (cand, why) in enumerate(zip(candidates, reasons, strict=False), 1):
            lines.append(Text.assemble((f"candidate {i}: ", "bold"), clip(cand, 140)))
            lines.append(Text.assemble(("  rejected: ", "red"), clip(why, 160)))
        for fault in question.get("faults") or []:
            lines.append(Text.assemble(("fault: ", "red"), clip(fault, 160)))
        if question.get("error"):
            lines.append(Text.assemble(("your last answer: ", "red"), clip(question["error"], 200)))
    else:
        lines.append(Text(clip(question.get("question", question), 300)))
    lines.append(Text.assemble(("answer: ", "bold"), _how_to_answer(question)))
    return Panel(Group(*lines), title=f"waiting for a human ({kind})", border_style="yellow", expand=False)


def question_line(question: Mapping[str, Any], resume: str) -> str:
    """The one line printed when no terminal can answer: what is asked, how to resume."""
    if question.get("type") == "human_review":
        answers = "'approve', 'reject' or '{\"action\": \"edit\", \"value\": {...}}'"
        what = f"step '{question.get('step')}' failed on every tier"
    else:
        answers = "yes or no"
        what = clip(question.get("question", ""), 120)
    return f"waiting for a human: {what}. Resume with: {resume} --answer {answers}"


def final_panel(final: Mapping[str, Any]) -> Panel:
    """The run's final output, one field a line (long values clipped)."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for key, value in final.items():
        if value in (None, [], {}, ""):
            continue
        table.add_row(key, clip(value, 400))
    status = final.get("status")
    return Panel(table, title=f"result: {status}", border_style="green" if status == "done" else "red", expand=False)


def ledger_table(summary: LedgerSummary, frontier_tier: str | None, console: Console) -> None:
    """Calls, tokens, latency and cost per tier, and the same calls priced on the frontier."""
    table = Table(title="Ledger (this run)")
    for col in ("tier", "calls", "tokens in", "tokens out", "latency s", "cost $"):
        table.add_column(col, justify="right")
    for t in summary.per_tier:
        table.add_row(t.tier, str(t.calls), str(t.input_tokens), str(t.output_tokens), f"{t.latency_s:.2f}", f"{t.cost_usd:.6f}")
    table.add_row("[bold]total", str(summary.calls), "", "", f"{summary.latency_s:.2f}", f"[bold]{summary.cost_usd:.6f}")
    console.print(table)
    if summary.all_frontier_cost_usd:
        saved = summary.savings_vs_frontier or 0.0
        console.print(
            f"The same calls all on the frontier tier ('{frontier_tier}') would cost ${summary.all_frontier_cost_usd:.6f}: "
            f"this run cost {100 * (1 - saved):.1f}% of that ({100 * saved:.1f}% saved).",
            highlight=False,
        )
