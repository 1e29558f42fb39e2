"""order_agent suite: tau2-bench retail tasks, graded by database state as tau2-bench does.

Each task's customer request (reason for calling, what the customer knows, how they
behave; see `evals.datasets.tau2`) is the graph's one message: the eval is non-interactive,
there is no simulated customer to answer follow-up questions, and the harness answers
every write confirmation "yes" (the customer asked for the change; whether it was the
right change is exactly what the database check measures). Other interrupts (a human
review, a budget question) are left unanswered and the case is recorded as needs_human.

Every case starts from a fresh copy of the pristine retail database (`prepare_case`, one
case at a time). Graded here:

* ``db_state_match``: the database the run left hashes the same as a fresh copy on which
  the task's gold actions were replayed (`GoldReplay`); gold actions our tools refuse are
  skipped, as tau2's own replay leaves the state unchanged when a tool returns an error
  (the known refusals: look-ups the task scripts make fail on purpose, and task 105's
  exchange, which policy.md forbids; see tests/unit/test_retail_gold_actions.py);
* ``communicate_info``: every required string occurs in the agent's reply (tau2's
  substring check); judged only for tasks that require some;
* ``retail_task_success``: DB x COMMUNICATE, 0 when the run did not end normally (error,
  or left waiting for a human).

The tasks' own reward basis also names NL_ASSERTION (an LLM judge), which is not run here.
Verifier ground truth for the `change` step: a proposed write is right iff it equals one of
the task's gold writes that the tools accept (name and arguments).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tierflow.evals.datasets import Case, default_dataset_file
from tierflow.evals.datasets.tau2 import RetailTaskDataset, load_tau2_retail
from tierflow.evals.evaluators.base import EvaluationResult
from tierflow.evals.evaluators.retail import RetailOutcome, RetailTaskSuccess, communicate_info_check, db_state_match
from tierflow.evals.harness.suite import GraphOutcome, StepTruth, Suite
from tierflow.evals.suites.function_calling import BFCL
from tierflow.graphs.order_agent_checks import RESOURCE_KEY
from tierflow.model_tiers.home import home_dir
from tierflow.tools.retail import WRITE_TOOL_NAMES, RetailDB, RetailToolError, call_retail_tool, copy_retail_db

__all__ = ["SUITES", "TAU2_RETAIL", "GoldReplay", "GOLD", "order_output", "answer_confirmations", "change_is_correct", "pristine_db"]

_PRISTINE_LOCK = threading.Lock()
_WORKING_DB = "retail.sqlite"


def pristine_db() -> Path:
    """The untouched retail database the eval copies from: built once from the shared
    db.json under $TIERFLOW_HOME/evals (never the production retail.sqlite, which runs modify)."""
    path = home_dir() / "evals" / "tau2_retail-pristine.sqlite"
    with _PRISTINE_LOCK:
        RetailDB.open(path)
    return path


class GoldReplay:
    """The state hash of a fresh database after a task's gold actions, cached per task."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hashes: dict[tuple[str, str], str] = {}
        self._refused: dict[tuple[str, str], list[str]] = {}

    def replay(self, case: Case[Any, Any]) -> tuple[str, list[str]]:
        """(state hash, ids of the gold actions the tools refused) for `case`."""
        source = pristine_db()
        key = (str(source), case.id)
        with self._lock:
            if key in self._hashes:
                return self._hashes[key], self._refused[key]
        with tempfile.TemporaryDirectory(prefix="tau2-gold-") as folder:
            db = RetailDB(copy_retail_db(source, Path(folder) / "gold.sqlite"))
            refused: list[str] = []
            with db.connection() as conn:
                for action in case.expected.actions:
                    try:
                        call_retail_tool(conn, action.name, dict(action.arguments), idempotency_key=f"gold:{case.id}:{action.action_id}")
                    except RetailToolError:  # tau2 answers these with an error and no state change
                        refused.append(action.action_id)
            digest = db.state_hash()
        with self._lock:
            self._hashes[key], self._refused[key] = digest, refused
        return digest, refused

    def hash(self, case: Case[Any, Any]) -> str:
        return self.replay(case)[0]


GOLD = GoldReplay()


def _open_resources(run_dir: Path) -> Mapping[str, Any]:
    return {RESOURCE_KEY: RetailDB(copy_retail_db(pristine_db(), run_dir / _WORKING_DB))}


def _prepare_case(resources: Mapping[str, Any] | None, case: Case[Any, Any]) -> None:
    db = (resources or {}).get(RESOURCE_KEY)
    if not isinstance(db, RetailDB):
        raise TypeError(f"the order_agent suite needs resources['{RESOURCE_KEY}'] (a RetailDB), got {type(db).__name__}")
    copy_retail_db(pristine_db(), db.path)


def answer_confirmations(interrupt: Mapping[str, Any]) -> str | None:
    """'yes' to a write confirmation; anything else is left to a human."""
    return "yes" if interrupt.get("type") == "confirm" else None


def _load(path: Path | None, limit: int | None, seed: int) -> RetailTaskDataset:
    return load_tau2_retail(path if path is not None else default_dataset_file("tau2_retail"), limit=limit, seed=seed)


def _to_input(case: Case[Any, Any]) -> dict[str, Any]:
    return {"request": case.inputs.customer_request}


def order_output(outcome: GraphOutcome) -> dict[str, Any]:
    """The reply, the executed writes and the hash of the database the run left."""
    db = (outcome.resources or {}).get(RESOURCE_KEY)
    final = outcome.final
    reply = final.get("reply")
    return {
        "status": outcome.status,
        "db_hash": db.state_hash() if isinstance(db, RetailDB) else None,
        "agent_messages": [reply] if isinstance(reply, str) else [],
        "terminated_normally": outcome.status in ("done", "failed", "stopped", "rejected"),
        "writes": [{"tool": a["tool"], "args": a["args"], "status": a["status"]} for a in final.get("actions") or [] if a.get("write")],
        "plan_source": final.get("plan_source"),
        "stopped_at": outcome.stopped_at,
    }


def _outcome(output: Any) -> RetailOutcome:
    data = output if isinstance(output, Mapping) else {}
    return RetailOutcome(
        db_hash=data.get("db_hash"),
        agent_messages=list(data.get("agent_messages") or []),
        terminated_normally=bool(data.get("terminated_normally")),
    )


class TaskSuccess:
    name = "retail_task_success"

    def evaluate(self, output: Any, case: Case[Any, Any]) -> EvaluationResult:
        return RetailTaskSuccess(gold_db_hash=GOLD.hash).evaluate(_outcome(output), case)


class DbStateMatch:
    name = "db_state_match"

    def evaluate(self, output: Any, case: Case[Any, Any]) -> EvaluationResult:
        digest, refused = GOLD.replay(case)
        result = db_state_match(digest, _outcome(output).db_hash)
        return result.model_copy(update={"details": {**result.details, "gold_refused": refused}})


class CommunicateInfo:
    name = "communicate_info"

    def evaluate(self, output: Any, case: Case[Any, Any]) -> EvaluationResult:
        if not case.expected.communicate_info:
            return EvaluationResult(name=self.name, score=0.0, passed=None, reason="the task requires no information")
        return communicate_info_check(_outcome(output).agent_messages, case.expected.communicate_info)


def change_is_correct(value: Any, case: Case[Any, Any]) -> bool:
    """A change-step tool call is right iff it is one of the gold writes the tools accept."""
    if not isinstance(value, Mapping) or value.get("name") not in WRITE_TOOL_NAMES:
        return False
    refused = set(GOLD.replay(case)[1])
    return any(
        action.name == value["name"] and dict(action.arguments) == dict(value.get("args") or {})
        for action in case.expected.actions
        if action.action_id not in refused
    )


TAU2_RETAIL = Suite(
    name="tau2_retail",
    graph="order_agent",
    description=(
        "tau2-bench retail tasks, non-interactive: the task's customer request as one message, confirmations answered "
        "yes; success = the database state equals the gold replay's, and the reply says the required information."
    ),
    dataset="tau2_retail",
    load=_load,
    to_input=_to_input,
    to_output=order_output,
    evaluators=(TaskSuccess(), DbStateMatch(), CommunicateInfo()),
    primary="retail_task_success",
    truths=(StepTruth("change", change_is_correct, "a change call is right iff it equals a gold write the tools accept"),),
    open_resources=_open_resources,
    max_concurrency=1,
    prepare_case=_prepare_case,
    answer_interrupt=answer_confirmations,
    metric_notes={
        "retail_task_success": "DB x COMMUNICATE (tau-bench's deterministic basis); 0 for a run left waiting for a human or in error",
        "db_state_match": "the database the run left equals a fresh copy with the gold actions replayed",
        "communicate_info": "every required string is in the reply (only tasks that require some)",
    },
    notes=(
        "Non-interactive: tau2 simulates a customer who answers questions over many turns; here the agent gets the "
        "customer's whole script at once (minus unknown_info) and no follow-up, so tasks that hinge on dialogue are harder.",
        "Write confirmations are answered 'yes' by the harness (recorded per case in `answered`).",
        "NL_ASSERTION (in every task's reward basis) needs an LLM judge and is not run; the score is DB x COMMUNICATE.",
        "Cases run one at a time, each on a fresh copy of the pristine database in the run folder.",
    ),
)

# The order agent's tool caller on tools it has never seen: BFCL through the function_calling
# graph (`tierflow eval order_agent --dataset .../bfcl/BFCL_v4_multiple.json` picks it).
SUITES: tuple[Suite, ...] = (TAU2_RETAIL, BFCL)
