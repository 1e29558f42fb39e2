"""Escalation economics on real recorded answers: math_qa over RouteLLM's GSM8K file.

    python -m tierflow.evals.bench.replay_gsm8k [--dataset PATH] [--out DIR] [--workers N]

Every case runs the compiled math_qa graph on the real engine with the replay tiers of
tiers/replay_gsm8k.toml (Mixtral-8x7B-Instruct as `slm`, GPT-4-1106-preview as
`frontier`, both tiers pointed at --dataset), under each policy: all-slm, all-frontier,
tiered (strict arithmetic checks) and tiered with a verifier-score threshold (a sweep).
A case is correct iff the recording of the model whose answer the graph returns is marked
True in the file. Cost is the ledger's: estimated tokens (4 characters per token) priced
by the tiers file. Contaminated prompts (contaminated_prompts.jsonl next to the CSV, or
--contaminated) are dropped, as RouteLLM does. Writes report.json, report.md, cases.jsonl
and cost_quality.png to --out (default $TIERFLOW_HOME/bench/replay_gsm8k).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tierflow.evals.datasets.gsm8k import MathCase, MathDataset, RecordedAnswer, load_routellm_gsm8k
from tierflow.evals.harness.stats import precision_recall, proportion, wilson_interval
from tierflow.graphs.math_qa import build
from tierflow.model_tiers import ConfigError, TierConfig, TierRegistry, config_from_mapping, load_tier_config
from tierflow.model_tiers.home import home_dir
from tierflow.model_tiers.providers.replay import replayed_from
from tierflow.tools.datasets import dataset_file

__all__ = ["Policy", "CaseOutcome", "default_policies", "run_benchmark", "main", "ROUTELLM_GSM8K", "DEFAULT_TIERS"]

DEFAULT_TIERS = Path(__file__).resolve().parents[2] / "tiers" / "replay_gsm8k.toml"
DEFAULT_THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.01)
QUALITY_TARGET = 0.95
# RouteLLM's published GSM8K point (project page / LMSYS blog, 2024-07-01): routers trained
# on Chatbot Arena data cut cost 35% vs GPT-4 alone at 95% of GPT-4's performance.
class PublishedAnchor(TypedDict):
    cost_reduction: float
    quality_of_strong: float
    source: str


ROUTELLM_GSM8K: PublishedAnchor = {"cost_reduction": 0.35, "quality_of_strong": 0.95,
                  "source": "https://sky.cs.berkeley.edu/project/routellm/ (LMSYS blog 2024-07-01)"}
console = Console(stderr=True)


@dataclass(frozen=True)
class Policy:
    name: str
    routing: str  # all-slm | all-frontier | tiered
    min_score: float | None = None


@dataclass(frozen=True)
class CaseOutcome:
    """One case under one policy. `slm_*` / `frontier_*` are the bottom / top of the ladder;
    a verdict is None when that tier did not run."""

    policy: str
    case_id: str
    row: int
    answered_by: str | None
    verified: bool
    correct: bool
    answer: float | None
    recorded_answer: float | None
    cost_usd: float
    slm_calls: int
    frontier_calls: int
    escalated: bool
    slm_verdict: str | None
    frontier_verdict: str | None
    slm_correct: bool
    frontier_correct: bool
    status: str


def default_policies(thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> list[Policy]:
    sweep = [Policy(f"tiered score>={t:g}", "tiered", t) for t in thresholds]
    return [Policy("all-slm", "all-slm"), Policy("all-frontier", "all-frontier"), Policy("tiered", "tiered"), *sweep]


# -- configuration ---------------------------------------------------------------------------


def replay_config(tiers_file: Path, dataset: Path) -> TierConfig:
    """The replay tiers file with every replay tier pointed at `dataset`."""
    config = load_tier_config(tiers_file, env={})
    if any(t.provider != "replay" for t in config.tiers):
        raise ConfigError("every tier of the benchmark's tiers file must use provider = \"replay\"", source=str(tiers_file))
    return replayed_from(config, dataset)


def _recorded_models(config: TierConfig) -> tuple[str, str]:
    models = [str(t.options.get("model") or t.model) for t in (config.cheapest, config.frontier)]
    return models[0], models[1]


# -- running ---------------------------------------------------------------------------------


def _outcome(policy: Policy, case: MathCase, out: dict[str, Any], config: TierConfig) -> CaseOutcome:
    recorded: dict[str, RecordedAnswer] = {config.cheapest.name: case.expected.weak, config.frontier.name: case.expected.strong}
    final = out.get("final") or {}
    ledger = out.get("ledger") or []
    answered_by = final.get("answered_by")
    answer_of = recorded.get(answered_by) if answered_by else None

    def first_verdict(tier: str) -> str | None:
        return next((u.get("verdict") for u in ledger if u.get("tier") == tier and u.get("role") == "extract"), None)

    return CaseOutcome(
        policy=policy.name,
        case_id=case.id,
        row=int(case.metadata.get("row", -1)),
        answered_by=answered_by,
        verified=bool(final.get("verified")),
        correct=bool(answer_of and answer_of.correct),
        answer=final.get("answer"),
        recorded_answer=answer_of.final_number if answer_of else None,
        cost_usd=sum(float(u.get("cost_usd", 0.0)) for u in ledger),
        slm_calls=sum(1 for u in ledger if u.get("tier") == config.cheapest.name),
        frontier_calls=sum(1 for u in ledger if u.get("tier") == config.frontier.name),
        escalated=any(e.get("type") in ("escalate", "fallback") for e in out.get("events") or []),
        slm_verdict=first_verdict(config.cheapest.name),
        frontier_verdict=first_verdict(config.frontier.name),
        slm_correct=case.expected.weak.correct,
        frontier_correct=case.expected.strong.correct,
        status=str(out.get("status")),
    )


def run_policy(policy: Policy, dataset: MathDataset, base: TierRegistry, *, workers: int, progress: Progress) -> list[CaseOutcome]:
    """Run the compiled graph on every case under `policy`, concurrently."""
    config = config_from_mapping({**base.config.model_dump(), "policy": policy.routing}, source=f"policy {policy.name}")
    registry = base.with_config(config)
    graph = build(min_score=policy.min_score, registry=registry, resources={})
    task = progress.add_task(policy.name, total=len(dataset.cases))
    outcomes: list[CaseOutcome] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="replay") as pool:
        futures = {pool.submit(graph.invoke, {"request": case.inputs.question}): case for case in dataset.cases}
        for future in as_completed(futures):
            outcomes.append(_outcome(policy, futures[future], future.result(), config))
            progress.advance(task)
    return sorted(outcomes, key=lambda o: o.row)


# -- metrics ---------------------------------------------------------------------------------


def verifier_quality(outcomes: Sequence[CaseOutcome], rung: Literal["slm", "frontier"]) -> dict[str, Any]:
    """The verifier on one rung's answers: a fail predicts that the recorded answer is wrong."""
    judged = [(o.slm_verdict, o.slm_correct) if rung == "slm" else (o.frontier_verdict, o.frontier_correct) for o in outcomes]
    judged = [(v, c) for v, c in judged if v in ("pass", "fail")]
    tp = sum(1 for v, c in judged if v == "fail" and not c)
    fp = sum(1 for v, c in judged if v == "fail" and c)
    fn = sum(1 for v, c in judged if v == "pass" and not c)
    precision, recall = precision_recall(tp, fp, fn)
    return {
        "judged": len(judged),
        "flagged": tp + fp,
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "precision": precision,
        "recall": recall,
    }


def summarize_policy(policy: Policy, outcomes: Sequence[CaseOutcome]) -> dict[str, Any]:
    n = len(outcomes)
    correct = sum(o.correct for o in outcomes)
    accuracy = proportion(correct, n)
    calls = sum(o.slm_calls + o.frontier_calls for o in outcomes)
    frontier = sum(o.frontier_calls for o in outcomes)
    cost = sum(o.cost_usd for o in outcomes)
    return {
        **asdict(policy),
        "cases": n,
        "correct": correct,
        "accuracy": accuracy.value or 0.0,
        "accuracy_ci95": [accuracy.low, accuracy.high],
        "cost_usd": cost,
        "cost_per_case_usd": cost / n if n else 0.0,
        "frontier_calls": frontier,
        "frontier_calls_per_case": frontier / n if n else 0.0,
        "frontier_share_of_calls": frontier / calls if calls else 0.0,
        "escalation_rate": sum(o.escalated for o in outcomes) / n if n else 0.0,
        "unverified_answers": sum(not o.verified for o in outcomes),
        "answer_mismatches": sum(
            1 for o in outcomes
            if o.answered_by and not (o.answer is None and o.recorded_answer is None)
            and (o.answer is None or o.recorded_answer is None or not math.isclose(o.answer, o.recorded_answer, rel_tol=1e-9, abs_tol=1e-9))
        ),
        "verifier": {"slm": verifier_quality(outcomes, "slm"), "frontier": verifier_quality(outcomes, "frontier")},
    }


def upper_envelope(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Upper concave hull of (frontier share, accuracy): what mixing two policies at random achieves."""
    hull: list[tuple[float, float]] = []
    for p in sorted(set(points)):
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= 0:
                hull.pop()
            else:
                break
        hull.append(p)
    return hull


def envelope_at(hull: Sequence[tuple[float, float]], share: float) -> float:
    for (x1, y1), (x2, y2) in itertools.pairwise(hull):
        if x1 <= share <= x2:
            return y1 if x2 == x1 else y1 + (y2 - y1) * (share - x1) / (x2 - x1)
    return hull[-1][1] if share >= hull[-1][0] else hull[0][1]


def least_share_for(hull: Sequence[tuple[float, float]], target: float) -> float | None:
    for (x1, y1), (x2, y2) in itertools.pairwise(hull):
        if y1 >= target:
            return x1
        if y2 >= target:
            return x1 + (x2 - x1) * (target - y1) / (y2 - y1)
    return hull[-1][0] if hull and hull[-1][1] >= target else None


def oracle(by_policy: dict[str, list[CaseOutcome]]) -> dict[str, Any]:
    """Escalate exactly the slm's wrong answers (cost: the all-slm call, plus the all-frontier
    call where the slm was wrong)."""
    slm_runs, top_runs = by_policy["all-slm"], {o.case_id: o for o in by_policy["all-frontier"]}
    n = len(slm_runs)
    escalated = [o for o in slm_runs if not o.slm_correct]
    correct = sum(1 for o in slm_runs if o.slm_correct) + sum(1 for o in escalated if o.frontier_correct)
    cost = sum(o.cost_usd for o in slm_runs) + sum(top_runs[o.case_id].cost_usd for o in escalated)
    return {"accuracy": correct / n, "accuracy_ci95": list(wilson_interval(correct, n)), "frontier_calls_per_case": len(escalated) / n,
            "cost_per_case_usd": cost / n, "cost_usd": cost}


def _saved_and_accuracy(summaries: list[dict[str, Any]], key: str, target: float) -> dict[str, Any]:
    """On one axis (frontier calls or cost per case): the envelope's share saved at the
    quality target, and its accuracy at half the all-frontier spend."""
    top = next(s for s in summaries if s["name"] == "all-frontier")[key]
    hull = upper_envelope([(s[key] / top, s["accuracy"]) for s in summaries])
    share = least_share_for(hull, target)
    return {"saved_at_target": None if share is None else 1 - share, "accuracy_at_half_saved": envelope_at(hull, 0.5), "envelope": hull}


def headlines(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    by_name = {s["name"]: s for s in summaries}
    slm, top = by_name["all-slm"], by_name["all-frontier"]
    target = QUALITY_TARGET * top["accuracy"]
    cascades = [s for s in summaries if s["routing"] == "tiered" and s["accuracy"] >= target and s["frontier_calls_per_case"] < 1]
    best = min(cascades, key=lambda s: (s["frontier_calls_per_case"], s["cost_usd"])) if cascades else None
    random_share = (target - slm["accuracy"]) / (top["accuracy"] - slm["accuracy"]) if top["accuracy"] > slm["accuracy"] else None
    at_half = [s for s in summaries if s["frontier_calls_per_case"] <= 0.5]
    best_half = max(at_half, key=lambda s: s["accuracy"]) if at_half else None
    return {
        "quality_target": {"fraction_of_all_frontier": QUALITY_TARGET, "accuracy": target},
        # A single measured tiered policy that reaches the target (None when none does).
        "measured_at_target": None if best is None else {
            "policy": best["name"],
            "accuracy": best["accuracy"],
            "frontier_calls_saved": 1 - best["frontier_calls_per_case"],
            "cost_saved": 1 - best["cost_usd"] / top["cost_usd"],
        },
        # Envelopes: what mixing two measured policies at random (per case) achieves.
        "frontier_calls": _saved_and_accuracy(summaries, "frontier_calls_per_case", target),
        "cost": _saved_and_accuracy(summaries, "cost_per_case_usd", target),
        "random_escalation_saved_at_target": None if random_share is None else 1 - random_share,
        "best_measured_within_half_frontier_calls": None if best_half is None else {
            "policy": best_half["name"],
            "accuracy": best_half["accuracy"],
            "frontier_calls_per_case": best_half["frontier_calls_per_case"],
            "cost_saved": 1 - best_half["cost_usd"] / top["cost_usd"],
        },
    }


# -- report ----------------------------------------------------------------------------------


def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def markdown_report(report: dict[str, Any]) -> str:
    meta, heads, orc = report["meta"], report["headlines"], report["oracle"]
    top = next(s for s in report["policies"] if s["name"] == "all-frontier")
    lines = [
        "# math_qa on replayed GSM8K answers: escalation economics",
        "",
        f"Dataset: `{meta['dataset']}` ({meta['rows_in_file']} rows, {meta['contaminated_dropped']} contaminated dropped, "
        f"{meta['cases']} cases). slm = {meta['slm_model']} (${meta['prices']['slm'][0]:g}/${meta['prices']['slm'][1]:g} per M tokens), "
        f"frontier = {meta['frontier_model']} (${meta['prices']['frontier'][0]:g}/${meta['prices']['frontier'][1]:g}). "
        "Tokens estimated at 4 characters per token; escalation max_retries = 0 (a recording answers a retry identically).",
        "",
        "| policy | accuracy [95% CI] | cost/case | total cost | frontier calls/case | escalated "
        "| verifier on slm: precision / recall | unverified |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in report["policies"]:
        v = s["verifier"]["slm"]
        pr = f"{_pct(v['precision'])} / {_pct(v['recall'])} ({v['flagged']} flagged)" if v["judged"] else "-"
        lo, hi = s["accuracy_ci95"]
        lines.append(
            f"| {s['name']} | {_pct(s['accuracy'])} [{_pct(lo)}, {_pct(hi)}] | ${s['cost_per_case_usd']:.6f} | ${s['cost_usd']:.4f} | "
            f"{s['frontier_calls_per_case']:.3f} | {_pct(s['escalation_rate'])} | {pr} | {s['unverified_answers']} |"
        )
    measured = heads["measured_at_target"]
    calls, cost = heads["frontier_calls"], heads["cost"]
    half = heads["best_measured_within_half_frontier_calls"]
    measured_text = (
        f"`{measured['policy']}` saves {_pct(measured['frontier_calls_saved'])} of frontier calls "
        f"({_pct(measured['cost_saved'])} of cost) at {_pct(measured['accuracy'])}"
        if measured else "no single tiered policy measured reaches it"
    )
    lines += [
        "",
        "## Headlines",
        "",
        f"- Quality target: 95% of all-frontier accuracy = {_pct(heads['quality_target']['accuracy'])} "
        f"(all-frontier {_pct(top['accuracy'])}).",
        f"- At >= 95% of all-frontier accuracy: **{_pct(calls['saved_at_target'])} of frontier calls saved**, "
        f"**{_pct(cost['saved_at_target'])} of cost saved** (envelope of the measured policies: a per-case random mix "
        f"of the two neighbouring ones). Measured: {measured_text}. Escalating at random would save "
        f"{_pct(heads['random_escalation_saved_at_target'])} of frontier calls.",
        f"- At 50% saved: accuracy **{_pct(calls['accuracy_at_half_saved'])}** (50% of frontier calls saved) and "
        f"**{_pct(cost['accuracy_at_half_saved'])}** (50% of cost saved), on the envelopes. Best single policy within "
        f"0.5 frontier calls/case: `{half['policy']}` at {_pct(half['accuracy'])} ({half['frontier_calls_per_case']:.3f} calls/case, "
        f"{_pct(half['cost_saved'])} of cost saved).",
        "",
        "## Anchors",
        "",
        f"- RouteLLM published (GSM8K): {_pct(ROUTELLM_GSM8K['cost_reduction'], 0)} cost reduction vs GPT-4 alone at "
        f"{_pct(ROUTELLM_GSM8K['quality_of_strong'], 0)} of GPT-4's performance ({ROUTELLM_GSM8K['source']}). "
        "RouteLLM routes before calling (the weak model is not called when the strong one is); a cascade always pays the slm call.",
        f"- Oracle (escalate exactly the slm's wrong answers): accuracy {_pct(orc['accuracy'])}, "
        f"{orc['frontier_calls_per_case']:.3f} frontier calls/case ({_pct(1 - orc['frontier_calls_per_case'])} saved), "
        f"cost/case ${orc['cost_per_case_usd']:.6f}.",
        "",
        "Accuracy: the graph's returned answer is correct iff the recording of the model that produced it is marked True. "
        "A top-tier verifier failure returns that answer, flagged unverified (on_top_failure = fail). "
        "Verifier precision/recall: a fail on the slm's answer predicts that the slm's recorded answer is wrong. "
        "Graph answers that differ from the recorded final number: "
        f"{sum(s['answer_mismatches'] for s in report['policies'])} (expected 0).",
    ]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = report["policies"]
    by = {s["name"]: s for s in policies}
    target = report["headlines"]["quality_target"]["accuracy"]
    orc = report["oracle"]
    fig, (ax_cost, ax_share) = plt.subplots(1, 2, figsize=(13, 5.2))
    sweep = [s for s in policies if s["min_score"] is not None]
    for ax, key in ((ax_cost, "cost_per_case_usd"), (ax_share, "frontier_calls_per_case")):
        scale = 1000.0 if key == "cost_per_case_usd" else 1.0
        ax.plot(
            [s[key] * scale for s in sweep], [s["accuracy"] for s in sweep], "o-", color="tab:blue", label="tiered, score threshold sweep"
        )
        for name, style, colour in (("all-slm", "s", "tab:purple"), ("all-frontier", "D", "tab:orange"), ("tiered", "*", "black")):
            s = by[name]
            low, high = s["accuracy_ci95"]
            ax.errorbar(s[key] * scale, s["accuracy"], yerr=[[max(0.0, s["accuracy"] - low)], [max(0.0, high - s["accuracy"])]],
                        fmt=style, color=colour, markersize=11 if name == "tiered" else 7, capsize=3, label=f"{name} (95% CI)", zorder=3)
        ax.plot(orc[key] * scale, orc["accuracy"], "P", color="tab:green", markersize=9, label="oracle (escalate exactly the slm's errors)")
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label="95% of all-frontier accuracy")
        ax.plot([by["all-slm"][key] * scale, by["all-frontier"][key] * scale], [by["all-slm"]["accuracy"], by["all-frontier"]["accuracy"]],
                ":", color="grey", label="random escalation")
        ax.set_ylabel("accuracy (recorded correctness)")
        ax.grid(alpha=0.3)
    ax_cost.set_xlabel("cost per case (USD x 1000, estimated tokens)")
    hull = report["headlines"]["frontier_calls"]["envelope"]
    ax_share.plot(
        [x for x, _ in hull], [y for _, y in hull], "-", color="tab:red", alpha=0.35, linewidth=4, label="envelope (mix of two policies)"
    )
    ax_share.plot(1 - ROUTELLM_GSM8K["cost_reduction"], ROUTELLM_GSM8K["quality_of_strong"] * by["all-frontier"]["accuracy"], "X",
                  color="tab:red", markersize=9, label="RouteLLM published (35% saved at 95%)")
    ax_share.set_xlabel("frontier calls per case")
    ax_share.legend(fontsize=7, loc="lower right")
    meta = report["meta"]
    fig.suptitle(f"math_qa, replayed GSM8K ({meta['cases']} cases): {meta['slm_model']} -> {meta['frontier_model']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


# -- entry point -----------------------------------------------------------------------------


def run_benchmark(
    dataset_path: Path,
    out_dir: Path,
    *,
    tiers_file: Path = DEFAULT_TIERS,
    contaminated: Path | None = None,
    keep_contaminated: bool = False,
    policies: Sequence[Policy] | None = None,
    workers: int = 8,
    limit: int | None = None,
) -> dict[str, Any]:
    """Run every policy over the file and write the report; returns the report dict."""
    config = replay_config(tiers_file, dataset_path)
    slm_model, top_model = _recorded_models(config)
    dataset = load_routellm_gsm8k(dataset_path, contaminated_path=contaminated, drop_contaminated=not keep_contaminated,
                                  weak_model=slm_model, strong_model=top_model, limit=limit)
    if not dataset.cases:
        raise ConfigError(f"no cases in {dataset_path} after dropping contaminated prompts")
    base = TierRegistry(config, env={})
    chosen = list(policies or default_policies())
    by_policy: dict[str, list[CaseOutcome]] = {}
    columns = (TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        for policy in chosen:
            by_policy[policy.name] = run_policy(policy, dataset, base, workers=workers, progress=progress)
    summaries = [summarize_policy(p, by_policy[p.name]) for p in chosen]
    report = {
        "meta": {
            "dataset": dataset_path.name,
            "rows_in_file": dataset.metadata.get("rows_in_file"),
            "contaminated_dropped": dataset.metadata.get("contaminated_dropped"),
            "cases": len(dataset.cases),
            "slm_model": slm_model,
            "frontier_model": top_model,
            "prices": {t.name: [t.price_input_per_mtok, t.price_output_per_mtok] for t in config.tiers},
            "tiers_file": tiers_file.name,
            "escalation": config.escalation.model_dump(),
            "token_estimate": "4 characters per token (model_tiers.ledger.estimate_tokens)",
        },
        "policies": summaries,
        "oracle": oracle(by_policy),
        "headlines": headlines(summaries),
        "anchors": {"routellm_published": ROUTELLM_GSM8K},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    (out_dir / "report.md").write_text(markdown_report(report), encoding="utf-8")
    with (out_dir / "cases.jsonl").open("w", encoding="utf-8") as handle:
        for outcomes in by_policy.values():
            for outcome in outcomes:
                handle.write(json.dumps(asdict(outcome)) + "\n")
    plot(report, out_dir / "cost_quality.png")
    return report


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tierflow.evals.bench.replay_gsm8k", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--dataset", type=Path, help="RouteLLM GSM8K responses CSV (default: the even half in the datasets folder)")
    parser.add_argument("--contaminated", type=Path, help="contaminated_prompts.jsonl (default: next to the CSV, if present)")
    parser.add_argument("--keep-contaminated", action="store_true", help="do not drop contaminated prompts")
    parser.add_argument("--tiers", type=Path, default=DEFAULT_TIERS, help="replay tiers file (default: tiers/replay_gsm8k.toml)")
    parser.add_argument("--out", type=Path, help="output folder (default: $TIERFLOW_HOME/bench/replay_gsm8k)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent graph runs (threads)")
    parser.add_argument("--limit", type=int, help="run a stratified sample of this many cases")
    parser.add_argument("--thresholds", help="comma-separated verifier-score thresholds to sweep")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        dataset = args.dataset or dataset_file("routellm_gsm8k", "gsm8k_responses_even.csv")
        thresholds = DEFAULT_THRESHOLDS if not args.thresholds else tuple(float(t) for t in args.thresholds.split(","))
        out = args.out or home_dir() / "bench" / "replay_gsm8k"
        report = run_benchmark(dataset, out, tiers_file=args.tiers, contaminated=args.contaminated,
                               keep_contaminated=args.keep_contaminated, policies=default_policies(thresholds),
                               workers=max(1, args.workers), limit=args.limit)
    except (ConfigError, ValueError) as err:
        console.print(f"[red]error:[/red] {err}")
        return 2
    print(markdown_report(report))
    console.print(f"wrote {out}/report.json, report.md, cases.jsonl, cost_quality.png")
    return 0


if __name__ == "__main__":
    from tierflow.cli.guard import guard

    sys.exit(guard("python -m tierflow.evals.bench.replay_gsm8k", main))
