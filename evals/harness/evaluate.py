"""One eval run end to end: load and sample the dataset, open (or resume) the run folder,
build the graph once, run every pending (policy, case), and write the report."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

from tierflow.evals.datasets import Dataset
from tierflow.evals.harness.policies import Policy
from tierflow.evals.harness.records import ResultStore, RunManifest
from tierflow.evals.harness.report import EvalReport, build_report, write_report
from tierflow.evals.harness.runner import RunCounts, run_cases
from tierflow.evals.harness.suite import Suite
from tierflow.graphs.catalog import GraphEntry, resolve_graph
from tierflow.model_tiers import ConfigError, TierConfig, TierRegistry, load_tier_config
from tierflow.model_tiers.call_cache import CALL_CACHE_FILE, SQLiteCallCache
from tierflow.model_tiers.home import home_dir
from tierflow.model_tiers.ledger_store.scope import Source, ledger_source
from tierflow.model_tiers.providers.replay import replayed_from

__all__ = ["EvalSettings", "EvalResult", "run_eval", "default_out_dir", "effective_tier_config"]


@dataclass(frozen=True)
class EvalSettings:
    """How to run a suite: which policies, which cases, where to, how many at once."""

    policies: tuple[Policy, ...]
    out_dir: Path | None = None
    dataset_path: Path | None = None
    # For suites whose file holds several splits (see Suite.splits); None: the default one.
    split: str | None = None
    limit: int | None = None
    seed: int = 0
    concurrency: int = 4
    tiers_file: str | None = None
    retry_errors: bool = False
    progress: bool = True
    # Only rebuild the report from what the run folder already holds.
    report_only: bool = False
    # Run every case through the whole graph even when the suite grades only some steps.
    whole_graph: bool = False
    # A case still running after this many seconds is stopped and recorded as an error.
    case_timeout_s: float | None = None
    # Identical model calls of the run's policies are made once, in <run folder>/call_cache.sqlite
    # (the policies see the same answers; a rerun replays them). False: every call is made.
    call_cache: bool = True
    # What the ledger store records these calls as: "eval", or "finetune" where the eval
    # measures a fine-tuned adapter (reports keep both apart from production runs).
    ledger_source: Source = "eval"


@dataclass(frozen=True)
class EvalResult:
    out_dir: Path
    report: EvalReport
    paths: dict[str, Path]
    counts: RunCounts


def effective_tier_config(config: TierConfig) -> dict[str, Any]:
    """The tier config a run's results depend on (its routing policy is set per policy)."""
    data = config.model_dump(mode="json")
    data.pop("policy", None)
    return data


def default_out_dir(suite: Suite, tier_config: Mapping[str, Any], policies: Sequence[Policy], split: str | None = None) -> Path:
    """`<data dir>/evals/<graph>-<suite>-<fingerprint>`: the same settings resume the same
    folder; other tiers or run-context overrides get their own."""
    kept_apart = ("policy", "confidence_threshold")
    overrides = sorted({json.dumps({k: v for k, v in p.context_dict().items() if k not in kept_apart}, sort_keys=True) for p in policies})
    blob = json.dumps({"tiers": tier_config, "overrides": overrides, **({"split": split} if split else {})}, sort_keys=True).encode()
    # A graph named by reference (my_pkg.agent:WORKFLOW, path/to/agent.py:WORKFLOW) gets a folder-safe name.
    graph = "".join(c if c.isalnum() or c in "-_" else "_" for c in suite.graph.rsplit("/", 1)[-1])
    return home_dir() / "evals" / f"{graph}-{suite.name}-{hashlib.sha256(blob).hexdigest()[:8]}"


def run_eval(suite: Suite, settings: EvalSettings, *, graph: GraphEntry | None = None) -> EvalResult:
    """Run `suite` under `settings.policies` and write report.json / report.md / cost_quality.png.

    `graph`: the graph to run, when the caller holds it already (a Workflow object given to
    `tierflow.evaluate`, which no name may find); default: `suite.graph` resolved by name."""
    if not settings.policies:
        raise ConfigError("an eval needs at least one policy")
    if settings.limit is not None and settings.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {settings.limit}")
    if settings.concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, got {settings.concurrency}")
    if settings.case_timeout_s is not None and settings.case_timeout_s <= 0:
        raise ConfigError(f"--case-timeout must be a positive number of seconds, got {settings.case_timeout_s:g}")
    if suite.graded_steps and not settings.whole_graph:
        settings = replace(settings, policies=tuple(p.with_overrides(stop_after=list(suite.graded_steps)) for p in settings.policies))
    config = load_tier_config(settings.tiers_file)
    if suite.replays_dataset and settings.dataset_path is not None:
        config = replayed_from(config, settings.dataset_path)
    tier_config = effective_tier_config(config)
    dataset = suite.load_cases(settings.dataset_path, settings.limit, settings.seed, settings.split)
    if not dataset.cases:
        raise ConfigError(f"the dataset {dataset.source.path} has no cases for suite '{suite.name}'")
    out_dir = (
        Path(settings.out_dir) if settings.out_dir is not None else default_out_dir(suite, tier_config, settings.policies, settings.split)
    )
    store = ResultStore(out_dir)
    manifest = store.open(
        RunManifest(
            graph=suite.graph,
            suite=suite.name,
            # Two splits of one file are two datasets: a run folder holds one.
            dataset=dataset.source.path + (f"#{settings.split}" if settings.split else ""),
            tier_config=tier_config,
            policies={p.name: p.context_dict() for p in settings.policies},
        ),
        write=not settings.report_only,
    )
    counts = RunCounts()
    if not settings.report_only:
        counts = _run_pending(suite, settings, dataset, store, out_dir, config, graph or resolve_graph(suite.graph))
    records = store.load_all([p.name for p in settings.policies])
    report = build_report(
        suite, dataset, settings.policies, records, manifest, sample={"limit": settings.limit, "seed": settings.seed}
    )
    return EvalResult(out_dir=out_dir, report=report, paths=write_report(report, out_dir), counts=counts)


def _run_pending(
    suite: Suite, settings: EvalSettings, dataset: Dataset[Any, Any], store: ResultStore, out_dir: Path, config: TierConfig,
    entry: GraphEntry,
) -> RunCounts:
    kinds = {s.name: str(s.kind) for s in entry.workflow.all_steps}
    resources = suite.open_resources(out_dir) if suite.open_resources is not None else None
    # The registry of the config the manifest records (replay tiers repointed, if so); one
    # call cache for every policy of the run, so their identical calls are paired.
    cache = SQLiteCallCache(out_dir / CALL_CACHE_FILE) if settings.call_cache else None
    build_options: dict[str, Any] = {"registry": TierRegistry(config, call_cache=cache)}
    if resources is not None:
        build_options["resources"] = resources
    if suite.answer_interrupt is not None:
        # Answering an interrupt resumes the run, which needs its checkpoints (in memory,
        # dropped after each case).
        build_options["checkpointer"] = InMemorySaver()
    # No checkpointer: the runner reads state and interrupts from the stream (see runner).
    graph = entry.build(**build_options)
    try:
        with ledger_source(settings.ledger_source):
            return run_cases(
                graph,
                suite,
                dataset,
                settings.policies,
                store,
                kinds=kinds,
                concurrency=settings.concurrency,
                progress=settings.progress,
                retry_errors=settings.retry_errors,
                resources=resources,
                time_budget_s=settings.case_timeout_s,
            )
    finally:
        if cache is not None:
            cache.close()
