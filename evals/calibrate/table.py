"""What `tierflow calibrate` learns from: per step, one row per case pairing the cheap tier's
first answer (its signals, input text, correctness and cost) with the reference policy's
answer to the same item (its correctness and cost).

The cheap answers come from the ``tiered`` policy's first attempts when the run has them
(that is the policy being calibrated), else from ``all-slm``; the reference is ``--of``
(``all-frontier`` by default). An escalated answer is assumed to score and cost what the
reference policy's answer did: with a recording (replay tiers) or the call cache that is
what the tiered policy gets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tierflow.agents.calibration import answer_text
from tierflow.evals.harness.records import CaseRecord, ResultStore, RunManifest, StepTrace
from tierflow.model_tiers import ConfigError

__all__ = ["StepSample", "StepTable", "RunTables", "load_tables", "split_cases", "CHEAP_SOURCES"]

CHEAP_SOURCES = ("tiered", "all-slm")
# Signals the calibrated check itself adds: never features of the next calibration.
_NOT_FEATURES = frozenset({"p_right"})


@dataclass(frozen=True)
class StepSample:
    case_id: str
    item_id: str
    text: str
    signals: Mapping[str, float]
    # The cheap answer passed every other check (the calibrated check only sees those).
    passed: bool
    cheap_correct: bool
    ref_correct: bool
    cheap_cost: float
    ref_cost: float
    # The answer's words (agents.calibration.answer_text): a post-call check reads them.
    answer: str = ""


@dataclass
class StepTable:
    step: str
    tier: str
    samples: list[StepSample] = field(default_factory=list)
    # Items left out, with why (no ground truth, no reference answer, an error).
    left_out: dict[str, int] = field(default_factory=dict)

    def leave_out(self, why: str) -> None:
        self.left_out[why] = self.left_out.get(why, 0) + 1


@dataclass
class RunTables:
    run_dir: Path
    manifest: RunManifest
    cheap_policy: str
    reference: str
    steps: dict[str, StepTable]


def _user_text(trace: StepTrace) -> str:
    for turn in trace.prompt or []:
        if turn.role == "user":
            return turn.content
    return ""


def _item_cost(record: CaseRecord, item_id: str, attempt: int | None = None) -> float:
    return sum(
        float(u.get("cost_usd") or 0.0)
        for u in record.ledger
        if u.get("step") == item_id and (attempt is None or int(u.get("attempt") or 0) == attempt)
    )


def _decided_correct(trace: StepTrace) -> bool | None:
    """Whether the item's final answer was right: its last attempt that passed, else its last."""
    passed = [a for a in trace.attempts if a.verdict == "pass" and a.tier is not None]
    last = passed[-1] if passed else (trace.attempts[-1] if trace.attempts else None)
    return None if last is None else last.correct


def _passed_checks(signals: Mapping[str, float], verdict: str | None, reason: str | None) -> bool:
    """Passed every check: a soft objection counts even where it only warned (all-slm),
    and a failure of an earlier calibration does not (it is what is being refitted)."""
    if any(k.startswith("check.") and k.endswith(".pass") and v < 1 for k, v in signals.items()):
        return False
    if verdict == "fail" and not (reason or "").startswith("calibration:"):
        return False
    return verdict in ("pass", "fail")


def load_tables(run_dir: str | Path, reference: str = "all-frontier", cheap_policy: str | None = None) -> RunTables:
    """The per-step tables of an eval run folder. ConfigError when the run lacks what a
    calibration needs (a reference policy, a cheap policy), naming the command that adds it."""
    store = ResultStore(run_dir)
    manifest = store.read_manifest()
    if manifest is None:
        raise ConfigError(f"{run_dir} holds no eval run (no run.json); run `tierflow eval GRAPH --out {run_dir}` first")
    policies = store.policies()
    if reference not in policies:
        raise ConfigError(
            f"the run has no '{reference}' results to calibrate against (it has: {', '.join(policies) or 'none'}); "
            f"add them with `tierflow eval {manifest.graph} --policy {reference} --out {run_dir}`"
        )
    cheap = cheap_policy or next((p for p in CHEAP_SOURCES if p in policies), None)
    if cheap is None or cheap not in policies:
        raise ConfigError(
            f"the run has no cheap-tier results (tiered or all-slm) to calibrate (it has: {', '.join(policies)}); "
            f"add them with `tierflow eval {manifest.graph} --policy all-slm --out {run_dir}`"
        )
    ladder = manifest.ladder
    cheapest = ladder[0] if ladder else None
    cheap_records, ref_records = store.load(cheap), store.load(reference)
    steps: dict[str, StepTable] = {}
    for case_id, record in sorted(cheap_records.items()):
        ref_record = ref_records.get(case_id)
        ref_traces = {t.item_id: t for t in ref_record.steps} if ref_record is not None else {}
        for trace in record.steps:
            model_attempts = [a for a in trace.attempts if a.tier is not None]
            if not model_attempts:
                continue  # an action step: no model answer to calibrate
            first = model_attempts[0]
            table = steps.setdefault(trace.node, StepTable(step=trace.node, tier=first.tier or cheapest or "?"))
            if first.tier != table.tier:
                table.leave_out(f"started on '{first.tier}', not '{table.tier}'")
                continue
            ref_trace = ref_traces.get(trace.item_id)
            ref_correct = _decided_correct(ref_trace) if ref_trace is not None else None
            if first.correct is None:
                table.leave_out("no ground truth for this step")
                continue
            if ref_trace is None or ref_correct is None:
                table.leave_out(f"no '{reference}' answer for the item")
                continue
            signals = {k: v for k, v in (first.signals or {}).items() if k not in _NOT_FEATURES}
            passed = first.error_kind is None and _passed_checks(signals, first.verdict, first.reason)
            table.samples.append(
                StepSample(
                    case_id=case_id,
                    item_id=trace.item_id,
                    text=_user_text(trace),
                    signals=signals,
                    answer=answer_text(first.value),
                    passed=passed,
                    cheap_correct=bool(first.correct),
                    ref_correct=bool(ref_correct),
                    cheap_cost=_item_cost(record, trace.item_id, first.attempt),
                    ref_cost=_item_cost(ref_record, trace.item_id) if ref_record is not None else 0.0,
                )
            )
    return RunTables(run_dir=Path(run_dir), manifest=manifest, cheap_policy=cheap, reference=reference, steps=steps)


def split_cases(samples: Sequence[StepSample], holdout: float, seed: int) -> tuple[list[StepSample], list[StepSample]]:
    """(fit, held out): whole cases go to one side, chosen by a seeded hash of the case id."""
    if holdout <= 0:
        return list(samples), []

    def side(case_id: str) -> float:
        digest = hashlib.sha256(f"{seed}:{case_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    fit = [s for s in samples if side(s.case_id) >= holdout]
    held = [s for s in samples if side(s.case_id) < holdout]
    return fit, held
