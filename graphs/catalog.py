"""The graphs tierflow ships, by name (the CLI, the evals and langgraph.json use these)."""

from __future__ import annotations

import importlib
from types import ModuleType

from model_tiers import ConfigError

__all__ = ["GRAPH_MODULES", "graph_names", "load_graph_module"]

GRAPH_MODULES: dict[str, str] = {
    "ticket_triage": "graphs.ticket_triage",
    "slot_extraction": "graphs.slot_extraction",
    "math_qa": "graphs.math_qa",
    "order_agent": "graphs.order_agent",
    "function_calling": "graphs.function_calling",
}


def graph_names() -> list[str]:
    return sorted(GRAPH_MODULES)


def load_graph_module(name: str) -> ModuleType:
    """Import a graph module (exposing `WORKFLOW`, `build` and `graph`) by its name."""
    if name not in GRAPH_MODULES:
        raise ConfigError(f"unknown graph '{name}'; available graphs: {', '.join(graph_names())}")
    return importlib.import_module(GRAPH_MODULES[name])
