"""Internal: step declarations (`spec`), the step factories (`workers`) and the escalation loop (`loop`);
the public surface is `import tierflow` (Workflow, the step factories, Check, StepInput)."""

__all__: list[str] = []
