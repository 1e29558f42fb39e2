"""`tierflow eval GRAPH` and `tierflow export-finetune RUN_DIR`. The eval itself is
`tierflow.evaluate`; this module reads the arguments and prints its `EvalResult`.

    tierflow eval ticket_triage --dataset ../shared/datasets/banking77/train.csv \\
        --policy all-slm all-frontier tiered --limit 50 --out runs/b77

Exit status of `eval`: 0 when every case ran (whatever its quality), 1 when some case
ended in an error (the graph raised: see the records' `error`), 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from tierflow.evals.suites import graphs_with_suites

# The eval stack is imported by the handlers, not here: `tierflow --help` and `tierflow run`
# must not pay for it.
if TYPE_CHECKING:
    from tierflow._results import EvalResult
    from tierflow.evals.harness.report import EvalReport

__all__ = ["register", "summary_table"]

# Piped output (CI logs, `| tee`) gets a width that fits the summary table unwrapped.
console = Console(width=None if sys.stdout.isatty() else 150)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def summary_table(report: EvalReport) -> Table:
    table = Table(
        title=f"{report.graph} / {report.suite}: {report.sample.get('cases')} cases; quality = {report.primary} [95% CI]",
        caption="vs AF: cost per case relative to all-frontier; top: share of calls on the top tier; "
        "esc. ok: escalated graded steps the higher tier got right",
    )
    for column in ("policy", "quality", "$/case", "vs AF", "top", "p50/p95 s", "escalated", "esc. ok", "human", "errors"):
        table.add_column(column, justify="right")
    for p in report.policies:
        q = p.quality[report.primary]
        quality = "n/a" if q.value is None else f"{100 * q.value:.0f}% [{100 * (q.low or 0):.0f}-{100 * (q.high or 0):.0f}]"
        latency = "n/a" if p.latency_p50_s is None else f"{p.latency_p50_s:.1f}/{p.latency_p95_s or 0:.1f}"
        table.add_row(
            p.policy, quality,
            "n/a" if p.cost_usd_per_case is None else f"{p.cost_usd_per_case:.2g}",
            _pct(p.cost_vs_all_frontier), _pct(p.frontier_call_share), latency,
            _pct(p.escalation_rate.value),
            "n/a" if p.escalation_success is None else f"{_pct(p.escalation_success.value)} of {p.escalation_success.n}",
            _pct(p.human_rate.value), _pct(p.error_rate.value),
        )
    return table


def _eval(args: argparse.Namespace) -> int:
    from tierflow._evaluate import prepare_eval, run_eval_job
    from tierflow.evals.casefile import parse_grades

    job = prepare_eval(
        args.graph,
        args.dataset,
        policies=args.policy,
        tiers=args.tiers,
        limit=args.limit,
        out=args.out,
        suite=args.suite,
        split=args.split,
        grades=parse_grades(args.grade),
        seed=args.seed,
        concurrency=args.concurrency,
        on_top_failure=args.on_top_failure,
        retry_errors=args.retry_errors,
        # --json: stdout holds the document alone, so no progress bar (it draws on stdout)
        progress=not (args.no_progress or args.json),
        report_only=args.report_only,
        whole_graph=args.whole_graph,
        case_timeout_s=args.case_timeout,
        call_cache=not args.no_call_cache,
        ledger_source=args.ledger_source,
    )
    out = Console(stderr=True, width=console.width) if args.json else console
    policies = ", ".join(p.name for p in job.policies)
    out.print(f"[bold]eval[/bold] {job.suite.graph} / suite [cyan]{job.suite.name}[/cyan]; policies: {policies}", highlight=False)
    result = run_eval_job(job)
    status = _report(result, out, report_only=args.report_only)
    if args.json:
        sys.stdout.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
        sys.stdout.flush()
    return status


def _report(result: EvalResult, out: Console, *, report_only: bool) -> int:
    """Print the summary of an eval; exit 1 when some case ended in an error."""
    out.print(summary_table(result.report))
    if not report_only:
        out.print(f"ran {result.ran} case runs, skipped {result.skipped} already recorded")
    if result.compared_cases != result.sampled_cases:
        out.print(
            f"[yellow]compared on {result.compared_cases} of {result.sampled_cases} sampled cases"
            "[/yellow] (those recorded under every policy); rerun without --report-only to complete",
            highlight=False,
        )
    for kind, path in result.paths.items():
        out.print(f"  {kind}: {path}", highlight=False)
    if result.errors:
        out.print(
            f"[red]{result.errors} case run(s) ended in an error[/red]: see 'error' in {result.out_dir / 'results'}/*.jsonl; "
            "rerun with --retry-errors after fixing the cause",
            highlight=False,
        )
        return 1
    return 0


def _export(args: argparse.Namespace) -> int:
    from tierflow.evals.finetune import export_finetune

    summary = export_finetune(args.run_dir, args.out, require_correct=args.require_correct)
    by_node = ", ".join(f"{node}={n}" for node, n in sorted(summary.by_node.items())) or "none"
    console.print(f"wrote {summary.written} example(s) to {summary.path} ({by_node})", highlight=False)
    left_out = {
        "duplicates": summary.duplicates,
        "without a recorded prompt": summary.without_prompt,
        "not known to be correct": summary.not_known_correct,
    }
    skipped = ", ".join(f"{n} {why}" for why, n in left_out.items() if n)
    if skipped:
        console.print(f"left out: {skipped}", highlight=False)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("eval", help="compare routing policies on a graph's eval suite (cost, quality, latency)")
    p.add_argument(
        "graph",
        help=f"a graph with a built-in suite ({', '.join(graphs_with_suites())}), or any graph (name or reference) with --dataset CASES",
    )
    p.add_argument(
        "--dataset",
        help="dataset file (default: the suite's dataset under $TIERFLOW_DATASETS), or a case file (.jsonl / .csv with an 'input' field)",
    )
    p.add_argument(
        "--grade", action="append", metavar="FIELD=KIND",
        help="evaluator of a case-file field: exact, normalized, numeric[:TOL], set, subset, regex, json_schema, judge[:TIER]; "
        "STEP/FIELD for a step's field (repeatable)",
    )
    p.add_argument("--suite", help="suite name (default: picked from the dataset path, else the graph's first suite)")
    p.add_argument("--split", help="the split to evaluate, for a dataset file that holds several (clinc150: val (default), test, train)")
    p.add_argument(
        "--policy", nargs="+", action="extend", metavar="P",
        help="policies to compare: all-slm, all-frontier, tiered, tiered-confX (confidence threshold X), sweep "
        "(default: all-slm all-frontier tiered)",
    )
    p.add_argument("--limit", type=int, help="run a deterministic sample of N cases (stratified; see --seed)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--out", help="run folder (default: $TIERFLOW_HOME/evals/<graph>-<suite>-<config hash>); a rerun resumes it")
    p.add_argument("--concurrency", type=int, default=4, help="cases run at once (default 4); tiers still cap their own calls")
    # SUPPRESS: the top-level `tierflow --tiers FILE eval ...` must not be reset by this default.
    p.add_argument("--tiers", metavar="FILE", default=argparse.SUPPRESS, help="tiers file (same as tierflow --tiers)")
    p.add_argument(
        "--on-top-failure", choices=["interrupt", "fail"], default=None,
        help="what a step that fails on every tier does (default: as configured, normally 'interrupt': the case is "
        "recorded as needs_human); 'fail' records a typed failure instead",
    )
    p.add_argument("--retry-errors", action="store_true", help="rerun cases recorded with status 'error'")
    p.add_argument("--case-timeout", type=float, metavar="S", help="stop a case still running after S seconds and record it as an error")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-call-cache", action="store_true",
        help="make every model call (default: the policies share identical calls through RUN_DIR/call_cache.sqlite)",
    )
    p.add_argument("--report-only", action="store_true", help="run nothing; rebuild the report from the run folder")
    p.add_argument(
        "--ledger-source", choices=["eval", "finetune"], default="eval",
        help="what the ledger store records these calls as (finetune: the eval measures a fine-tuned adapter)",
    )
    p.add_argument(
        "--json", action="store_true", help="print the result (tierflow.EvalResult) as one JSON document on stdout (the summary on stderr)"
    )
    p.add_argument(
        "--whole-graph", action="store_true",
        help="run every step even when the suite grades only some (slower; costs the rest of the graph)",
    )
    p.set_defaults(handler=_eval)

    x = subparsers.add_parser("export-finetune", help="chat-format JSONL of the steps the slm failed and the top tier passed")
    x.add_argument("run_dir", help="the --out folder of a `tierflow eval` run")
    x.add_argument("--out", help="output file (default: RUN_DIR/finetune.jsonl)")
    x.add_argument(
        "--require-correct", action="store_true",
        help="keep only answers known to be right (step ground truth, else every graded evaluation of the case passed)",
    )
    x.set_defaults(handler=_export)
