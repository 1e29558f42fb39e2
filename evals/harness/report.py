"""Turn a run folder's case records into a report: JSON, Markdown and a cost-vs-quality PNG.

Per policy: quality (each evaluator as a proportion with a Wilson 95% interval, each
aggregate with a bootstrap 95% interval), cost (total, per case, relative to the
all-frontier policy), share of model calls on the top tier, latency p50/p95 (per-case
wall time, and model time from the ledger), escalation / human / error rates, verifier
precision and recall per node and tier where the suite has ground truth, and the ledger
per node and tier (calls, tokens, cost, pass/fail/fault).

Only the cases of the current sample count, so a folder that also holds records of a
larger earlier sample reports on exactly the cases asked for.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tierflow.evals.datasets import Case, Dataset
from tierflow.evals.harness.policies import Policy
from tierflow.evals.harness.records import CaseRecord, RunManifest, utc_now
from tierflow.evals.harness.stats import Estimate, bootstrap_estimate, percentile, precision_recall, proportion
from tierflow.evals.harness.suite import Suite
from tierflow.model_tiers.ledger import TierTotals

__all__ = [
    "VerifierScore",
    "LedgerRow",
    "PolicyMetrics",
    "EvalReport",
    "policy_metrics",
    "build_report",
    "write_report",
    "render_markdown",
    "plot_cost_quality",
    "DEFINITIONS",
]

DEFINITIONS: tuple[str, ...] = (
    "Quality: each evaluator is the share of cases it passed among the cases it applies to, with a Wilson 95% interval; "
    "aggregates (e.g. macro-F1) are computed over all cases with a percentile bootstrap 95% interval (1000 resamples, seed 0).",
    "A case that ends waiting for a human (needs_human) or in an error is graded on what it produced before that "
    "(usually: nothing), so it counts against quality unless the suite says a human hand-off is the right outcome.",
    "Cost: the ledger's USD cost at the tiers' configured prices; per case = total / cases recorded. "
    "'vs all-frontier' = this policy's cost per case / the all-frontier policy's cost per case.",
    "Frontier share: model calls on the top tier of the ladder / all model calls (the judge included).",
    "Latency: p50/p95 of each case's wall time (linear interpolation); with more concurrent cases than a tier's "
    "max_concurrency it includes waiting for the model. Model time is the ledger's summed call latency per case.",
    "Call cache: identical model calls (same tier, model, parameters, prompt, tools or schema) are made once per run "
    "folder and replayed to every policy; cache hits are counted per policy with the model time they saved (the "
    "latency of the call that filled the entry). Model time counts a hit at that latency, so policies compare as if "
    "uncached; case wall time (p50/p95 s) does not. Tokens and cost are counted for hits as for the call itself.",
    "Escalation rate: share of cases in which at least one step moved up the ladder (escalate or fault fallback).",
    "Escalation success: of the graded steps that moved up the ladder, the share whose final candidate on the "
    "higher tier passed the verifier and was right (Wilson 95% interval); n/a without ground truth for the step.",
    "Verifier precision/recall: for each plan item and tier, the first candidate on that tier; positive = the "
    "verifier failed it (predicted wrong). Precision = wrong among failed; recall = failed among wrong. Ground truth "
    "is the suite's per-step truth (e.g. the classifier's label vs the gold label); n/a when a class is empty.",
)


class VerifierScore(BaseModel):
    node: str
    tier: str
    judged: int
    tp: int
    fp: int
    fn: int
    tn: int
    precision: float | None
    recall: float | None

    @property
    def counts(self) -> tuple[int, int, int, int]:
        """(tp, fp, fn, tn): a failed verdict is a positive, a wrong candidate a true one."""
        return self.tp, self.fp, self.fn, self.tn


class LedgerRow(TierTotals):
    """One node's calls on one tier, and the verifier's verdicts on them."""

    node: str
    passed: int = 0
    failed: int = 0
    faults: int = 0


class PolicyMetrics(BaseModel):
    policy: str
    description: str = ""
    context: dict[str, Any] = Field(default_factory=dict)
    cases: int
    missing: int
    statuses: dict[str, int]
    quality: dict[str, Estimate]
    cost_usd_total: float
    cost_usd_per_case: float | None
    cost_vs_all_frontier: float | None = None
    calls: int
    # Step attempts on a model with no ledger record: the provider raised before reporting
    # usage, so their cost is unknown (and not in cost_usd_total).
    attempts_without_usage: int
    frontier_calls: int
    frontier_call_share: float | None
    latency_p50_s: float | None
    latency_p95_s: float | None
    model_latency_p50_s: float | None
    model_latency_p95_s: float | None
    escalation_rate: Estimate
    escalation_success: Estimate | None = None
    human_rate: Estimate
    error_rate: Estimate
    verifier: list[VerifierScore]
    ledger: list[LedgerRow]
    # Ledger rows answered from the run's call cache, and the model time they saved.
    cache_hits: int = 0
    cache_saved_s: float = 0.0

    def verifier_on(self, node: str, tier: str) -> VerifierScore:
        """The verifier's score on `node`'s first candidates on `tier`."""
        for score in self.verifier:
            if score.node == node and score.tier == tier:
                return score
        judged = ", ".join(f"{v.node} on {v.tier}" for v in self.verifier) or "nothing"
        raise KeyError(f"policy {self.policy!r} has no verifier score for {node} on {tier}; it judged: {judged}")


class EvalReport(BaseModel):
    graph: str
    suite: str
    description: str
    primary: str
    dataset: str
    sample: dict[str, Any]
    tiers: list[dict[str, Any]]
    policies: list[PolicyMetrics]
    metrics: dict[str, str]
    # Over every policy: call-cache hits and the model time they saved.
    cache_hits: int = 0
    cache_saved_s: float = 0.0
    definitions: list[str] = Field(default_factory=lambda: list(DEFINITIONS))
    notes: list[str] = Field(default_factory=list)
    generated_at: str = Field(default_factory=utc_now)

    def policy(self, name: str) -> PolicyMetrics:
        return next(p for p in self.policies if p.policy == name)


def _quality(suite: Suite, records: Sequence[CaseRecord], cases: Mapping[str, Case[Any, Any]]) -> dict[str, Estimate]:
    quality: dict[str, Estimate] = {}
    for name in suite.metric_names:
        aggregate = next((a for a in suite.aggregates if a.name == name), None)
        if aggregate is not None:
            pairs = [(cases[r.case_id], r.output) for r in records]
            quality[name] = bootstrap_estimate(pairs, aggregate.compute)
            continue
        judged = [e for r in records if (e := r.evaluation(name)) is not None and e.passed is not None]
        quality[name] = proportion(sum(1 for e in judged if e.passed), len(judged))
    return quality


def _verifier(suite: Suite, records: Sequence[CaseRecord]) -> list[VerifierScore]:
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0, "tn": 0})
    for record in records:
        for step in record.steps:
            if suite.truth_for(step.node) is None:
                continue
            seen: set[str] = set()
            for attempt in step.attempts:
                if attempt.tier is None or attempt.tier in seen or attempt.verdict not in ("pass", "fail"):
                    continue
                seen.add(attempt.tier)
                if attempt.correct is None:
                    continue
                failed, wrong = attempt.verdict == "fail", not attempt.correct
                key = "tp" if failed and wrong else "fp" if failed else "fn" if wrong else "tn"
                counts[(step.node, attempt.tier)][key] += 1
    scores = []
    for (node, tier), c in counts.items():
        precision, recall = precision_recall(c["tp"], c["fp"], c["fn"])
        scores.append(VerifierScore(node=node, tier=tier, judged=sum(c.values()), precision=precision, recall=recall, **c))
    return scores


def _ledger_rows(records: Sequence[CaseRecord]) -> list[LedgerRow]:
    rows: dict[tuple[str, str], LedgerRow] = {}
    for record in records:
        for usage in record.ledger:
            node, tier = str(usage.get("node") or "?"), str(usage.get("tier"))
            row = rows.setdefault((node, tier), LedgerRow(node=node, tier=tier))
            row.add(
                int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0)),
                float(usage.get("latency_s", 0.0)), float(usage.get("cost_usd", 0.0)),
            )
            verdict = usage.get("verdict")
            row.passed += verdict == "pass"
            row.failed += verdict == "fail"
            row.faults += verdict == "fault"
    return list(rows.values())


def _attempts_without_usage(record: CaseRecord) -> int:
    recorded = {(u.get("step"), u.get("attempt")) for u in record.ledger if u.get("role") != "judge"}
    return sum(
        1 for s in record.steps for a in s.attempts if a.tier is not None and (s.item_id, a.attempt) not in recorded
    )


def policy_metrics(
    suite: Suite,
    policy: Policy,
    records: Sequence[CaseRecord],
    cases: Mapping[str, Case[Any, Any]],
    *,
    frontier_tier: str,
    expected_cases: int,
) -> PolicyMetrics:
    """Every figure of one policy, over `records` (the sample's cases that were recorded)."""
    n = len(records)
    statuses: dict[str, int] = {}
    for record in records:
        statuses[record.status] = statuses.get(record.status, 0) + 1
    calls = sum(len(r.ledger) for r in records)
    frontier_calls = sum(1 for r in records for u in r.ledger if u.get("tier") == frontier_tier)
    total_cost = sum(r.cost_usd for r in records)
    walls = [r.wall_s for r in records]
    saved = [sum(float(u.get("saved_s") or 0.0) for u in r.ledger) for r in records]
    model_times = [r.model_latency_s + s for r, s in zip(records, saved, strict=True)]
    return PolicyMetrics(
        policy=policy.name,
        description=policy.description,
        context=policy.context_dict(),
        cases=n,
        missing=expected_cases - n,
        statuses=statuses,
        quality=_quality(suite, records, cases),
        cost_usd_total=total_cost,
        cost_usd_per_case=total_cost / n if n else None,
        calls=calls,
        attempts_without_usage=sum(_attempts_without_usage(r) for r in records),
        frontier_calls=frontier_calls,
        frontier_call_share=frontier_calls / calls if calls else None,
        latency_p50_s=percentile(walls, 50),
        latency_p95_s=percentile(walls, 95),
        model_latency_p50_s=percentile(model_times, 50),
        model_latency_p95_s=percentile(model_times, 95),
        escalation_rate=proportion(sum(1 for r in records if r.escalations > 0), n),
        escalation_success=_escalation_success(records),
        human_rate=proportion(statuses.get("needs_human", 0), n),
        error_rate=proportion(statuses.get("error", 0), n),
        verifier=_verifier(suite, records),
        ledger=_ledger_rows(records),
        cache_hits=sum(1 for r in records for u in r.ledger if u.get("cache_hit")),
        cache_saved_s=sum(saved),
    )


def _escalation_success(records: Sequence[CaseRecord]) -> Estimate | None:
    """Graded steps that ran on more than one tier: how many ended right on the higher one."""
    escalated = [
        s.attempts for r in records for s in r.steps
        if len({a.tier for a in s.attempts if a.tier}) > 1 and any(a.correct is not None for a in s.attempts)
    ]
    if not escalated:
        return None
    return proportion(sum(1 for attempts in escalated if attempts[-1].verdict == "pass" and attempts[-1].correct), len(escalated))


def build_report(
    suite: Suite,
    dataset: Dataset[Any, Any],
    policies: Sequence[Policy],
    records: Mapping[str, Mapping[str, CaseRecord]],
    manifest: RunManifest,
    *,
    sample: Mapping[str, Any] | None = None,
) -> EvalReport:
    """The report over the cases of `dataset` recorded under every policy (records keyed
    policy -> case id); `missing` counts the sampled cases left out."""
    cases = {c.id: c for c in dataset.cases}
    # Policies are compared on the same cases: those every policy has a record of (an
    # interrupted run leaves some policies a case or two ahead).
    common = set(cases)
    for policy in policies:
        common &= set(records.get(policy.name) or {})
    tiers = manifest.tier_config.get("tiers", [])
    frontier = tiers[-1]["name"] if tiers else ""
    metrics = []
    for policy in policies:
        mine = [r for cid, r in (records.get(policy.name) or {}).items() if cid in common]
        metrics.append(policy_metrics(suite, policy, mine, cases, frontier_tier=frontier, expected_cases=len(cases)))
    reference = next((m.cost_usd_per_case for m in metrics if m.policy == "all-frontier" and m.cost_usd_per_case), None)
    if reference is not None:
        for m in metrics:
            if m.cost_usd_per_case is not None:
                m.cost_vs_all_frontier = m.cost_usd_per_case / reference
    descriptions = {name: suite.metric_notes.get(name, "") for name in suite.metric_names}
    descriptions |= {a.name: a.description for a in suite.aggregates}
    return EvalReport(
        graph=suite.graph,
        suite=suite.name,
        description=suite.description,
        primary=suite.primary,
        dataset=dataset.source.path,
        sample={"cases": len(common), "sampled": len(cases), **(sample or {})},
        tiers=[
            {k: t.get(k) for k in ("name", "provider", "model", "price_input_per_mtok", "price_output_per_mtok")}
            for t in tiers
        ],
        policies=metrics,
        metrics=descriptions,
        cache_hits=sum(m.cache_hits for m in metrics),
        cache_saved_s=sum(m.cache_saved_s for m in metrics),
        notes=list(suite.notes),
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _est(e: Estimate) -> str:
    if e.value is None:
        return "n/a"
    return f"{100 * e.value:.1f}% [{100 * (e.low or 0):.1f}, {100 * (e.high or 0):.1f}] (n={e.n})"


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render_markdown(report: EvalReport) -> str:
    """The report as Markdown tables, definitions included."""
    names = list(report.metrics)
    tiers = " -> ".join(
        f"{t['name']} ({t['provider']} {t['model']}, ${t['price_input_per_mtok']:g}/${t['price_output_per_mtok']:g} per Mtok)"
        for t in report.tiers
    )
    lines = [
        f"# Eval: {report.graph} / {report.suite}",
        "",
        report.description,
        "",
        f"- dataset: `{Path(report.dataset).name}`; sample: {json.dumps(report.sample)}",
        f"- tiers (cheapest first): {tiers}",
        f"- headline quality: **{report.primary}**; generated {report.generated_at}",
        f"- call cache: {report.cache_hits} hits saved {report.cache_saved_s:.2f} s of model time ("
        + ", ".join(f"{p.policy}: {p.cache_hits} / {p.cache_saved_s:.2f} s" for p in report.policies) + ")",
        "",
        "## Policies",
        "",
        "| policy | cases | " + " | ".join(f"{n} (95% CI)" for n in names)
        + " | cost $ | $/case | vs all-frontier | frontier calls | p50 s | p95 s | model p50 s"
        + " | escalated | escalation success | human | errors |",
        "|---" * (len(names) + 14) + "|",
    ]
    for p in report.policies:
        missing = f" ({p.missing} missing)" if p.missing else ""
        lines.append(
            f"| {p.policy} | {p.cases}{missing} | " + " | ".join(_est(p.quality[n]) for n in names)
            + f" | {p.cost_usd_total:.6f} | {_num(p.cost_usd_per_case, 6)} | {_pct(p.cost_vs_all_frontier)}"
            f" | {_pct(p.frontier_call_share)} ({p.frontier_calls}/{p.calls}) | {_num(p.latency_p50_s)} | {_num(p.latency_p95_s)}"
            f" | {_num(p.model_latency_p50_s)} | {_pct(p.escalation_rate.value)}"
            f" | {_est(p.escalation_success) if p.escalation_success else 'n/a'}"
            f" | {_pct(p.human_rate.value)} | {_pct(p.error_rate.value)} |"
        )
    lines += ["", "## Verifier precision / recall (first candidate per tier; positive = verifier failed it)", ""]
    rows = [(p.policy, v) for p in report.policies for v in p.verifier]
    if rows:
        lines += [
            "| policy | node | tier | judged | fail & wrong | fail & right | pass & wrong | pass & right | precision | recall |",
            "|---" * 10 + "|",
        ]
        lines += [
            f"| {pol} | {v.node} | {v.tier} | {v.judged} | {v.tp} | {v.fp} | {v.fn} | {v.tn} | {_pct(v.precision)} | {_pct(v.recall)} |"
            for pol, v in rows
        ]
    else:
        lines.append("No step of this suite has ground truth for its candidates.")
    lines += [
        "", "## Model calls per node and tier", "",
        "| policy | node | tier | calls | tokens in | tokens out | cost $ | model s | pass | fail | fault |", "|---" * 11 + "|",
    ]
    for p in report.policies:
        for r in p.ledger:
            lines.append(
                f"| {p.policy} | {r.node} | {r.tier} | {r.calls} | {r.input_tokens} | {r.output_tokens} | {r.cost_usd:.6f}"
                f" | {r.latency_s:.2f} | {r.passed} | {r.failed} | {r.faults} |"
            )
    unrecorded = [(p.policy, p.attempts_without_usage) for p in report.policies if p.attempts_without_usage]
    if unrecorded:
        lines += ["", "Model attempts without a ledger record (the provider raised before reporting usage; their cost is "
                  "not counted): " + ", ".join(f"{name}: {n}" for name, n in unrecorded)]
    if report.sample.get("cases") != report.sample.get("sampled"):
        lines += ["", f"Only {report.sample.get('cases')} of the {report.sample.get('sampled')} sampled cases are recorded under "
                  "every policy; the figures above are over those (rerun the same command to complete the run)."]
    lines += ["", "## Case outcomes", ""]
    lines += [f"- {p.policy}: " + ", ".join(f"{k}={v}" for k, v in sorted(p.statuses.items())) for p in report.policies]
    lines += ["", "## Metrics", ""] + [f"- **{k}**: {v}" for k, v in report.metrics.items()]
    lines += ["", "## Definitions", ""] + [f"- {d}" for d in report.definitions]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    return "\n".join(lines) + "\n"


def plot_cost_quality(report: EvalReport, path: Path) -> Path:
    """Cost per case (x) against the headline quality with its 95% interval (y), one point per policy."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for p in report.policies:
        q = p.quality.get(report.primary)
        if q is None or q.value is None or p.cost_usd_per_case is None:
            continue
        # A bootstrap interval need not contain its point estimate (all policies at 0% gave
        # a low above it): error bars are clipped at zero rather than crash the report.
        low = q.value if q.low is None else q.low
        high = q.value if q.high is None else q.high
        below, above = max(0.0, q.value - low), max(0.0, high - q.value)
        axes.errorbar([p.cost_usd_per_case], [q.value], yerr=[[below], [above]], fmt="o", capsize=4)
        axes.annotate(p.policy, (p.cost_usd_per_case, q.value), textcoords="offset points", xytext=(6, 6), fontsize=8)
    axes.set_xlabel("cost per case (USD, at the tiers' prices)")
    axes.set_ylabel(f"{report.primary} (95% CI)")
    axes.set_ylim(-0.02, 1.1)
    axes.set_title(f"{report.graph} / {report.suite}: cost vs quality (n={report.sample.get('cases')})")
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    return path


def write_report(report: EvalReport, out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, report.md and cost_quality.png into `out_dir`."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "report.json", "markdown": folder / "report.md", "plot": folder / "cost_quality.png"}
    paths["json"].write_text(report.model_dump_json(indent=2), encoding="utf-8")
    paths["markdown"].write_text(render_markdown(report), encoding="utf-8")
    plot_cost_quality(report, paths["plot"])
    return paths
