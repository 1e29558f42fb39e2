"""What an eval run keeps on disk, and the store that makes a run resumable.

A run folder holds:

* ``run.json``: the manifest (graph, suite, dataset, the effective tier config and every
  policy's run context). A rerun into the same folder must match it, so one folder never
  mixes results of different models or settings;
* ``results/<policy>.jsonl``: one `CaseRecord` per line, appended as each case finishes.
  A rerun skips the case ids already there; a line cut short by a killed process is
  dropped (and its case runs again);
* ``report.json``, ``report.md``, ``cost_quality.png``: the report over the current sample.

Each `CaseRecord` keeps, per plan item, the step's prompt (system + user message as the
step sent them to the model) and every attempt's candidate, tier and verdict, so verifier
precision/recall and the fine-tuning export need nothing but the run folder.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tierflow.evals.evaluators.base import EvaluationResult
from tierflow.model_tiers import ConfigError, TierflowError, redact

__all__ = [
    "ChatRole",
    "ChatTurn",
    "AttemptTrace",
    "StepTrace",
    "CaseRecord",
    "RunManifest",
    "ResultStore",
    "RunFolderError",
    "FORMAT_VERSION",
    "utc_now",
]

FORMAT_VERSION = 1
_POLICY_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunFolderError(TierflowError):
    """A run folder's files are not what this harness wrote (or belong to another run)."""


ChatRole = Literal["system", "user", "assistant", "tool"]


class ChatTurn(BaseModel):
    """One chat message in OpenAI chat format (what a fine-tuning file holds)."""

    model_config = ConfigDict(extra="forbid")

    role: ChatRole
    content: str
    tool_calls: list[dict[str, Any]] | None = None


class AttemptTrace(BaseModel):
    """One attempt of one plan item: the candidate, where it ran, what the verifier said,
    and (where the suite's ground truth knows) whether the candidate was right."""

    attempt: int
    tier: str | None
    value: Any = None
    error_kind: str | None = None
    error: str | None = None
    verdict: Literal["pass", "fail", "fault"] | None = None
    reason: str | None = None
    correct: bool | None = None
    # What the verifier measured of the candidate (agents/signals.py): the features
    # `tierflow calibrate` fits on.
    signals: dict[str, float] | None = None


class StepTrace(BaseModel):
    """Every attempt of one plan item, and the prompt its model calls started from."""

    item_id: str
    node: str
    kind: str | None = None
    # System + first user message as sent on the first attempt; retries append the
    # rejected answer and the verifier's reason after these two.
    prompt: list[ChatTurn] | None = None
    tools: list[dict[str, Any]] | None = None
    attempts: list[AttemptTrace] = Field(default_factory=list)
    decided_by: str | None = None


class CaseRecord(BaseModel):
    """One case under one policy: how it ended, the graded output, the ledger, the trace."""

    case_id: str
    policy: str
    status: Literal["done", "failed", "stopped", "rejected", "needs_human", "error"]
    thread_id: str
    wall_s: float
    output: Any = None
    evaluations: list[EvaluationResult] = Field(default_factory=list)
    ledger: list[dict[str, Any]] = Field(default_factory=list)
    steps: list[StepTrace] = Field(default_factory=list)
    escalations: int = 0
    interrupt: dict[str, Any] | None = None
    # Interrupts the suite answered for the harness (payload and answer), in order.
    answered: list[dict[str, Any]] = Field(default_factory=list)
    error: str | None = None
    # For status "error": "configuration" (a tier the server refused: fix the tiers file),
    # "bug" (a check, tool or action crashed), or None (the harness could not run the case).
    error_kind: Literal["configuration", "bug"] | None = None
    recorded_at: str = Field(default_factory=utc_now)

    @property
    def cost_usd(self) -> float:
        return sum(float(u.get("cost_usd", 0.0)) for u in self.ledger)

    @property
    def model_latency_s(self) -> float:
        return sum(float(u.get("latency_s", 0.0)) for u in self.ledger)

    def evaluation(self, name: str) -> EvaluationResult | None:
        return next((e for e in self.evaluations if e.name == name), None)


class RunManifest(BaseModel):
    """What a run folder's results were produced with."""

    format_version: int = FORMAT_VERSION
    graph: str
    suite: str
    dataset: str
    # The effective tier config without its routing policy (each policy sets its own).
    tier_config: dict[str, Any]
    policies: dict[str, dict[str, Any]] = Field(default_factory=dict)
    created_at: str = Field(default_factory=utc_now)

    @property
    def ladder(self) -> list[str]:
        return [t["name"] for t in self.tier_config.get("tiers", [])]


class ResultStore:
    """The results of a run folder: read per policy (last record per case wins), appended
    one line per finished case under a lock (workers append concurrently)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._lock = threading.Lock()

    @property
    def manifest_path(self) -> Path:
        return self.run_dir / "run.json"

    @property
    def results_dir(self) -> Path:
        return self.run_dir / "results"

    def results_file(self, policy: str) -> Path:
        if not _POLICY_NAME.match(policy):
            raise ConfigError(f"policy name '{policy}' may only use letters, digits and . _ + -")
        return self.results_dir / f"{policy}.jsonl"

    # -- manifest -------------------------------------------------------------------
    def read_manifest(self) -> RunManifest | None:
        if not self.manifest_path.is_file():
            return None
        try:
            return RunManifest.model_validate_json(self.manifest_path.read_text(encoding="utf-8"))
        except ValidationError as err:
            raise RunFolderError(f"{self.manifest_path} is not a tierflow eval manifest: {err.errors()[0]['msg']}") from None

    def open(self, manifest: RunManifest, *, write: bool = True) -> RunManifest:
        """Start or continue a run: create the folder, or check the existing manifest
        matches and add the new policies to it. `write=False` only checks (a report over
        what is recorded must not change the folder)."""
        existing = self.read_manifest()
        if existing is None and not write:
            raise RunFolderError(f"{self.run_dir} holds no eval run (no run.json) to report on")
        if existing is None:
            merged = manifest
        else:
            problems = []
            if existing.format_version != manifest.format_version:
                problems.append(f"format version {existing.format_version} (this harness writes {manifest.format_version})")
            for key in ("graph", "suite"):
                if getattr(existing, key) != getattr(manifest, key):
                    problems.append(f"{key} '{getattr(existing, key)}' (now '{getattr(manifest, key)}')")
            if existing.tier_config != manifest.tier_config:
                problems.append("a different tier configuration (models, prices, roles, escalation or budget)")
            for name, context in manifest.policies.items():
                if name in existing.policies and existing.policies[name] != context:
                    problems.append(f"policy '{name}' with run context {existing.policies[name]} (now {context})")
            if problems:
                raise ConfigError(
                    f"the run folder {self.run_dir} holds results of another run: " + "; ".join(problems)
                    + ". Pass another --out folder (or delete this one) to start afresh."
                )
            merged = existing.model_copy(update={"policies": {**existing.policies, **manifest.policies}})
        if not write:
            return merged
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.manifest_path.write_text(merged.model_dump_json(indent=2), encoding="utf-8")
        return merged

    # -- records --------------------------------------------------------------------
    def policies(self) -> list[str]:
        return sorted(p.stem for p in self.results_dir.glob("*.jsonl")) if self.results_dir.is_dir() else []

    def load(self, policy: str) -> dict[str, CaseRecord]:
        """The recorded cases of `policy`, by case id (the latest line of a case wins)."""
        path = self.results_file(policy)
        if not path.is_file():
            return {}
        with self._lock:
            raw = path.read_bytes()
            lines = raw.split(b"\n")
            complete, tail = lines[:-1], lines[-1]
            if tail.strip():
                # The process was killed mid-line: drop the fragment; that case runs again.
                path.write_bytes(raw[: len(raw) - len(tail)])
        records: dict[str, CaseRecord] = {}
        for number, line in enumerate(complete, start=1):
            if not line.strip():
                continue
            try:
                record = CaseRecord.model_validate_json(line)
            except ValidationError as err:
                raise RunFolderError(
                    f"{path} line {number} is not a case record ({err.errors()[0]['msg']}); "
                    "the file was edited or written by another tool - move it away to rerun that policy"
                ) from None
            records[record.case_id] = record
        return records

    def append(self, record: CaseRecord) -> None:
        # A provider's error text may echo a key (a proxy's 401 body): nothing secret on disk.
        line = redact(record.model_dump_json()) + "\n"
        path = self.results_file(record.policy)
        with self._lock, path.open("a", encoding="utf-8") as out:
            out.write(line)
            out.flush()

    def load_all(self, policies: Iterable[str] | None = None) -> dict[str, dict[str, CaseRecord]]:
        return {p: self.load(p) for p in (policies if policies is not None else self.policies())}
