"""Evaluators: grade one output against one case (``EvaluationResult``), plus the run-level
metrics built from them (macro-F1, slot F1). Call per-case evaluators through
``run_evaluator`` so an evaluator bug becomes a failed result, not a crashed run."""

from __future__ import annotations

from .base import EvaluationError, EvaluationResult, Evaluator, evaluator_name, run_evaluator, verdict
from .function_calls import (
    FunctionCall,
    FunctionCallMatch,
    match_call,
    match_function_calls,
    parse_function_calls,
    standardise_string,
)
from .labels import ExactLabel, label_match, macro_f1
from .numeric import MathAnswerCorrect, as_number, numeric_match
from .retail import DETERMINISTIC_CHECKS, RetailOutcome, RetailTaskSuccess, communicate_info_check, db_state_match
from .slots import SlotExactMatch, normalise_slot_value, slot_counts, slot_f1, slot_match

__all__ = [
    "EvaluationResult",
    "EvaluationError",
    "Evaluator",
    "run_evaluator",
    "evaluator_name",
    "verdict",
    "label_match",
    "macro_f1",
    "ExactLabel",
    "normalise_slot_value",
    "slot_counts",
    "slot_match",
    "slot_f1",
    "SlotExactMatch",
    "FunctionCall",
    "parse_function_calls",
    "standardise_string",
    "match_call",
    "match_function_calls",
    "FunctionCallMatch",
    "DETERMINISTIC_CHECKS",
    "RetailOutcome",
    "db_state_match",
    "communicate_info_check",
    "RetailTaskSuccess",
    "as_number",
    "numeric_match",
    "MathAnswerCorrect",
]
