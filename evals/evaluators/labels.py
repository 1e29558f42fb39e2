"""Classification: exact label match per case, macro-F1 over a run."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tierflow.evals.datasets.intents import IntentCase

from .base import EvaluationResult, precision_recall_f1, verdict

__all__ = ["label_match", "macro_f1", "ExactLabel"]


def label_match(gold: str, predicted: str | None) -> EvaluationResult:
    """Pass when the predicted label equals the gold label (surrounding whitespace ignored;
    labels are identifiers, so case matters). ``None`` (no prediction) fails."""
    clean = predicted.strip() if isinstance(predicted, str) else None
    return verdict(
        "exact_label",
        clean == gold.strip(),
        f"predicted {predicted!r}, expected {gold!r}",
        gold=gold,
        predicted=predicted,
    )


def macro_f1(
    pairs: Iterable[tuple[str, str | None]], labels: Sequence[str] | None = None
) -> EvaluationResult:
    """Macro-averaged F1 over ``(gold, predicted)`` pairs; ``score`` is the macro-F1.

    ``labels`` restricts the average (e.g. to exclude ``"oos"``); by default it is every
    label seen in gold or predictions. A label that occurs in neither is skipped: its F1
    is undefined, and counting it as 0 would punish a sample for the labels it lacks. A
    ``None`` prediction counts as a miss for the gold label. ``details`` has accuracy and
    per-label precision/recall/F1/support.
    """
    pairs = list(pairs)
    if not pairs:
        return EvaluationResult(name="macro_f1", score=0.0, passed=None, reason="no (gold, predicted) pairs to score")
    chosen = list(labels) if labels is not None else sorted({g for g, _ in pairs} | {p for _, p in pairs if p is not None})
    per_label: dict[str, dict[str, float]] = {}
    skipped: list[str] = []
    for label in chosen:
        tp = sum(1 for gold, predicted in pairs if gold == label and predicted == label)
        fp = sum(1 for gold, predicted in pairs if gold != label and predicted == label)
        fn = sum(1 for gold, predicted in pairs if gold == label and predicted != label)
        if tp + fp + fn == 0:
            skipped.append(label)
            continue
        precision, recall, f1 = precision_recall_f1(tp, fp, fn)
        per_label[label] = {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}
    score = sum(entry["f1"] for entry in per_label.values()) / len(per_label) if per_label else 0.0
    accuracy = sum(1 for gold, predicted in pairs if gold == predicted) / len(pairs)
    return EvaluationResult(
        name="macro_f1",
        score=score,
        passed=None,
        details={"accuracy": accuracy, "n": len(pairs), "per_label": per_label, "skipped_labels": skipped},
    )


@dataclass(frozen=True)
class ExactLabel:
    """Grades a classifier's label (a string, or None when it gave none) for an intent case."""

    name: str = "exact_label"

    def evaluate(self, output: str | None, case: IntentCase) -> EvaluationResult:
        result = label_match(case.expected.label, output)
        return result.model_copy(update={"name": self.name})
