"""The typed results of `tierflow.run` and `tierflow.evaluate`: what the CLI prints, as objects."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tierflow.graphs.results import StepResults
from tierflow.model_tiers import LedgerSummary, Usage

# The eval stack is imported when an eval runs, not by `import tierflow`.
if TYPE_CHECKING:
    from tierflow.evals.harness.report import EvalReport, PolicyMetrics

__all__ = ["RunStatus", "RunFailure", "RunResult", "EvalResult"]

# done: every step verified; needs_human: paused on a question (answer it with
# `tierflow.resume`); failed / stopped / rejected: ended without an answer (see `failure`);
# error: a step's code or a tier's configuration stopped the run (see `failure.kind`).
RunStatus = Literal["done", "needs_human", "failed", "stopped", "rejected", "error", "running"]


class RunFailure(BaseModel):
    """Why a run ended without an answer. A bug's traceback is never carried here: it is in
    the log file `log` names."""

    model_config = ConfigDict(frozen=True, extra="allow")

    step: str | None = None
    item_id: str | None = None
    kind: str | None = None
    reason: str | None = None
    log: str | None = None


class RunResult(BaseModel):
    """One run of a graph: how it ended, its output, and every model call it paid for.

    `tierflow run --json` prints exactly `model_dump(mode="json")` of this object.
    """

    model_config = ConfigDict(frozen=True)

    graph: str
    thread: str
    run_id: str | None = None
    status: RunStatus
    # The graph's final output (its `finalize`), with the run's status.
    final: dict[str, Any] = Field(default_factory=dict)
    # Verified outputs by plan item id ("0:classify"); read them by step name with `steps`.
    results: dict[str, Any] = Field(default_factory=dict)
    # Which tier (or "human" / "code") produced each result.
    decided_by: dict[str, str] = Field(default_factory=dict)
    failure: RunFailure | None = None
    # The question a paused run waits on (status needs_human), and the command that answers it.
    question: dict[str, Any] | None = None
    resume: str | None = None
    # Every model call of this run, and their totals per tier.
    ledger: list[Usage] = Field(default_factory=list)
    summary: LedgerSummary
    cost_usd: float = 0.0
    # What the same calls would have cost with every one priced at the frontier tier (named).
    all_frontier_cost_usd: float | None = None
    frontier_tier: str | None = None

    @property
    def steps(self) -> StepResults:
        """The verified outputs by step name: `result.steps.get("extract", Refund)`."""
        return StepResults(self.results)

    @property
    def savings_vs_frontier(self) -> float | None:
        """The share of the all-frontier price this run did not pay (None without a price)."""
        if not self.all_frontier_cost_usd:
            return None
        return 1.0 - self.cost_usd / self.all_frontier_cost_usd


@dataclass(frozen=True)
class EvalResult:
    """One eval: the report comparing the policies, where it was written, and what ran.

    `tierflow eval` prints its summary table from `report` and the rest from these fields.
    """

    graph: str
    suite: str
    out_dir: Path
    report: EvalReport
    # report.json, report.md, cost_quality.png (kind -> path)
    paths: dict[str, Path]
    # Case runs made now, and those the run folder already held (a rerun resumes).
    ran: int
    skipped: int

    @property
    def errors(self) -> int:
        """Case runs that ended in an error (the graph raised; see the records' `error`)."""
        return sum(p.statuses.get("error", 0) for p in self.report.policies)

    @property
    def compared_cases(self) -> int:
        """Cases recorded under every policy: the ones the report compares."""
        return int(self.report.sample.get("cases") or 0)

    @property
    def sampled_cases(self) -> int:
        return int(self.report.sample.get("sampled") or 0)

    def policy(self, name: str) -> PolicyMetrics:
        """The metrics of one policy (quality, cost, latency, escalation)."""
        for metrics in self.report.policies:
            if metrics.policy == name:
                return metrics
        raise KeyError(f"no policy '{name}' in this eval; it compared {', '.join(p.policy for p in self.report.policies)}")

    def to_json(self) -> dict[str, Any]:
        """The eval as one JSON document: the report and where it was written."""
        return {
            "graph": self.graph,
            "suite": self.suite,
            "out_dir": str(self.out_dir),
            "paths": {kind: str(path) for kind, path in self.paths.items()},
            "ran": self.ran,
            "skipped": self.skipped,
            "errors": self.errors,
            "report": self.report.model_dump(mode="json"),
        }
