"""Does a fine-tuned SmolLM2-135M beat the general Qwen2.5-Coder-1.5B (11x larger) on a
narrow step? `python -m tierflow.evals.bench.finetune [--task banking77|restaurant8k|all]`.

Per task (ticket_triage's classify step on Banking77; slot_extraction's extract step on
restaurant8k):

1. The visible file is split per stratum (intent; restaurant8k: one stratum), seeded by
   `stratified_split`: the first ``--held-out`` cases (10 per intent / 100) are held out
   for evaluation, the next ``--train`` (40 per intent / 1000) train the adapter. The two
   never overlap.
2. `finetune` trains a LoRA adapter on the step's compact prompt (the fenced message
   alone), unless the task folder already holds the adapter of exactly these examples and
   settings (delete it to retrain).
3. The step is called on the held-out cases (the zero-shot tiers on the first 3 per intent
   / 60, ``--zero-shot``) on three tiers, each with the prompt it is
   served in the graph: SmolLM2 and Qwen zero-shot (the step's full prompt), SmolLM2 + the
   adapter (compact). Graded by the suite's ground truth for the step. Printed: accuracy
   [Wilson 95% CI], macro-F1 (labels), latency p50, cost per case.
4. The graph through the eval harness on held-out cases (154 / 60, ``--graph-cases``):
   tiered (the fine-tuned tier under the verifier, Qwen above it) against all-frontier.

Goals (issue 13): on Banking77 the fine-tuned tier >= 80%, >= 30 points above Qwen, at
<= 1/5 of its latency; tiered >= 95% of all-frontier quality at <= 30% of its cost. Each
task folder gets `measured/summary.json`, `measured/accuracy_latency.png` and the
harness's run folder (`measured/graph-eval-soft-checks-off`; see `--soft-checks`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tierflow.agents.prompts import step_messages
from tierflow.agents.spec import PlanItem, StepInput
from tierflow.evals.datasets import Case, Dataset
from tierflow.evals.datasets.intents import by_label
from tierflow.evals.finetune import step_examples, step_of, stratified_split
from tierflow.evals.harness.evaluate import EvalResult, EvalSettings, run_eval
from tierflow.evals.harness.stats import macro_f1_score, proportion
from tierflow.evals.harness.suite import Suite
from tierflow.evals.suites.slot_extraction import RESTAURANT8K
from tierflow.evals.suites.ticket_triage import BANKING77
from tierflow.model_tiers import TierflowError
from tierflow.model_tiers.config import load_tier_config
from tierflow.model_tiers.finetune import LoraSettings, finetune
from tierflow.model_tiers.registry import TierRegistry
from tierflow.model_tiers.spec import TierConfig, TierSpec

__all__ = ["Task", "TASKS", "Outcome", "step_on", "main"]

console = Console(width=None if sys.stdout.isatty() else 150)


@dataclass(frozen=True)
class Task:
    """One graph step fine-tuned and measured: where its data comes from and how it splits."""

    name: str
    suite: Suite
    step: str
    # Cases are split per stratum: the first `held_out` (by seeded rank) are evaluated, the
    # next `train` train the adapter.
    stratum: Callable[[Case[Any, Any]], Hashable]
    train: int
    held_out: int
    # The zero-shot tiers run on the first `zero_shot` held-out cases per stratum (Qwen takes
    # about 5 s a call here), the graph eval on `graph_cases` of them.
    zero_shot: int
    graph_cases: int
    label_of: Callable[[Any], str | None] | None = None  # for macro-F1 (label steps)


def _label(value: Any) -> str | None:
    return None if value is None else str(value.get("label"))


TASKS = {
    "banking77": Task(
        "banking77-classify", BANKING77, "classify", by_label, train=40, held_out=10, zero_shot=3, graph_cases=154, label_of=_label
    ),
    "restaurant8k": Task(
        "restaurant8k-extract", RESTAURANT8K, "extract", lambda case: "all", train=1000, held_out=100, zero_shot=60, graph_cases=60
    ),
}


@dataclass(frozen=True)
class Outcome:
    case_id: str
    right: bool
    gold: str | None
    predicted: str | None
    latency_s: float
    cost_usd: float
    error: str | None = None
    # the step's soft checks that objected to the answer (what would ask a higher tier)
    soft_flags: tuple[str, ...] = ()


def step_on(registry: TierRegistry, tier: str, task: Task, cases: Sequence[Case[Any, Any]]) -> list[Outcome]:
    """The step's answer for each case on `tier`, with the prompt the tier is served, graded
    by the suite's ground truth for the step."""
    spec = step_of(task.suite.graph, task.step)
    truth = next(t for t in task.suite.truths if t.node == task.step)
    compact = registry.config.tier(tier).prompt == "compact"
    assert spec.output_model is not None and truth.answer is not None
    out = []
    for case in cases:
        request = str(task.suite.to_input(case)["request"])
        inp = StepInput(request=request, results={}, item=PlanItem(id=f"0:{task.step}", step=task.step), resources={})
        messages = step_messages(spec, inp, [], compact=compact)
        gold = truth.answer(case)
        gold_text = task.label_of(gold) if task.label_of else json.dumps(gold)
        started = time.perf_counter()
        try:
            reply = registry.call(tier, messages, schema=spec.output_model)
        except TierflowError as err:  # the model's mistake or an outage: a wrong answer, recorded
            out.append(Outcome(case.id, False, gold_text, None, time.perf_counter() - started, 0.0, f"{type(err).__name__}: {err}"))
            continue
        value = reply.value.model_dump(mode="json")
        predicted = task.label_of(value) if task.label_of else json.dumps(value)
        right = bool(truth.is_correct(value, case))
        flags = tuple(c.name for c in spec.checks if c.soft and c(reply.value, inp) is not None)
        out.append(Outcome(case.id, right, gold_text, predicted, reply.usage.latency_s, reply.usage.cost_usd, soft_flags=flags))
    return out


def _soft_check_evidence(tuned: Sequence[Outcome], general: Sequence[Outcome], tuned_name: str, general_name: str) -> None:
    """Whether the step's soft checks pick out the fine-tuned tier's wrong answers: what a
    second opinion from the general tier would gain on the answers they flag."""
    if not tuned:
        return
    flagged = [o for o in tuned if o.soft_flags]
    passed = [o for o in tuned if not o.soft_flags]
    general_by_id = {o.case_id: o for o in general}
    both = [o for o in flagged if o.case_id in general_by_id]

    def pct(items: Sequence[Outcome]) -> str:
        return "n/a" if not items else f"{100 * sum(o.right for o in items) / len(items):.0f}% of {len(items)}"

    console.print(
        f"soft checks on {tuned_name}: flag {len(flagged)} of {len(tuned)} answers; {tuned_name} right on the flagged "
        f"{pct(flagged)}, on the rest {pct(passed)}; on the flagged cases it also ran, {tuned_name} right "
        f"{pct(both)} vs {general_name} {pct([general_by_id[o.case_id] for o in both])}",
        highlight=False,
    )


def _saved_outcomes(path: Path, cases: Sequence[Case[Any, Any]], model: str) -> list[Outcome] | None:
    """A rerun's outcomes of the same cases on the same model (the adapter retrained: none)."""
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if [r["case_id"] for r in rows] != [c.id for c in cases] or any(r.get("model") != model for r in rows):
        return None
    return [Outcome(**{**{k: v for k, v in r.items() if k != "model"}, "soft_flags": tuple(r.get("soft_flags", ()))}) for r in rows]


def _reusable(folder: Path, examples: Sequence[Any], settings: LoraSettings) -> bool:
    record, trained = folder / "train.json", folder / "training.jsonl"
    if not (record.is_file() and trained.is_file() and (folder / "adapter.gguf").is_file()):
        return False
    same_settings = json.loads(record.read_text(encoding="utf-8")).get("settings") == settings.model_dump()
    lines = [json.loads(line) for line in trained.read_text(encoding="utf-8").splitlines() if line.strip()]
    return same_settings and lines == [e.model_dump(exclude_none=True, exclude_defaults=True) for e in examples]


def _summary_row(name: str, outcomes: Sequence[Outcome], labels: Sequence[str] | None) -> dict[str, Any]:
    right = sum(o.right for o in outcomes)
    acc = proportion(right, len(outcomes))
    return {
        "tier": name,
        "cases": len(outcomes),
        "right": right,
        "accuracy": acc.value,
        "ci": [acc.low, acc.high],
        "macro_f1": None if labels is None else macro_f1_score([(o.gold or "", o.predicted) for o in outcomes], labels),
        "latency_p50_s": statistics.median(o.latency_s for o in outcomes),
        "cost_per_case_usd": sum(o.cost_usd for o in outcomes) / len(outcomes),
        "errors": sum(o.error is not None for o in outcomes),
    }


def _plot(rows: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for row in rows:
        low, high = row["ci"]
        yerr = [[max(0.0, row["accuracy"] - low)], [max(0.0, high - row["accuracy"])]]
        ax.errorbar([row["latency_p50_s"]], [row["accuracy"]], yerr=yerr, fmt="o", capsize=4, label=row["tier"])
    ax.set_xlabel("latency p50 per call (s)")
    ax.set_ylabel("accuracy on held-out cases (95% CI)")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _graph_eval(task: Task, held_out: Sequence[Case[Any, Any]], tiers_file: Path, limit: int, out: Path) -> EvalResult:
    """tiered against all-frontier through the eval harness, on the held-out cases only."""
    from tierflow.evals.harness.policies import resolve_policies

    cases = list(held_out)

    def load(path: Path | None, limit: int | None, seed: int) -> Dataset[Any, Any]:
        dataset = task.suite.load(None, None, seed)
        return dataset.model_copy(update={"cases": cases}).sample(limit, seed, stratify=task.stratum)

    suite = replace(task.suite, load=load)
    policies = resolve_policies(["tiered", "all-frontier"], defaults=())
    settings = EvalSettings(policies=tuple(policies), out_dir=out, limit=limit, concurrency=1, tiers_file=str(tiers_file), progress=False)
    return run_eval(suite, settings)


def _ladder(config: TierConfig, tuned: TierSpec, role: str) -> TierConfig:
    """The configured ladder with the fine-tuned tier above its base, and `role` on it."""
    tiers = []
    for spec in config.tiers:
        tiers.append(spec)
        if spec.name == config.cheapest.name:
            tiers.append(tuned)
    return config.model_copy(update={"tiers": tiers, "roles": {**config.roles, role: tuned.name}})


def main(argv: Sequence[str] | None = None) -> int:
    from tierflow.model_tiers.home import home_dir

    parser = argparse.ArgumentParser(prog="python -m tierflow.evals.bench.finetune", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=[*TASKS, "all"], default="all")
    parser.add_argument("--dataset", type=Path, help="the task's dataset file (default: under $TIERFLOW_DATASETS)")
    parser.add_argument("--train", type=int, help="training cases per stratum (default: 40 per intent / 1000 booking requests)")
    parser.add_argument("--held-out", type=int, help="held-out cases per stratum (default: 10 per intent / 100 booking requests)")
    parser.add_argument(
        "--zero-shot", type=int, help="zero-shot tiers on the first N held-out cases per stratum (default: 3 per intent / 60)"
    )
    parser.add_argument("--graph-cases", type=int, help="held-out cases run through the graph by the harness (default 154 / 60; 0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument(
        "--soft-checks", choices=["on", "off"], default="off", help="the fine-tuned tier's soft_checks in the graph eval (default off)"
    )
    parser.add_argument("--out", type=Path, help="output folder (default: $TIERFLOW_HOME/bench/finetune)")
    parser.add_argument("--tiers", help="tiers file whose cheapest tier is fine-tuned and whose top tier compares")
    args = parser.parse_args(argv)
    out = args.out or home_dir() / "bench" / "finetune"
    out.mkdir(parents=True, exist_ok=True)
    try:
        for name in TASKS if args.task == "all" else [args.task]:
            _run(TASKS[name], args, out)
    except TierflowError as err:
        console.print(f"[red]error:[/red] {err}", highlight=False)
        return 2
    return 0


def _run(task: Task, args: argparse.Namespace, root: Path) -> None:
    config = load_tier_config(args.tiers)
    base, top = config.cheapest, config.frontier
    spec = step_of(task.suite.graph, task.step)
    train_n, held_n = args.train or task.train, args.held_out or task.held_out
    dataset = task.suite.load(args.dataset, None, args.seed)
    labels = sorted({by_label(c) for c in dataset.cases}) if task.label_of else None
    held_out, train = stratified_split(dataset.cases, task.stratum, (held_n, train_n), args.seed)
    built = step_examples(task.suite, task.step, train, prompt="compact")
    examples = built.examples
    if built.skipped:
        console.print(
            f"left out {len(built.skipped)} training case(s) whose answer the step's schema cannot hold, e.g. {built.skipped[0]}",
            highlight=False,
        )
    settings = LoraSettings(epochs=args.epochs, seed=args.seed)
    folder = root / task.name
    out = folder / "measured"
    if _reusable(folder, examples, settings):
        console.print(f"reusing the adapter in {folder} (same examples and settings)", highlight=False)
    else:
        shutil.rmtree(out, ignore_errors=True)  # measured on another adapter
        console.print(f"fine-tuning {base.model} on {len(examples)} {task.name} examples -> {folder}", highlight=False)
        source = f"{task.name}: {train_n} per stratum, seed {args.seed}"
        finetune(examples, base, folder, tier_name=f"{base.name}-{task.step}", settings=settings, source=source)
    out.mkdir(parents=True, exist_ok=True)
    record = json.loads((folder / "train.json").read_text(encoding="utf-8"))
    name = str(record["tier"])
    tuned = base.model_copy(
        update={
            "name": name, "adapter": str((folder / "adapter.gguf").resolve()), "prompt": "compact", "soft_checks": args.soft_checks == "on",
        }
    )
    bench_config = _ladder(config, tuned, spec.role)
    registry = TierRegistry(bench_config)
    zero_shot_n = task.zero_shot if args.zero_shot is None else args.zero_shot
    zero_shot = stratified_split(held_out, task.stratum, (zero_shot_n,), args.seed)[0]
    graph_cases = task.graph_cases if args.graph_cases is None else args.graph_cases

    rows = []
    by_tier: dict[str, list[Outcome]] = {}
    for tier, cases in ((base.name, zero_shot), (name, held_out), (top.name, zero_shot)):
        saved = out / f"outcomes-{tier}.jsonl"
        outcomes = _saved_outcomes(saved, cases, bench_config.tier(tier).model_label)
        if outcomes is None:
            console.print(f"{task.step} on {tier}: {len(cases)} held-out cases", highlight=False)
            outcomes = step_on(registry, tier, task, cases)
        else:
            console.print(f"{task.step} on {tier}: reusing the {len(cases)} outcomes in {saved}", highlight=False)
        by_tier[tier] = outcomes
        row = _summary_row(tier, outcomes, labels)
        row["model"] = bench_config.tier(tier).model_label
        rows.append(row)
        saved.write_text("".join(json.dumps({**o.__dict__, "model": row["model"]}) + "\n" for o in outcomes), encoding="utf-8")

    table = Table(
        title=f"{task.name}: held-out {held_n} per stratum of the visible file; adapter trained on {len(examples)} ({train_n} per stratum)"
    )
    for col in ("tier", "model", "cases", "accuracy [95% CI]", "macro-F1", "p50 s", "$/case", "errors"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["tier"], r["model"], str(r["cases"]), f"{100 * r['accuracy']:.1f}% [{100 * r['ci'][0]:.0f}-{100 * r['ci'][1]:.0f}]",
            "-" if r["macro_f1"] is None else f"{r['macro_f1']:.3f}",
            f"{r['latency_p50_s']:.2f}", f"{r['cost_per_case_usd']:.2g}", str(r["errors"]),
        )
    console.print(table)
    ft, general = rows[1], rows[2]
    console.print(
        f"fine-tuned vs {general['model']}: {100 * (ft['accuracy'] - general['accuracy']):+.1f} points (goal >= +30), "
        f"latency ratio {ft['latency_p50_s'] / general['latency_p50_s']:.2f} (goal <= 0.20); "
        f"fine-tuned accuracy {100 * ft['accuracy']:.1f}% (goal >= 80% on Banking77)",
        highlight=False,
    )
    _soft_check_evidence(by_tier[name], by_tier[top.name], name, top.name)
    curve = record["loss_curve"]
    console.print(
        f"training: {record['examples']} examples, {record['steps']} steps, {record['train_seconds']:.0f} s, "
        f"loss {curve[0]:.3f} -> {sum(curve[-10:]) / len(curve[-10:]):.3f} (mean of the last 10 steps)",
        highlight=False,
    )
    _plot(rows, out / "accuracy_latency.png", f"{task.name}: fine-tuned 135M vs general models")
    training = {k: record[k] for k in ("examples", "steps", "train_seconds", "settings")}
    summary: dict[str, Any] = {"task": task.name, "step": rows, "training": training}

    if graph_cases:
        tiers_file = out / f"tiers-soft-checks-{args.soft_checks}.json"
        tiers_file.write_text(bench_config.model_dump_json(indent=2) + "\n", encoding="utf-8")
        result = _graph_eval(task, held_out, tiers_file, graph_cases, out / f"graph-eval-soft-checks-{args.soft_checks}")
        from tierflow.cli.eval import summary_table

        console.print(summary_table(result.report))
        by_policy = {p.policy: p for p in result.report.policies}
        tiered, frontier = by_policy["tiered"], by_policy["all-frontier"]
        q_t, q_f = tiered.quality[result.report.primary].value, frontier.quality[result.report.primary].value
        ratio = None if not q_f else (q_t or 0) / q_f
        console.print(
            f"tiered / all-frontier {result.report.primary}: {'n/a' if ratio is None else f'{100 * ratio:.0f}%'} (goal >= 95%); "
            f"cost: {'n/a' if tiered.cost_vs_all_frontier is None else f'{100 * tiered.cost_vs_all_frontier:.0f}%'} "
            "of all-frontier (goal <= 30%)",
            highlight=False,
        )
        summary["graph"] = {"run_dir": str(result.out_dir), "quality_ratio": ratio, "cost_vs_all_frontier": tiered.cost_vs_all_frontier}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    console.print(f"written: {out / 'summary.json'}, {out / 'accuracy_latency.png'}", highlight=False)


if __name__ == "__main__":
    from tierflow.cli.guard import guard

    sys.exit(guard("python -m tierflow.evals.bench.finetune", main))
