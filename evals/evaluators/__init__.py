"""Internal (the public surface is `tierflow.evaluate`).

Evaluators: grade one output against one case (``EvaluationResult``), plus the run-level
metrics built from them (macro-F1, slot F1). Call per-case evaluators through
``run_evaluator`` so an evaluator bug becomes a failed result, not a crashed run."""

# Nothing is re-exported: each evaluator is imported from its module (`.base` for the
# result types and `run_evaluator`, `.labels`, `.slots`, `.function_calls`, `.numeric`, `.retail`).
__all__: list[str] = []
