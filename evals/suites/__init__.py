"""Internal (the public surface is `tierflow.evaluate`).

Eval suites by graph name. Each suite module exposes `SUITES: tuple[Suite, ...]`, its
graph's default suite first; a new graph adds one line to `SUITE_MODULES`."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from tierflow.model_tiers import ConfigError

if TYPE_CHECKING:  # the suites import the eval stack; naming graphs with suites must not
    from tierflow.evals.harness.suite import Suite

__all__ = ["SUITE_MODULES", "suites_for", "get_suite", "graphs_with_suites"]

SUITE_MODULES: dict[str, str] = {
    "ticket_triage": "tierflow.evals.suites.ticket_triage",
    "slot_extraction": "tierflow.evals.suites.slot_extraction",
    "math_qa": "tierflow.evals.suites.math_qa",
    "order_agent": "tierflow.evals.suites.order_agent",
    "function_calling": "tierflow.evals.suites.function_calling",
    "recorded": "tierflow.evals.suites.recorded",
}


def graphs_with_suites() -> list[str]:
    return sorted(SUITE_MODULES)


def suites_for(graph: str) -> dict[str, Suite]:
    """The suites of `graph`, by name, its default first."""
    if graph not in SUITE_MODULES:
        raise ConfigError(f"no eval suite for graph '{graph}'; graphs with suites: {', '.join(graphs_with_suites())}")
    module = importlib.import_module(SUITE_MODULES[graph])
    suites: tuple[Suite, ...] = module.SUITES
    return {s.name: s for s in suites}


def get_suite(graph: str, name: str | None = None, dataset_path: str | Path | None = None) -> Suite:
    """`name` if given; else the one suite whose dataset folder appears in `dataset_path`
    (e.g. `.../clinc150/train_val.json`); else the graph's default suite."""
    suites = suites_for(graph)
    if name is not None:
        if name not in suites:
            raise ConfigError(f"graph '{graph}' has no suite '{name}'; its suites: {', '.join(suites)}")
        return suites[name]
    if dataset_path is not None:
        parts = {p.lower() for p in Path(dataset_path).parts}
        matching = [s for s in suites.values() if s.dataset.lower() in parts]
        if len(matching) == 1:
            return matching[0]
    return next(iter(suites.values()))
