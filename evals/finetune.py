"""Fine-tuning data from an eval run: where the small model failed and the top tier passed.

For every recorded plan item (any policy of the run) in which a candidate on the cheapest
tier failed the verifier and the accepted candidate came from the top tier, one line of
chat-format JSONL is written::

    {"messages": [{"role": "system", ...}, {"role": "user", ...}, {"role": "assistant", ...}]}

Each line's `metadata` names its step; a structured step's line carries its output schema
as `response_format` (what the grammar constrains the answer to). The system and user
turns are the step's prompt exactly as the step sent it on its first
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
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ValidationError

from tierflow.agents.prompts import step_messages
from tierflow.agents.spec import PlanItem, StepInput, StepSpec
from tierflow.evals.datasets import Case
from tierflow.evals.datasets.cases import sample_rank
from tierflow.evals.harness.records import AttemptTrace, CaseRecord, ResultStore, RunFolderError, StepTrace
from tierflow.evals.harness.suite import Suite
from tierflow.graphs.catalog import resolve_graph
from tierflow.model_tiers.errors import TierflowError
from tierflow.model_tiers.finetune.data import TrainingDataError, TrainingExample

__all__ = ["ExportSummary", "finetune_lines", "export_finetune", "stratified_split", "step_of", "step_examples", "StepExamples"]


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
        arguments = json.dumps(value.get("args") or {}, ensure_ascii=False)
        call = {"id": "call_0", "type": "function", "function": {"name": value["name"], "arguments": arguments}}
        return {"role": "assistant", "content": "", "tool_calls": [call]}
    return {"role": "assistant", "content": json.dumps(value, ensure_ascii=False)}


def _known_correct(record: CaseRecord, accepted: AttemptTrace) -> bool:
    if accepted.correct is not None:
        return accepted.correct
    graded = [e for e in record.evaluations if e.passed is not None]
    return bool(graded) and all(e.passed for e in graded)


def _response_format(graph: str | None, node: str) -> dict[str, Any] | None:
    """The structured step's output schema as OpenAI's `response_format` (None if unknown)."""
    if graph is None:
        return None
    try:
        spec = step_of(graph, node)
    except TierflowError:
        return None  # a graph renamed or removed since the run: the line still trains a full-prompt tier
    if spec.output_model is None:
        return None
    function = convert_to_openai_tool(spec.output_model)["function"]
    return {
        "type": "json_schema",
        "json_schema": {"name": function["name"], "description": function.get("description", ""), "schema": function["parameters"]},
    }


def finetune_lines(
    records: list[CaseRecord],
    *,
    cheapest: str,
    top: str,
    require_correct: bool,
    summary: ExportSummary,
    graph: str | None = None,
    prompt_styles: Mapping[str, str] | None = None,
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
            else:
                response_format = _response_format(graph, step.node)
                if response_format is not None:
                    line["response_format"] = response_format
            # The recorded prompt is the first attempt's, in the prompt style of its tier.
            style = (prompt_styles or {}).get(step.attempts[0].tier or "", "full")
            line["metadata"] = {"step": step.node, "prompt": style, **({"graph": graph} if graph else {})}
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
    lines = finetune_lines(
        records,
        cheapest=ladder[0],
        top=ladder[-1],
        require_correct=require_correct,
        summary=summary,
        graph=manifest.graph,
        prompt_styles={t["name"]: str(t.get("prompt", "full")) for t in manifest.tier_config.get("tiers", [])},
    )
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


def stratified_split(
    cases: Sequence[Case[Any, Any]], key: Callable[[Case[Any, Any]], Hashable], sizes: Sequence[int], seed: int
) -> list[list[Case[Any, Any]]]:
    """Disjoint samples of `sizes[i]` cases per stratum each (fewer where a stratum runs out).

    Each stratum is ordered by `sample_rank(id, seed)` and cut in consecutive slices, so
    the first sample (training) never overlaps the second (evaluation).
    """
    strata: dict[Hashable, list[Case[Any, Any]]] = defaultdict(list)
    for case in cases:
        strata[key(case)].append(case)
    out: list[list[Case[Any, Any]]] = [[] for _ in sizes]
    for members in strata.values():
        members.sort(key=lambda c: sample_rank(c.id, seed))
        start = 0
        for i, size in enumerate(sizes):
            out[i].extend(members[start : start + size])
            start += size
    return out


def step_of(graph: str, step: str) -> StepSpec:
    """The declared step `step` of graph `graph` (a clear error naming the graph's steps)."""
    workflow = resolve_graph(graph).workflow
    for spec in workflow.all_steps:
        if spec.name == step:
            return spec
    names = ", ".join(s.name for s in workflow.all_steps if s.uses_model)
    raise TrainingDataError(f"graph '{graph}' has no step '{step}'; its model steps are: {names}")


@dataclass
class StepExamples:
    examples: list[TrainingExample]
    # (case id, why): cases whose right answer the step's schema cannot hold (e.g. a gold
    # span longer than the field allows), left out rather than trained on.
    skipped: list[tuple[str, str]] = field(default_factory=list)


def step_examples(
    suite: Suite, step: str, cases: Sequence[Case[Any, Any]], *, prompt: Literal["full", "compact"]
) -> StepExamples:
    """One training example per case: the step's prompt as the graph sends it on a tier with
    this prompt style, and the dataset's right answer for the step (`StepTruth.answer`)."""
    spec = step_of(suite.graph, step)
    truth = next((t for t in suite.truths if t.node == step and t.answer is not None), None)
    if truth is None or truth.answer is None:
        known = ", ".join(t.node for t in suite.truths if t.answer is not None) or "none"
        raise TrainingDataError(f"suite '{suite.name}' knows no right answers for step '{step}' (steps it has answers for: {known})")
    if spec.output_model is None:
        raise TrainingDataError(f"step '{step}' is a {spec.kind} step; train tool steps from `tierflow export-finetune` files")
    response_format = _response_format(suite.graph, step)
    out = StepExamples(examples=[])
    for case in cases:
        try:
            answer = spec.output_model.model_validate(truth.answer(case)).model_dump(mode="json")
        except ValidationError as err:
            first = err.errors()[0]
            out.skipped.append((case.id, f"{'.'.join(str(x) for x in first['loc'])}: {first['msg']}"))
            continue
        request = str(suite.to_input(case)["request"])
        inp = StepInput(request=request, results={}, item=PlanItem(id=f"0:{step}", step=step), resources={})
        messages = step_messages(spec, inp, [], compact=prompt == "compact")
        turns = [{"role": "system" if m.type == "system" else "user", "content": m.content} for m in messages]
        turns.append({"role": "assistant", "content": json.dumps(answer, ensure_ascii=False)})
        out.examples.append(
            TrainingExample.model_validate(
                {
                    "messages": turns,
                    "response_format": response_format,
                    "metadata": {"graph": suite.graph, "step": step, "case_id": case.id, "prompt": prompt},
                }
            )
        )
    return out
