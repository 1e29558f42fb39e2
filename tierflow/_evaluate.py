"""`tierflow.evaluate`: compare routing policies on a graph's cases, as an `EvalResult`.

`tierflow eval` is this module plus printing. The eval stack (harness, datasets, suites) is
imported when an eval is prepared, never by `import tierflow`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypedDict, Unpack

from tierflow._results import EvalResult
from tierflow._run import GraphLike, resolve_entry
from tierflow.graphs.catalog import SHIPPED_GRAPHS, GraphEntry, resolve_graph
from tierflow.model_tiers import ConfigError

if TYPE_CHECKING:
    from tierflow.evals.harness.evaluate import EvalSettings
    from tierflow.evals.harness.policies import Policy
    from tierflow.evals.harness.suite import Suite

__all__ = ["EvalJob", "EvalOptions", "prepare_eval", "run_eval_job", "evaluate"]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class EvalJob:
    """An eval ready to run: the graph, its suite, the policies and the settings."""

    entry: GraphEntry
    suite: Suite
    policies: tuple[Policy, ...]
    settings: EvalSettings


def _builtin_suite_graph(graph: GraphLike, entry: GraphEntry) -> str | None:
    """The catalog name whose built-in suite applies: the name given, or the shipped graph
    this Workflow object is (a user's workflow that reuses a shipped name is not it)."""
    if isinstance(graph, str):
        return graph
    shipped = entry.name in SHIPPED_GRAPHS and resolve_graph(entry.name).workflow is entry.workflow
    return entry.name if shipped else None


def _suite(
    graph: GraphLike, entry: GraphEntry, dataset: Path | None, suite: str | None, grades: Mapping[str, str] | None, tiers: str | None
) -> Suite:
    """A case file given as the dataset makes its own suite; otherwise the graph's built-in one."""
    from tierflow.evals.casefile import TierJudge, casefile_suite, is_case_file
    from tierflow.evals.suites import get_suite, graphs_with_suites

    builtin = _builtin_suite_graph(graph, entry)
    has_suite = builtin is not None and builtin in graphs_with_suites()
    # Without a suite of its own, a graph reads any dataset as a case file: a file in another
    # shape is then told what its lines lack (casefile.py), not that no suite exists.
    if dataset is not None and (is_case_file(dataset) or not has_suite):
        steps = [s.name for s in entry.workflow.all_steps]
        ref = graph if isinstance(graph, str) else entry.ref
        return casefile_suite(ref, steps, dataset, grades=grades, judge=TierJudge(tiers))
    if grades:
        raise ConfigError("grades (--grade) apply to a case file (a dataset cases.jsonl or cases.csv with an 'input' field)")
    if builtin is None or not has_suite:
        raise ConfigError(
            f"'{builtin or entry.name}' has no built-in eval suite: give a case file, --dataset cases.jsonl "
            "(one {\"input\": ..., \"expected\": {...}} per line; see README)"
        )
    return get_suite(builtin, suite, dataset)


class EvalOptions(TypedDict, total=False):
    """How `evaluate` runs; every key is optional (defaults in brackets).

    `policies`: e.g. ["all-slm", "all-frontier", "tiered"] [the suite's defaults]. `tiers`: a
    tiers file or the name of a shipped one. `limit` samples that many cases (stratified,
    `seed` [0]). Results go to `out` [a folder under $TIERFLOW_HOME/evals named by the
    settings]; the same settings again resume it. `suite` and `split` choose a shipped
    graph's built-in suite and its split. `grades` names a case-file field's evaluator, e.g.
    {"amount": "numeric:0.01"}. `concurrency` [4] cases run at once. `on_top_failure="fail"`
    records a typed failure where a step fails on every tier [as configured, normally a
    question to a human, recorded as needs_human]. `retry_errors` runs again the cases that
    ended in an error; `report_only` rewrites the report from the recorded results;
    `whole_graph` runs every case through the whole graph; `case_timeout_s` bounds one case;
    `call_cache` [True] reuses identical model calls across policies; `progress` shows bars.
    `ledger_source` ["eval"]: what the ledger store records the calls as ("finetune" for an
    eval that measures a fine-tuned adapter).
    """

    policies: Sequence[str] | None
    tiers: PathLike | None
    limit: int | None
    out: PathLike | None
    suite: str | None
    split: str | None
    grades: Mapping[str, str] | None
    seed: int
    concurrency: int
    on_top_failure: str | None
    retry_errors: bool
    progress: bool
    report_only: bool
    whole_graph: bool
    case_timeout_s: float | None
    call_cache: bool
    ledger_source: Literal["eval", "finetune"]


def prepare_eval(graph: GraphLike, dataset: PathLike | None = None, **options: Unpack[EvalOptions]) -> EvalJob:
    """Resolve the graph, its suite and the policies (every input error is raised here,
    before a case runs); see `evaluate` for the arguments."""
    from tierflow.evals.harness.evaluate import EvalSettings
    from tierflow.evals.harness.policies import resolve_policies

    entry, _ = resolve_entry(graph)  # an unknown graph is named as such, whatever the dataset
    tiers, out = options.get("tiers"), options.get("out")
    tiers_file = os.fspath(tiers) if tiers is not None else None
    dataset_path = Path(dataset) if dataset is not None else None
    chosen_suite = _suite(graph, entry, dataset_path, options.get("suite"), options.get("grades"), tiers_file)
    policies = options.get("policies")
    if isinstance(policies, str):
        policies = [policies]  # one policy name, not its letters
    chosen = tuple(
        resolve_policies(
            policies,
            defaults=chosen_suite.default_policies,
            thresholds=chosen_suite.thresholds,
            on_top_failure=options.get("on_top_failure"),
        )
    )
    settings = EvalSettings(
        policies=chosen,
        out_dir=Path(out) if out is not None else None,
        dataset_path=dataset_path,
        split=options.get("split"),
        limit=options.get("limit"),
        seed=options.get("seed", 0),
        concurrency=options.get("concurrency", 4),
        tiers_file=tiers_file,
        retry_errors=options.get("retry_errors", False),
        progress=options.get("progress", False),
        report_only=options.get("report_only", False),
        whole_graph=options.get("whole_graph", False),
        case_timeout_s=options.get("case_timeout_s"),
        call_cache=options.get("call_cache", True),
        ledger_source=options.get("ledger_source", "eval"),
    )
    return EvalJob(entry=entry, suite=chosen_suite, policies=chosen, settings=settings)


def run_eval_job(job: EvalJob) -> EvalResult:
    """Run a prepared eval and write its report into the run folder."""
    from tierflow.evals.harness.evaluate import run_eval

    # A graph that a name finds is found by the harness as the CLI names it; a Workflow no
    # module holds is handed over as is.
    done = run_eval(job.suite, job.settings) if job.entry.module is not None else run_eval(job.suite, job.settings, graph=job.entry)
    return EvalResult(
        graph=job.suite.graph,
        suite=job.suite.name,
        out_dir=done.out_dir,
        report=done.report,
        paths=dict(done.paths),
        ran=done.counts.ran,
        skipped=done.counts.skipped,
    )


def evaluate(graph: GraphLike, dataset: PathLike | None = None, **options: Unpack[EvalOptions]) -> EvalResult:
    """Run `graph` on every case under each routing policy and report quality, cost and
    latency per policy (what `tierflow eval` prints and writes).

    `graph`: a Workflow, a graph name or a reference. `dataset`: a case file (.jsonl or
    .csv with an `input` field per case), or a dataset file of a shipped graph's built-in
    suite (None: the suite's own file under $TIERFLOW_DATASETS). `options`: the policies,
    tiers, sampling, output folder and the rest (`EvalOptions`).
    """
    return run_eval_job(prepare_eval(graph, dataset, **options))
