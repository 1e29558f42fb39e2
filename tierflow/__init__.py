"""tierflow: multi-step agents as LangGraph state machines on tiered models."""

from tierflow.agents.spec import Check, StepInput
from tierflow.agents.workers import classifier, extractor, writer
from tierflow.graphs.builder import Workflow

__all__ = ["Check", "StepInput", "Workflow", "classifier", "extractor", "writer"]
