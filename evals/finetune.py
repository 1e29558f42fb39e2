"""Fine-tuning data from an eval run: where the small model failed and the top tier passed.

For every recorded plan item (any policy of the run) in which a candidate on the cheapest
tier failed the verifier and the accepted candidate came from the top tier, one line of
chat-format JSONL is written::

    {"messages": [{"role": "system", ...}, {"role": "user", ...}, {"role": "assistant", ...}]}

The system and user turns are the step's prompt exactly as the step sent it on its first
attempt (the eval records capture it from the model call); the assistant turn is the top
tier's accepted answer: the structured output as JSON text, or for a tool step an OpenAI
``tool_calls`` entry (and the line also carries the ``tools`` the step offered).

"Passed" means the verifier passed it. With ``require_correct`` an example is kept only
when the answer is also known to be right: the suite's ground truth for that step says so,
or (where the suite has none for the step) every graded evaluation of the case passed.
Identical lines (e.g. the same case under two tiered policies) are written once.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.harness.records import AttemptTrace, CaseRecord, ResultStore, RunFolderError, StepTrace

__all__ = ["ExportSummary", "finetune_lines", "export_finetune"]


@dataclass
class ExportSummary:
    path: Path
    written: int = 0
    duplicates: int = 0
    without_prompt: int = 0
    not_known_correct: int = 0
    by_node: Counter[str] = field(default_factory=Counter)


def _assistant_turn(step: StepTrace, accepted: AttemptTrace) -> dict[str, Any]:
    value = accepted.value
    if step.kind == "tool" and isinstance(value, dict) and "name" in value:
        call = {"id": "call_0", "type": "function", "function": {"name": value["name"], "arguments": json.dumps(value.get("args") or {}, ensure_ascii=False)}}
        return {"role": "assistant", "content": "", "tool_calls": [call]}
    return {"role": "assistant", "content": json.dumps(value, ensure_ascii=False)}


def _known_correct(record: CaseRecord, accepted: AttemptTrace) -> bool:
    if accepted.correct is not None:
        return accepted.correct
    graded = [e for e in record.evaluations if e.passed is not None]
    return bool(graded) and all(e.passed for e in graded)


def finetune_lines(
    records: list[CaseRecord], *, cheapest: str, top: str, require_correct: bool, summary: ExportSummary
) -> list[tuple[str, dict[str, Any]]]:
    """(node, chat-format line) for `records`; counts of what was left out go into `summary`."""
    lines: list[tuple[str, dict[str, Any]]] = []
    for record in records:
        for step in record.steps:
            slm_failed = any(a.tier == cheapest and a.verdict == "fail" for a in step.attempts)
            accepted = next((a for a in reversed(step.attempts) if a.verdict == "pass"), None)
            if not slm_failed or accepted is None or accepted.tier != top:
                continue
            if step.prompt is None:
                summary.without_prompt += 1
                continue
            if require_correct and not _known_correct(record, accepted):
                summary.not_known_correct += 1
                continue
            line: dict[str, Any] = {
                "messages": [*(t.model_dump(exclude_none=True) for t in step.prompt), _assistant_turn(step, accepted)]
            }
            if step.kind == "tool" and step.tools:
                line["tools"] = step.tools
            lines.append((step.node, line))
    return lines


def export_finetune(run_dir: str | Path, out: str | Path | None = None, *, require_correct: bool = False) -> ExportSummary:
    """Write the fine-tuning JSONL of an eval run folder (default: `<run_dir>/finetune.jsonl`)."""
    store = ResultStore(run_dir)
    manifest = store.read_manifest()
    if manifest is None:
        raise RunFolderError(f"{run_dir} is not an eval run folder (no run.json); pass the --out folder of `tierflow eval`")
    ladder = manifest.ladder
    if len(ladder) < 2:
        raise RunFolderError(f"the run's tier ladder has {len(ladder)} tier(s); a fine-tuning export needs a cheaper and a top tier")
    path = Path(out) if out is not None else store.run_dir / "finetune.jsonl"
    summary = ExportSummary(path=path)
    records = [r for policy in store.policies() for r in store.load(policy).values()]
    lines = finetune_lines(records, cheapest=ladder[0], top=ladder[-1], require_correct=require_correct, summary=summary)
    seen: set[str] = set()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for node, line in lines:
            text = json.dumps(line, ensure_ascii=False, sort_keys=True)
            if text in seen:
                summary.duplicates += 1
                continue
            seen.add(text)
            handle.write(text + "\n")
            summary.written += 1
            summary.by_node[node] += 1
    return summary
