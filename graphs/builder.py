"""Compile a declared `Workflow` into the tiered LangGraph state machine.

    START -> router -> <step> -> <next step> | <step> (retry / escalate) | act (tool steps)
          | human_review -> ... -> END

Each step node makes one attempt and has the verifier judge it in the same node; the node
that ends the run writes its final output (nodes say `goto=RESPONDER`, the end of the run).

Routing is done with `Command(goto=...)`; every node declares its destinations so the
drawing in LangGraph Studio shows the real escalation and human-review edges.
"""

from __future__ import annotations

import dataclasses
import functools
import sqlite3
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, get_type_hints

from langgraph.errors import GraphBubbleUp
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, RetryPolicy

from tierflow.agents.client_tools import parse_functions
from tierflow.agents.context import Services, emit
from tierflow.agents.loop import make_act_node, make_human_review_node, make_step_node, make_verifier
from tierflow.agents.loop.common import ACT, HUMAN_REVIEW, RESPONDER, next_node
from tierflow.agents.loop.events import check_events, publish
from tierflow.agents.spec import PlanItem, StepKind, StepSpec, ToolBox
from tierflow.agents.workers import default_plan as plan_in_order
from tierflow.graphs.recording import recorded
from tierflow.graphs.state import RESET, ClientFunctionsInput, TieredInput, TieredOutput, TieredState
from tierflow.model_tiers import TierRegistry, TierRunContext, apply_run_context, load_tier_config
from tierflow.model_tiers.config import coerce_context
from tierflow.model_tiers.secrets import redact_exception, redact_value

__all__ = ["Workflow", "ServiceProvider", "build_graph", "validate_request", "ROUTER", "coerce_context"]

ROUTER = "router"
_RESERVED = {ROUTER, ACT, HUMAN_REVIEW, RESPONDER}
# Transient storage contention is retried by LangGraph; model faults are the ladder's job.
_STORAGE_RETRY = RetryPolicy(max_attempts=3, retry_on=(sqlite3.OperationalError,))
_MAX_CONTEXT_REGISTRIES = 64
# A Workflow's compiled graph, for servers that call a Workflow as a graph factory, is kept
# on the workflow object itself (attribute `_SERVED_ATTRIBUTE`): it goes with the workflow.
# (A table keyed by workflow would hold it forever: the compiled graph refers to its workflow.)
_SERVED_ATTRIBUTE = "_tierflow_served_graph"
_SERVED_LOCK = threading.Lock()
# The reducers TieredState declares (key -> reducer), to apply an update where a node ends the run.
_REDUCERS: dict[str, Callable[[Any, Any], Any]] = {
    key: hint.__metadata__[0] for key, hint in get_type_hints(TieredState, include_extras=True).items() if hasattr(hint, "__metadata__")
}


@dataclass(frozen=True, eq=False)
class Workflow:
    """A graph declaration: steps (with roles, schemas, checks), plan, tools and output.

    `default_plan` is the plan a run follows when no planner makes one; left out, it is the
    steps in the order declared. Two workflows are equal only when they are the same object
    (a declaration holds functions; the compiled-graph cache is keyed on the object).
    """

    name: str
    description: str
    steps: tuple[StepSpec, ...]
    default_plan: tuple[PlanItem, ...] = ()
    planner: StepSpec | None = None
    # Decides, from the request, whether the planner runs (else the default plan does).
    needs_plan: Callable[[str], bool] | None = None
    # Opens what the steps use (knowledge base, databases), once per process, lazily.
    open_resources: Callable[[], Mapping[str, Any]] = field(default=lambda: {})
    toolbox: Callable[[Mapping[str, Any]], ToolBox] | None = None
    # finalize(state, resources) -> the run's `final` output (resources: e.g. to report a DB's state).
    finalize: Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]] | None = None
    max_input_chars: int = 20_000

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError(f"workflow '{self.name}' declares no steps")
        if not self.default_plan:
            # frozen: the resolved plan is set once, here, as the dataclass's own __init__ would
            object.__setattr__(self, "default_plan", plan_in_order(*(s.name for s in self.steps)))
        names = [s.name for s in self.all_steps]
        clash = _RESERVED.intersection(names)
        if clash:
            raise ValueError(f"step names {sorted(clash)} are reserved by the engine")
        if len(set(names)) != len(names):
            raise ValueError(f"workflow '{self.name}' declares a step name twice")
        unknown = [p.step for p in self.default_plan if p.step not in names]
        if unknown:
            raise ValueError(f"default plan of '{self.name}' uses undeclared steps {unknown}")
        if any(s.executes_tools for s in self.steps) and self.toolbox is None:
            raise ValueError(f"workflow '{self.name}' has tool steps but no toolbox")

    def compile(self, **kwargs: Any) -> Any:
        """The compiled LangGraph graph (`build_graph`'s options: registry, tiers_file,
        resources, checkpointer)."""
        return build_graph(self, **kwargs)

    def __call__(self) -> Any:
        """The compiled graph, built once per process: a Workflow named in langgraph.json
        is its own graph factory, so a user's file needs no `graph = ...` line (the LangGraph
        server calls a factory per run and brings its own checkpointer)."""
        with _SERVED_LOCK:
            compiled = self.__dict__.get(_SERVED_ATTRIBUTE)
            if compiled is None:
                compiled = build_graph(self)
                object.__setattr__(self, _SERVED_ATTRIBUTE, compiled)  # frozen: a cache, not a field
            return compiled

    @property
    def all_steps(self) -> tuple[StepSpec, ...]:
        return ((self.planner,) if self.planner else ()) + self.steps

    @property
    def executes_tools(self) -> bool:
        return any(s.executes_tools for s in self.all_steps)

    @property
    def takes_functions(self) -> bool:
        """Whether requests carry the caller's functions (a step uses client tools)."""
        return any(s.client_tools for s in self.all_steps)


def validate_request(request: Any, max_chars: int) -> str | None:
    """Why a request cannot be run (None if it can). Recorded in state, never raised."""
    if not isinstance(request, str):
        return f"the request must be text, got {type(request).__name__}"
    if not request.strip():
        return "the request is empty"
    if len(request) > max_chars:
        return f"the request is {len(request):,} characters; the limit for this graph is {max_chars:,}"
    if "\x00" in request:
        return "the request contains NUL bytes (binary data?)"
    return None


class ServiceProvider:
    """Resolves each run's services: the registry under the run context, resources, tools.

    Nothing is built until the first node asks, so importing a graph module opens no file
    and loads no model (LangGraph's server imports every graph at start).
    """

    def __init__(
        self,
        workflow: Workflow,
        *,
        registry: TierRegistry | None = None,
        tiers_file: str | None = None,
        resources: Mapping[str, Any] | None = None,
    ) -> None:
        self._workflow = workflow
        self._registry = registry
        self._tiers_file = tiers_file
        self._resources = resources
        self._toolbox: ToolBox | None = None
        # Registries per distinct run context, most recent last: bounded, because a server
        # that gets a new budget per request would otherwise grow one per request.
        self._by_context: OrderedDict[str, TierRegistry] = OrderedDict()
        self._lock = threading.Lock()

    def base_registry(self) -> TierRegistry:
        with self._lock:
            if self._registry is None:
                self._registry = TierRegistry(load_tier_config(self._tiers_file))
            return self._registry

    def resources(self) -> Mapping[str, Any]:
        with self._lock:
            if self._resources is None:
                self._resources = self._workflow.open_resources()
            if self._toolbox is None and self._workflow.toolbox is not None:
                self._toolbox = self._workflow.toolbox(self._resources)
            return self._resources

    def __call__(self, runtime: Any) -> Services:
        base = self.base_registry()
        resources = self.resources()
        ctx = coerce_context(getattr(runtime, "context", None))
        registry = base
        if ctx is not None and any(v not in (None, {}) for v in asdict(ctx).values()):
            key = repr(sorted(asdict(ctx).items()))
            with self._lock:
                if key not in self._by_context:
                    self._by_context[key] = base.with_config(apply_run_context(base.config, ctx))
                    while len(self._by_context) > _MAX_CONTEXT_REGISTRIES:
                        self._by_context.popitem(last=False)
                self._by_context.move_to_end(key)
                registry = self._by_context[key]
        return Services(registry=registry, resources=resources, toolbox=self._toolbox)


# State keys whose text may quote a provider's error (which may echo a key): masked before
# LangGraph checkpoints them. Results are business output and pass untouched.
_TEXT_KEYS = frozenset({"events", "failure", "ledger", "proposal", "attempt", "review_error"})


def _guarded(node: Callable[..., Any]) -> Callable[..., Any]:
    """`node` with secrets masked in what it writes to state and in the exception it raises
    (LangGraph stores a failed task's exception in the checkpoint), and the events it
    records streamed."""

    @functools.wraps(node)
    def guarded(state: dict[str, Any], runtime: Any) -> Any:
        try:
            out = node(state, runtime)
        except GraphBubbleUp:
            raise  # an interrupt or a parent command: LangGraph's control flow, not an error
        except Exception as err:
            redact_exception(err)  # in place, causes included: the exception keeps its traceback
            raise
        if isinstance(out, Command) and isinstance(out.update, Mapping):
            update = _masked(out.update)
            out = dataclasses.replace(out, update=update)
        elif isinstance(out, Mapping):
            update = out = _masked(out)
        else:
            return out
        # Every event recorded in state is also streamed, here and only here.
        events = update.get("events") or []
        check_events(events)
        publish(runtime, events)
        return out

    return guarded


def _masked(update: Mapping[str, Any]) -> dict[str, Any]:
    return {k: redact_value(v) if k in _TEXT_KEYS else v for k, v in update.items()}


def _router(workflow: Workflow) -> Callable[..., Command[str]]:
    def router(state: dict[str, Any], runtime: Any) -> Command[str]:
        run_id = uuid.uuid4().hex
        fresh: dict[str, Any] = {
            "run_id": run_id, "status": "running", "cursor": 0, "attempt": None, "proposal": None,
            "failure": None, "review_error": None, "results": {RESET: True}, "decided_by": {RESET: True},
        }
        problem = validate_request(state.get("request"), workflow.max_input_chars)
        if problem is None and workflow.takes_functions:
            try:
                fresh["functions"] = [f.model_dump() for f in parse_functions(state.get("functions"))]
            except ValueError as err:
                problem = str(err)
        if problem:
            event = {"type": "rejected_input", "reason": problem}
            rejected = {"plan": [], "status": "rejected", "failure": {"step": ROUTER, "reason": problem}, "events": [event]}
            return Command(goto=RESPONDER, update={**fresh, **rejected})
        request = state["request"]
        if workflow.planner is not None and (workflow.needs_plan is None or workflow.needs_plan(request)):
            plan = [PlanItem(id=f"0:{workflow.planner.name}", step=workflow.planner.name).model_dump()]
            event = {"type": "route", "to": "planner"}
            return Command(goto=workflow.planner.name, update={**fresh, "plan": plan, "plan_source": "planner", "events": [event]})
        event = {"type": "route", "to": "default_plan"}
        plan = [p.model_dump() for p in workflow.default_plan]
        first = next_node(fresh, runtime, plan=plan, cursor=0)
        return Command(goto=first, update={**fresh, "plan": plan, "plan_source": "default", "events": [event]})

    return router


def _finisher(workflow: Workflow, provider: ServiceProvider) -> Callable[[Mapping[str, Any], Any], dict[str, Any]]:
    """The run's end: its status (`done` unless something else was set) and `final`."""

    def finish(state: Mapping[str, Any], runtime: Any) -> dict[str, Any]:
        status = state.get("status") or "running"
        if status == "running":
            status = "done"
        view = {**state, "status": status}
        final = workflow.finalize(view, provider.resources()) if workflow.finalize else {"results": state.get("results", {})}
        emit(runtime, {"type": "final", "status": status})
        return {"status": status, "final": {"status": status, **final}}

    return finish


def _after(state: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """The state once `update` is applied, with the reducers TieredState declares."""
    view = {**state, **update}
    for key, reducer in _REDUCERS.items():
        if key in update:
            view[key] = reducer(state.get(key) or type(update[key])(), update[key])
    return view


def _ending(node: Callable[..., Any], finish: Callable[[Mapping[str, Any], Any], dict[str, Any]]) -> Callable[..., Any]:
    """`node`, finishing the run in the same node when it goes to the end: no superstep
    (and no checkpoint) of its own for writing the final output."""

    @functools.wraps(node)
    def ending(state: dict[str, Any], runtime: Any) -> Any:
        out = node(state, runtime)
        if isinstance(out, Command) and out.goto == RESPONDER:
            update = dict(out.update) if isinstance(out.update, Mapping) else {}
            return Command(goto=END, update={**update, **finish(_after(state, update), runtime)})
        return out

    return ending


def build_graph(
    workflow: Workflow,
    *,
    registry: TierRegistry | None = None,
    tiers_file: str | None = None,
    resources: Mapping[str, Any] | None = None,
    checkpointer: Any = None,
) -> Any:
    """Compile `workflow`. Graph modules export this compiled WITHOUT a checkpointer (the
    LangGraph server brings its own); the CLI and tests pass a SQLite or Postgres saver."""
    provider = ServiceProvider(workflow, registry=registry, tiers_file=tiers_file, resources=resources)
    steps = {s.name: s for s in workflow.all_steps}
    step_names = tuple(steps)
    has_tools = workflow.executes_tools
    input_schema = ClientFunctionsInput if workflow.takes_functions else TieredInput

    # The verifier judges each attempt inside the step's own node (one checkpoint per
    # attempt and its verdict); `escalate` is its ladder, which the act node shares.
    verify, escalate = make_verifier(steps, provider, workflow.default_plan)
    graph = StateGraph(TieredState, context_schema=TierRunContext, input_schema=input_schema, output_schema=TieredOutput)
    entry = (workflow.planner.name,) if workflow.planner else ()
    # No dispatch node: each node routes to the next plan item itself (`next_node`).
    finish = _finisher(workflow, provider)

    def node(fn: Callable[..., Any]) -> Callable[..., Any]:
        return _guarded(recorded(_ending(fn, finish), workflow, lambda: provider.base_registry().config, tiers_file))

    graph.add_node(ROUTER, node(_router(workflow)), destinations=(*entry, *step_names, END))
    after_step = (*step_names, *((ACT,) if has_tools else ()), HUMAN_REVIEW, END)
    for spec in steps.values():
        retry = _STORAGE_RETRY if spec.kind == StepKind.ACTION else None
        graph.add_node(spec.name, node(make_step_node(spec, provider, verify)), destinations=after_step, retry_policy=retry)
    if has_tools:
        after_act = (*step_names, HUMAN_REVIEW, END)
        graph.add_node(ACT, node(make_act_node(provider, escalate)), destinations=after_act, retry_policy=_STORAGE_RETRY)
    after_review = (*step_names, *((ACT,) if has_tools else ()), HUMAN_REVIEW, END)
    graph.add_node(HUMAN_REVIEW, node(make_human_review_node(steps, provider)), destinations=after_review)
    graph.add_edge(START, ROUTER)
    return graph.compile(checkpointer=checkpointer, name=workflow.name)
