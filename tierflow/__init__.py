"""tierflow: multi-step agents as LangGraph state machines on tiered models.

The public API: declare a graph, run it, evaluate it, test it.

    import tierflow

    WORKFLOW = tierflow.Workflow(
        name="refund_desk", description="classify, then extract",
        steps=(tierflow.classifier("classify", labels=[...], instructions="..."),
               tierflow.extractor("extract", schema=Refund, instructions="...")),
    )
    result = tierflow.run(WORKFLOW, "Please refund order 4417")      # a RunResult
    result.steps.get("extract", Refund)                               # a step's value, typed
    report = tierflow.evaluate(WORKFLOW, "cases.jsonl", policies=["all-slm", "tiered"])

Everything else (`tierflow.agents`, `.graphs`, `.tools`, `.model_tiers`, `.evals`) is
importable but internal: it may change between releases without notice.
"""

from tierflow._evaluate import evaluate
from tierflow._results import EvalResult, RunResult
from tierflow._run import resume, run
from tierflow._testing import scripted_ladder
from tierflow.agents.spec import Check, StepInput, ToolBox
from tierflow.agents.workers import action, classifier, extractor, planner, tool_caller, writer
from tierflow.graphs.builder import Workflow
from tierflow.graphs.results import Label, StepResults
from tierflow.graphs.tiered_step import tiered_step
from tierflow.model_tiers import (
    ConfigError,
    MissingDependency,
    TierConfig,
    TierflowError,
    TierRegistry,
    TierRunContext,
    TierSpec,
    ToolRefusal,
    load_tier_config,
)
from tierflow.model_tiers.providers.catalog import FunctionProvider, ProviderCapabilities, register_provider
from tierflow.model_tiers.testing import ScriptedChatModel, scripted_ladder_toml

__all__ = [
    # declare a graph
    "Workflow",
    "planner", "classifier", "extractor", "tool_caller", "writer", "action",  # the step factories
    "Check",
    "StepInput",
    "ToolBox",
    "tiered_step",
    # read what it produced
    "StepResults",
    "Label",
    # run and evaluate it
    "run",
    "resume",
    "evaluate",
    "RunResult",
    "EvalResult",
    # its tiers
    "TierConfig",
    "TierSpec",
    "TierRegistry",
    "TierRunContext",
    "load_tier_config",
    # a provider kind of one's own (tiers files name it as `provider = "..."`)
    "register_provider",
    "FunctionProvider",
    "ProviderCapabilities",
    # errors
    "TierflowError",
    "ConfigError",
    "MissingDependency",
    "ToolRefusal",
    # test it
    "ScriptedChatModel",
    "scripted_ladder",
    "scripted_ladder_toml",
]
