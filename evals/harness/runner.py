"""Run a suite's cases under each policy through the compiled graph and record each one.

* The graph is built once per process WITHOUT a checkpointer: a case's state and any
  interrupt come from the stream itself (`updates` + `values`), and everything the report
  and the fine-tuning export need is in the case record, so thousands of cases leave no
  checkpoint database behind (~150 KB of checkpoints per ticket_triage case otherwise).
  Each case still gets its own thread id and the policy's `TierRunContext` as `context=`.
* Cases run concurrently on a thread pool (`concurrency`); each tier's own
  `max_concurrency` still bounds the calls a model receives at once, so with more workers
  than model slots a case's wall time includes waiting for a slot.
* A run that pauses at an interrupt (human review, confirmation, budget question) is not
  waited on: it is recorded as `needs_human` with the interrupt's payload. A graph that
  raises is recorded as `error` with the exception, and an evaluator that raises is a
  failed evaluation (`run_evaluator`); neither stops the other cases.
* Every finished case is appended to `results/<policy>.jsonl` by the worker that ran it,
  so an interrupted run keeps what finished and a rerun skips it.

Prompts are captured with a LangChain callback handler (LangGraph hands each node's
config, callbacks included, to the chat models a node invokes), one per node execution,
and matched to the node's model proposals in order, which is exact because a case's
thread runs one node at a time.
"""

from __future__ import annotations

import contextvars
import json
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tierflow.evals.datasets import Case, Dataset
from tierflow.evals.evaluators.base import EvaluationError, run_evaluator
from tierflow.evals.harness.policies import Policy
from tierflow.evals.harness.records import AttemptTrace, CaseRecord, ChatRole, ChatTurn, ResultStore, StepTrace
from tierflow.evals.harness.suite import GraphOutcome, OutcomeStatus, Suite
from tierflow.model_tiers import ConfigError
from tierflow.model_tiers.ledger import Verdict

__all__ = ["PromptRecorder", "RunCounts", "build_step_traces", "run_case", "run_cases", "to_chat_turns", "jsonable"]

_ESCALATION_EVENTS = frozenset({"escalate", "fallback"})
_ROLE_OF: dict[str, ChatRole] = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}


def jsonable(value: Any) -> Any:
    """A JSON-safe copy (pydantic models, tuples, odd types rendered as text)."""
    return json.loads(json.dumps(value, default=lambda o: o.model_dump(mode="json") if hasattr(o, "model_dump") else str(o)))


def to_chat_turns(messages: Sequence[BaseMessage]) -> list[ChatTurn]:
    """LangChain messages -> OpenAI chat-format turns (content as text)."""
    turns = []
    for message in messages:
        content = message.content if isinstance(message.content, str) else json.dumps(message.content)
        calls = None
        if isinstance(message, AIMessage) and message.tool_calls:
            calls = [
                {"id": c.get("id") or f"call_{i}", "type": "function", "function": {"name": c["name"], "arguments": json.dumps(c["args"])}}
                for i, c in enumerate(message.tool_calls)
            ]
        turns.append(ChatTurn(role=_ROLE_OF.get(message.type, "user"), content=content, tool_calls=calls))
    return turns


class PromptRecorder(BaseCallbackHandler):
    """Records the messages (and bound tools) of the chat-model calls of each graph task.

    A task is one execution of a node (one attempt of a step); LangGraph tags each call's
    metadata with the node and the superstep, so a provider that makes several calls for
    one attempt still maps to one attempt (its first call is kept).
    """

    def __init__(self) -> None:
        self._first_call: dict[tuple[str, Any], tuple[list[BaseMessage], list[dict[str, Any]] | None]] = {}
        self._lock = threading.Lock()

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: uuid.UUID,
        parent_run_id: uuid.UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        meta = metadata or {}
        node = meta.get("langgraph_node")
        if node is None:
            return
        task = meta.get("langgraph_checkpoint_ns") or meta.get("langgraph_step")
        tools = (kwargs.get("invocation_params") or {}).get("tools")
        with self._lock:
            self._first_call.setdefault((str(node), task), (list(messages[0]) if messages else [], jsonable(tools) if tools else None))

    def calls_of(self, node: str) -> list[tuple[list[BaseMessage], list[dict[str, Any]] | None]]:
        """The first call of each task of `node`, in the order the tasks ran."""
        with self._lock:
            return [call for (n, _), call in self._first_call.items() if n == node]


_Verdict = tuple[Verdict | None, str | None, dict[str, float] | None]


def _verdicts(values: Mapping[str, Any]) -> dict[tuple[str, int], _Verdict]:
    """(item id, attempt number) -> (verdict, reason, signals), from verdict events and the ledger."""
    found: dict[tuple[str, int], _Verdict] = {}
    for usage in values.get("ledger") or []:
        if usage.get("step") and usage.get("role") != "judge" and usage.get("verdict"):
            found[(usage["step"], int(usage.get("attempt") or 0))] = (usage["verdict"], usage.get("reason"), usage.get("signals"))
    for event in values.get("events") or []:
        if event.get("type") == "verdict" and event.get("item_id"):
            found[(event["item_id"], int(event.get("attempt") or 0))] = (event["verdict"], event.get("reason"), event.get("signals"))
    return found


def _truth(suite: Suite, node: str, value: Any, case: Case[Any, Any], model: str | None) -> bool | None:
    truth = suite.truth_for(node)
    if truth is None:
        return None
    try:
        return truth.correct_for(value, case, model)
    except Exception as err:  # a broken truth function must not pass for "unknown" silently
        raise EvaluationError(f"suite '{suite.name}': ground truth for '{node}' raised {type(err).__name__}: {err}") from err


def build_step_traces(
    suite: Suite,
    case: Case[Any, Any],
    values: Mapping[str, Any],
    proposals: Sequence[tuple[str, Mapping[str, Any]]],
    recorder: PromptRecorder,
    kinds: Mapping[str, str],
) -> list[StepTrace]:
    """One `StepTrace` per plan item that proposed something, in the order items ran."""
    verdicts = _verdicts(values)
    deciders = values.get("decided_by") or {}
    traces: dict[str, StepTrace] = {}
    model_proposals: dict[str, int] = {}
    for node, proposal in proposals:
        item_id = str(proposal.get("item_id"))
        trace = traces.setdefault(item_id, StepTrace(item_id=item_id, node=node, kind=kinds.get(node)))
        if proposal.get("tier") is not None:
            index = model_proposals.get(node, 0)
            model_proposals[node] = index + 1
            calls = recorder.calls_of(node)
            if trace.prompt is None and index < len(calls):
                messages, tools = calls[index]
                trace.prompt = to_chat_turns(messages[:2])
                # Only tool steps need the offered tools back (for the fine-tuning export);
                # a structured step's schema is not part of its chat transcript.
                trace.tools = tools if kinds.get(node) == "tool" else None
        number = int(proposal.get("attempt") or 0)
        verdict, reason, signals = verdicts.get((item_id, number), (None, None, None))
        value = proposal.get("value")
        trace.attempts.append(
            AttemptTrace(
                attempt=number,
                tier=proposal.get("tier"),
                value=jsonable(value),
                error_kind=proposal.get("error_kind"),
                error=proposal.get("error"),
                verdict=verdict,
                reason=reason,
                signals=signals,
                correct=(
                    None if proposal.get("tier") is None or proposal.get("error_kind") == "fault"
                    else _truth(suite, node, value, case, (proposal.get("usage") or {}).get("model"))
                ),
            )
        )
    for item_id, trace in traces.items():
        trace.decided_by = deciders.get(item_id)
    return list(traces.values())


class _OverTime(Exception):
    """A case ran past its time budget (recorded as the case's error, never raised out)."""


def run_case(
    graph: Any,
    suite: Suite,
    policy: Policy,
    case: Case[Any, Any],
    *,
    kinds: Mapping[str, str],
    resources: Mapping[str, Any] | None = None,
    time_budget_s: float | None = None,
) -> CaseRecord:
    """Run one case under one policy to its end (or its first interrupt) and grade it.

    With `time_budget_s`, a case still running past it is stopped at the end of the node it
    is in (closing the stream ends the run there) and recorded as an error saying so.
    """
    thread_id = f"eval:{policy.name}:{case.id}:{uuid.uuid4().hex[:8]}"
    recorder = PromptRecorder()
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}, "callbacks": [recorder]}
    proposals: list[tuple[str, Mapping[str, Any]]] = []
    values: dict[str, Any] = {}
    interrupt: dict[str, Any] | None = None
    error: str | None = None
    answered: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        if suite.prepare_case is not None:
            suite.prepare_case(resources, case)
        graph_input: Any = suite.to_input(case)
        while True:
            interrupt = None
            # closing(): leaving the loop early (over time) ends the run where it is.
            modes = ["updates", "values", "custom"]
            with closing(graph.stream(graph_input, config, context=policy.context, stream_mode=modes)) as stream:
                for mode, chunk in stream:
                    if time_budget_s is not None and time.perf_counter() - started > time_budget_s:
                        raise _OverTime(f"the case ran past its time budget of {time_budget_s:g} s (--case-timeout) and was stopped")
                    if mode == "values":
                        values = {k: v for k, v in chunk.items() if k != "__interrupt__"}
                    elif mode == "custom":
                        # Each attempt streams the candidate it handed the verifier.
                        if isinstance(chunk, Mapping) and chunk.get("type") == "proposal":
                            proposals.append((str(chunk.get("step")), {k: v for k, v in chunk.items() if k != "type"}))
                    elif "__interrupt__" in chunk:
                        update = chunk["__interrupt__"]
                        interrupt = jsonable(update[0].value) if update else {}
            answer = _auto_answer(suite, interrupt, len(answered))
            if answer is None:
                break
            answered.append({"interrupt": interrupt, "answer": jsonable(answer)})
            graph_input = Command(resume=answer)
    except _OverTime as err:
        error = str(err)
    except Exception as err:  # recorded as the case's status "error", with the traceback tail
        error = "".join(traceback.format_exception(err, limit=-3)).strip()[-4000:]
    finally:
        _forget_thread(graph, thread_id)
    wall = time.perf_counter() - started

    error_kind: Literal["configuration", "bug"] | None = None
    status: OutcomeStatus
    if error is not None:
        status = "error"
    elif interrupt is not None:
        status = "needs_human"
    else:
        ended = values.get("status") or "error"
        failure = values.get("failure") or {}
        match ended:
            case "done" | "failed" | "stopped" | "rejected":
                status = ended
            case "error":
                # The run stopped on a misconfigured tier or a crashed check or tool.
                status = "error"
                match failure.get("kind"):
                    case "configuration" | "bug" as kind:
                        error_kind = kind
                error = "\n".join(str(p) for p in (failure.get("reason"), failure.get("traceback")) if p) or "the run ended in an error"
            case _:
                error, status = f"the graph ended with status '{ended}' and no interrupt", "error"

    outcome = GraphOutcome(status=status, values=values, interrupt=interrupt, error=error, resources=resources)
    try:
        steps = build_step_traces(suite, case, values, proposals, recorder, kinds)
        output = jsonable(suite.to_output(outcome))
    except Exception as err:  # a suite bug: recorded, and the case's evaluations fail below
        steps, output = [], None
        error = (error + "\n" if error else "") + f"suite '{suite.name}' could not read the run: {type(err).__name__}: {err}"
        status = "error"
    evaluations = [run_evaluator(e, output, case) for e in suite.evaluators]
    return CaseRecord(
        case_id=case.id,
        policy=policy.name,
        status=status,
        thread_id=thread_id,
        wall_s=wall,
        output=output,
        evaluations=evaluations,
        ledger=jsonable(list(values.get("ledger") or [])),
        steps=steps,
        escalations=sum(1 for e in values.get("events") or [] if e.get("type") in _ESCALATION_EVENTS),
        interrupt=interrupt,
        answered=answered,
        error=error,
        error_kind=error_kind,
    )


# A graph that keeps asking after this many harness answers is left to a human.
MAX_AUTO_ANSWERS = 50


def _auto_answer(suite: Suite, interrupt: Mapping[str, Any] | None, answered: int) -> Any:
    """The suite's answer to the run's interrupt, or None to stop there."""
    if interrupt is None or suite.answer_interrupt is None or answered >= MAX_AUTO_ANSWERS:
        return None
    return suite.answer_interrupt(interrupt)


def _forget_thread(graph: Any, thread_id: str) -> None:
    """Drop a finished case's checkpoints (suites that answer interrupts use an in-memory saver)."""
    saver = getattr(graph, "checkpointer", None)
    if saver is not None and hasattr(saver, "delete_thread"):
        saver.delete_thread(thread_id)


@dataclass
class RunCounts:
    """How many cases ran, were skipped (already recorded) and ended in each status."""

    ran: int = 0
    skipped: int = 0
    statuses: dict[str, int] = field(default_factory=dict)


def _pending(
    dataset: Dataset[Any, Any], policies: Sequence[Policy], store: ResultStore, retry_errors: bool
) -> tuple[list[tuple[Policy, Case[Any, Any]]], int]:
    recorded = {p.name: store.load(p.name) for p in policies}
    jobs, skipped = [], 0
    # Case-major order: an interrupted run still compares every policy on the same cases.
    for case in dataset.cases:
        for policy in policies:
            previous = recorded[policy.name].get(case.id)
            if previous is not None and not (retry_errors and previous.status == "error"):
                skipped += 1
            else:
                jobs.append((policy, case))
    return jobs, skipped


def run_cases(
    graph: Any,
    suite: Suite,
    dataset: Dataset[Any, Any],
    policies: Sequence[Policy],
    store: ResultStore,
    *,
    kinds: Mapping[str, str],
    concurrency: int = 4,
    progress: bool = True,
    retry_errors: bool = False,
    resources: Mapping[str, Any] | None = None,
    on_record: Callable[[CaseRecord], None] | None = None,
    time_budget_s: float | None = None,
) -> RunCounts:
    """Run every (policy, case) pair not yet recorded in `store`, `concurrency` at a time."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    workers = min(concurrency, suite.max_concurrency or concurrency)
    jobs, skipped = _pending(dataset, policies, store, retry_errors)
    counts = RunCounts(skipped=skipped)
    lock = threading.Lock()

    def work(policy: Policy, case: Case[Any, Any]) -> CaseRecord:
        record = run_case(graph, suite, policy, case, kinds=kinds, resources=resources, time_budget_s=time_budget_s)
        store.append(record)
        if record.error_kind == "configuration":
            # Every other case would fail the same way (and the next tier would not be
            # tried): stop the eval with what to fix. --retry-errors reruns this case.
            raise ConfigError(f"case {case.id} under policy {policy.name}: {record.error}")
        with lock:
            counts.ran += 1
            counts.statuses[record.status] = counts.statuses.get(record.status, 0) + 1
        if on_record is not None:
            on_record(record)
        return record

    columns = (
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()
    )
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task(f"{suite.name}: {len(jobs)} runs ({skipped} already recorded)", total=len(jobs))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tierflow-eval")
        try:
            # Each case in a copy of this context: the ledger source named around the run
            # (and any scope) reaches the worker threads.
            futures = [pool.submit(contextvars.copy_context().run, work, policy, case) for policy, case in jobs]
            for future in as_completed(futures):
                record = future.result()
                bar.update(task, advance=1, description=f"{suite.name}: {record.policy} {record.case_id} -> {record.status}")
        except BaseException:
            # Ctrl-C: cases already running finish and are recorded; queued ones are dropped.
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    return counts

