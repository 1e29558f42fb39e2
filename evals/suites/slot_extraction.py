"""slot_extraction suite: restaurant8k (date, time, people, first_name, last_name).

The graph copies each slot as a span of the booking message; its final output keeps the
slots that are spans (`final["slots"][slot]["text"]`). Graded here:

* ``slot_match``: the case is exactly right (every gold slot right, nothing extra);
  values compare after normalisation (case, inner whitespace, edge punctuation), see
  `evals.evaluators.slots`;
* ``slot_<name>``: per slot, judged only on cases where the gold or the prediction has
  that slot (so an absent slot left absent does not inflate it): right value = pass;
* ``micro_f1`` / ``macro_f1``: slot-level F1 over the sample (bootstrap interval), macro =
  mean of the five slots' F1.

A run that ends with a human (every tier failed the verifier) or an error predicts no slots.
Verifier ground truth: an extract candidate is right iff all its slots match the gold ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tierflow.evals.datasets import Case, default_dataset_file
from tierflow.evals.datasets.slots import RESTAURANT8K_SLOTS, SlotDataset, load_restaurant8k
from tierflow.evals.evaluators.base import EvaluationResult, verdict
from tierflow.evals.evaluators.slots import SlotExactMatch, normalise_slot_value, slot_f1, slot_match
from tierflow.evals.harness.suite import Aggregate, GraphOutcome, StepTruth, Suite, on_output_field

__all__ = ["SUITES", "RESTAURANT8K", "slots_output", "SlotValueMatch", "extract_is_correct"]


def _load(path: Path | None, limit: int | None, seed: int) -> SlotDataset:
    return load_restaurant8k(path if path is not None else default_dataset_file("restaurant8k"), limit=limit, seed=seed)


def _to_input(case: Case[Any, Any]) -> dict[str, Any]:
    return {"request": case.inputs.text}


def slots_output(outcome: GraphOutcome) -> dict[str, Any]:
    """The slots the run ended with ({slot: text}; {} when it ended without a result)."""
    spans = outcome.final.get("slots") or {}
    return {
        "status": outcome.status,
        "slots": {slot: span["text"] for slot, span in spans.items() if isinstance(span, Mapping)},
        "decided_by": outcome.decided_by("extract"),
        "stopped_at": outcome.stopped_at,
    }


def _predicted(output: Any) -> Mapping[str, Any]:
    slots = output.get("slots") if isinstance(output, Mapping) else None
    return slots if isinstance(slots, Mapping) else {}


@dataclass(frozen=True)
class SlotValueMatch:
    """One slot of one case; not judged when neither gold nor prediction has the slot."""

    slot: str

    @property
    def name(self) -> str:
        return f"slot_{self.slot}"

    def evaluate(self, output: Any, case: Case[Any, Any]) -> EvaluationResult:
        gold = {normalise_slot_value(v) for v in case.expected.slot_values().get(self.slot, [])} - {""}
        guess = normalise_slot_value(_predicted(output).get(self.slot))
        if not gold and not guess:
            return EvaluationResult(name=self.name, score=0.0, passed=None, reason="slot absent in gold and prediction")
        return verdict(self.name, guess in gold, f"predicted {guess or None!r}, gold {sorted(gold) or None}", predicted=guess or None)


def _pairs(items: Sequence[tuple[Case[Any, Any], Any]]) -> list[tuple[Any, Any]]:
    return [(case.expected.slot_values(), _predicted(output)) for case, output in items]


def _micro_f1(items: Sequence[tuple[Case[Any, Any], Any]]) -> float:
    return float(slot_f1(_pairs(items), RESTAURANT8K_SLOTS).details.get("micro_f1", 0.0))


def _macro_f1(items: Sequence[tuple[Case[Any, Any], Any]]) -> float:
    return float(slot_f1(_pairs(items), RESTAURANT8K_SLOTS).details.get("macro_f1", 0.0))


def extract_is_correct(value: Any, case: Case[Any, Any]) -> bool:
    """An extract candidate is right iff every slot matches gold and nothing is extra."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if not isinstance(value, Mapping):
        return False
    return bool(slot_match(case.expected.slot_values(), value).passed)


def gold_slots(case: Case[Any, Any]) -> dict[str, Any]:
    """The extract step's right answer: each slot's first gold span, None where absent."""
    values = case.expected.slot_values()
    return {slot: (values.get(slot) or [None])[0] for slot in RESTAURANT8K_SLOTS}


RESTAURANT8K = Suite(
    name="restaurant8k",
    graph="slot_extraction",
    description=(
        "restaurant8k booking requests: the verified slots (date, time, people, first_name, last_name) against the "
        "gold spans; case exact match, per-slot match, micro and macro slot F1."
    ),
    dataset="restaurant8k",
    load=_load,
    to_input=_to_input,
    to_output=slots_output,
    evaluators=(on_output_field(SlotExactMatch(), "slots", name="slot_match"), *(SlotValueMatch(s) for s in RESTAURANT8K_SLOTS)),
    aggregates=(
        Aggregate("micro_f1", _micro_f1, "slot-level F1 over every (case, slot) decision of the sample"),
        Aggregate("macro_f1", _macro_f1, "mean over the five slots of each slot's F1 (slots absent from the sample skipped)"),
    ),
    primary="micro_f1",
    truths=(
        StepTruth(
            "extract",
            extract_is_correct,
            "an extract candidate is right iff all its slots equal the gold ones (nothing extra)",
            answer=gold_slots,
        ),
    ),
    metric_notes={
        "slot_match": "every gold slot right and no extra slot (a run ended with a human predicts nothing)",
        **{f"slot_{s}": f"'{s}' right, over the cases where gold or prediction has '{s}'" for s in RESTAURANT8K_SLOTS},
    },
    notes=(
        "Sampling with --limit is stratified by the set of slots a message carries (seed 0 unless --seed).",
        "The extract step is local_only: with a non-local top tier, all-frontier cannot run it there (see the graph).",
        "No confidence is reported by the extract step, so there is no threshold sweep.",
        "restaurant8k gives no context turn to the graph: requested_slots (what the system had just asked) is not "
        "passed, so a bare '7' is ambiguous to the model as it is to a reader.",
    ),
)

SUITES: tuple[Suite, ...] = (RESTAURANT8K,)
