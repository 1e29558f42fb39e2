"""Internal: the graph builder, the catalog, the shipped graphs and examples; the public surface is
`import tierflow` (Workflow, tiered_step, StepResults, run, evaluate)."""

__all__: list[str] = []
