"""Slot / span extraction: exact value match per slot, micro and macro F1 over slots.

Values are compared after normalisation (case, inner whitespace, and punctuation or
whitespace at either end), so "7 p.m." matches "7 p.m" and " Smith," matches "smith".
Per slot and case: a right value is a true positive; a wrong value is both a false
positive and a false negative; a gold slot left empty is a false negative; a predicted
slot the gold lacks is a false positive.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from tierflow.evals.datasets.slots import SlotCase

from .base import EvaluationError, EvaluationResult, precision_recall_f1

__all__ = ["normalise_slot_value", "slot_counts", "slot_match", "slot_f1", "SlotExactMatch"]

_EDGE_CHARACTERS = string.whitespace + string.punctuation + "\u2018\u2019\u201c\u201d"

GoldSlots = Mapping[str, str | Sequence[str]]
PredictedSlots = Mapping[str, Any]


def normalise_slot_value(value: Any) -> str:
    """Lower-cased, inner whitespace collapsed, edge punctuation/whitespace stripped; ``""``
    for None. Non-strings (an extractor may type ``people`` as int) are compared as text."""
    if value is None:
        return ""
    return " ".join(str(value).split()).strip(_EDGE_CHARACTERS).lower()


def _gold_values(value: str | Sequence[str]) -> set[str]:
    values = [value] if isinstance(value, str) else list(value)
    return {normalised for normalised in map(normalise_slot_value, values) if normalised}


def slot_counts(gold: GoldSlots, predicted: PredictedSlots) -> dict[str, dict[str, int]]:
    """``{slot: {"tp", "fp", "fn"}}`` for every slot in either mapping. A gold slot may list
    several accepted values; a predicted value matching any of them is right."""
    counts: dict[str, dict[str, int]] = {}
    for slot in sorted(set(gold) | set(predicted)):
        accepted = _gold_values(gold.get(slot, ()))
        guess = normalise_slot_value(predicted.get(slot))
        tp = fp = fn = 0
        if accepted and guess:
            if guess in accepted:
                tp = 1
            else:
                fp = fn = 1
        elif accepted:
            fn = 1
        elif guess:
            fp = 1
        counts[slot] = {"tp": tp, "fp": fp, "fn": fn}
    return counts


def _as_mapping(predicted: Any) -> PredictedSlots:
    if isinstance(predicted, BaseModel):
        return predicted.model_dump()
    if isinstance(predicted, Mapping):
        return predicted
    if predicted is None:
        return {}
    raise EvaluationError(f"slot predictions must be a mapping slot -> value, got {type(predicted).__name__}")


def slot_match(gold: GoldSlots, predicted: PredictedSlots) -> EvaluationResult:
    """One case: passes when every slot is right and nothing extra is predicted. ``score``
    is the case's micro-F1 (1.0 for an utterance with no slots and no predictions)."""
    counts = slot_counts(gold, _as_mapping(predicted))
    tp = sum(c["tp"] for c in counts.values())
    fp = sum(c["fp"] for c in counts.values())
    fn = sum(c["fn"] for c in counts.values())
    passed = fp == 0 and fn == 0
    score = 1.0 if passed else precision_recall_f1(tp, fp, fn)[2]
    wrong = sorted(slot for slot, c in counts.items() if c["fp"] or c["fn"])
    return EvaluationResult(
        name="slot_match",
        score=score,
        passed=passed,
        reason=None if passed else f"wrong, missing or extra slot(s): {', '.join(wrong)}",
        details={"per_slot": counts},
    )


def slot_f1(pairs: Iterable[tuple[GoldSlots, PredictedSlots]], slots: Sequence[str] | None = None) -> EvaluationResult:
    """Aggregate over cases: ``score`` is micro-F1 over all slot decisions; ``details`` has
    macro-F1 (mean of per-slot F1 over ``slots``, default every slot seen; unseen slots are
    skipped), per-slot counts and scores, and the exact-match rate of cases."""
    totals: dict[str, dict[str, int]] = {}
    cases = exact = 0
    for gold, predicted in pairs:
        cases += 1
        counts = slot_counts(gold, _as_mapping(predicted))
        exact += all(c["fp"] == 0 and c["fn"] == 0 for c in counts.values())
        for slot, c in counts.items():
            total = totals.setdefault(slot, {"tp": 0, "fp": 0, "fn": 0})
            for key in ("tp", "fp", "fn"):
                total[key] += c[key]
    if not cases:
        return EvaluationResult(name="slot_f1", score=0.0, passed=None, reason="no cases to score")
    chosen = list(slots) if slots is not None else sorted(totals)
    per_slot: dict[str, dict[str, float]] = {}
    for slot in chosen:
        c = totals.get(slot, {"tp": 0, "fp": 0, "fn": 0})
        if c["tp"] + c["fp"] + c["fn"] == 0:
            continue
        precision, recall, f1 = precision_recall_f1(c["tp"], c["fp"], c["fn"])
        per_slot[slot] = {**c, "precision": precision, "recall": recall, "f1": f1}
    tp = sum(totals[slot]["tp"] for slot in per_slot)
    fp = sum(totals[slot]["fp"] for slot in per_slot)
    fn = sum(totals[slot]["fn"] for slot in per_slot)
    micro_precision, micro_recall, micro = precision_recall_f1(tp, fp, fn)
    if tp + fp + fn == 0:
        micro = 1.0  # nothing to find and nothing predicted: every case is right
    macro = sum(entry["f1"] for entry in per_slot.values()) / len(per_slot) if per_slot else micro
    return EvaluationResult(
        name="slot_f1",
        score=micro,
        passed=None,
        details={
            "micro_f1": micro,
            "micro_precision": micro_precision,
            "micro_recall": micro_recall,
            "macro_f1": macro,
            "exact_match": exact / cases,
            "n": cases,
            "per_slot": per_slot,
        },
    )


@dataclass(frozen=True)
class SlotExactMatch:
    """Grades an extractor's ``{slot: value}`` output for a restaurant8k case."""

    name: str = "slot_match"

    def evaluate(self, output: PredictedSlots, case: SlotCase) -> EvaluationResult:
        result = slot_match(case.expected.slot_values(), output)
        return result.model_copy(update={"name": self.name})
