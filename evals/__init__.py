"""Internal: the eval harness, suites, datasets, evaluators, calibration and benchmarks; the public
surface is `tierflow.evaluate` and the `tierflow eval` command."""

__all__: list[str] = []
