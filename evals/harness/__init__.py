"""Internal (the public surface is `tierflow.evaluate`).

The eval harness: declare a `Suite`, compare routing `Policy`s on it, and report.

`run_eval(suite, EvalSettings(...))` runs every case under every policy through the
graph (concurrently, resumably), then writes report.json, report.md and
cost_quality.png into the run folder. The suites themselves live in `evals.suites`.
"""

from __future__ import annotations

from tierflow.evals.harness.evaluate import EvalResult, EvalSettings, default_out_dir, effective_tier_config, run_eval
from tierflow.evals.harness.policies import BASE_POLICIES, SWEEP, Policy, parse_policy, resolve_policies, threshold_policy
from tierflow.evals.harness.records import (
    AttemptTrace,
    CaseRecord,
    ChatTurn,
    ResultStore,
    RunFolderError,
    RunManifest,
    StepTrace,
)
from tierflow.evals.harness.report import EvalReport, LedgerRow, PolicyMetrics, VerifierScore, build_report, write_report
from tierflow.evals.harness.runner import PromptRecorder, RunCounts, run_case, run_cases
from tierflow.evals.harness.stats import Estimate, bootstrap_estimate, percentile, precision_recall, proportion, wilson_interval
from tierflow.evals.harness.suite import Aggregate, GraphOutcome, StepTruth, Suite, on_output_field

__all__ = [
    "Aggregate",
    "AttemptTrace",
    "BASE_POLICIES",
    "CaseRecord",
    "ChatTurn",
    "Estimate",
    "EvalReport",
    "EvalResult",
    "EvalSettings",
    "GraphOutcome",
    "LedgerRow",
    "Policy",
    "PolicyMetrics",
    "PromptRecorder",
    "ResultStore",
    "RunCounts",
    "RunFolderError",
    "RunManifest",
    "SWEEP",
    "StepTrace",
    "StepTruth",
    "Suite",
    "VerifierScore",
    "bootstrap_estimate",
    "build_report",
    "default_out_dir",
    "effective_tier_config",
    "on_output_field",
    "parse_policy",
    "percentile",
    "precision_recall",
    "proportion",
    "resolve_policies",
    "run_case",
    "run_cases",
    "run_eval",
    "threshold_policy",
    "wilson_interval",
    "write_report",
]
