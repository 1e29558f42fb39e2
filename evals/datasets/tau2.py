"""Multi-step order management: tau2-bench retail tasks.

A task is a script for a simulated customer plus the evaluation criteria. The customer
request handed to the graph is the scenario's reason for calling, what the customer
knows, and how they behave; ``unknown_info`` stays with the customer script (the agent
must not be told what the customer cannot say). Grading is by database state (replay the
gold actions on a fresh DB, compare hashes) and by what the agent communicates; both are
in ``evals.evaluators``, the replay belongs to the retail tools.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tierflow.tools.retail import RETAIL_TOOLS, WRITE_TOOL_NAMES

from ._files import existing_file, read_json
from .cases import Case, Dataset, DatasetFormatError, DatasetSource, FrozenModel

__all__ = [
    "READ_ONLY_RETAIL_TOOLS",
    "UserInstructions",
    "GoldAction",
    "RetailTaskInputs",
    "RetailTaskExpected",
    "RetailTaskCase",
    "RetailTaskDataset",
    "load_tau2_retail",
]

# The tau2 retail tools that leave the database unchanged: the project's tools are the
# single source of which tools write.
READ_ONLY_RETAIL_TOOLS: frozenset[str] = frozenset(RETAIL_TOOLS) - WRITE_TOOL_NAMES


class UserInstructions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    reason_for_call: str
    known_info: str | None = None
    unknown_info: str | None = None
    task_instructions: str | None = None
    domain: str | None = None


class GoldAction(FrozenModel):
    """One tool call of the gold trajectory."""

    action_id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    # Upstream: the argument names compared by the ACTION check ([] = name only; None = all).
    compare_args: list[str] | None = None


class RetailTaskInputs(FrozenModel):
    task_id: str
    customer_request: str
    instructions: UserInstructions
    persona: str | None = None


class RetailTaskExpected(FrozenModel):
    actions: list[GoldAction]
    communicate_info: list[str] = Field(default_factory=list)
    nl_assertions: list[str] = Field(default_factory=list)
    # Which checks gate the reward upstream (DB, COMMUNICATE, NL_ASSERTION, ACTION).
    reward_basis: list[str] = Field(default_factory=lambda: ["DB", "COMMUNICATE"])

    @property
    def writes(self) -> list[GoldAction]:
        """The gold actions that change the database (diagnostics: which write was missed)."""
        return [action for action in self.actions if action.name not in READ_ONLY_RETAIL_TOOLS]


RetailTaskCase = Case[RetailTaskInputs, RetailTaskExpected]
RetailTaskDataset = Dataset[RetailTaskInputs, RetailTaskExpected]


def _customer_request(instructions: UserInstructions) -> str:
    parts = [instructions.reason_for_call, instructions.known_info, instructions.task_instructions]
    return "\n\n".join(part.strip() for part in parts if part and part.strip())


def _task_case(path: Path, index: int, task: Any) -> RetailTaskCase:
    if not isinstance(task, dict) or "id" not in task:
        raise DatasetFormatError(path, "each task must be an object with an id", row=index)
    task_id = str(task["id"])
    scenario = task.get("user_scenario") or {}
    criteria = task.get("evaluation_criteria")
    if not isinstance(scenario.get("instructions"), dict) or not isinstance(criteria, dict):
        raise DatasetFormatError(
            path, f"task {task_id!r} lacks user_scenario.instructions or evaluation_criteria", row=index
        )
    instructions = UserInstructions.model_validate(scenario["instructions"])
    expected = RetailTaskExpected(
        actions=[GoldAction.model_validate(action) for action in criteria.get("actions") or []],
        communicate_info=list(criteria.get("communicate_info") or []),
        nl_assertions=list(criteria.get("nl_assertions") or []),
        # Absent in the original tau2 release, where the default was DB x COMMUNICATE.
        **({"reward_basis": list(criteria["reward_basis"])} if criteria.get("reward_basis") else {}),
    )
    description = task.get("description") or {}
    return RetailTaskCase(
        id=f"tau2_retail-{task_id}",
        inputs=RetailTaskInputs(
            task_id=task_id,
            customer_request=_customer_request(instructions),
            instructions=instructions,
            persona=scenario.get("persona"),
        ),
        expected=expected,
        metadata={
            "purpose": description.get("purpose") if isinstance(description, dict) else None,
            "issues": [issue.get("title") for issue in task.get("issues") or [] if isinstance(issue, dict)],
            "has_initial_state": task.get("initial_state") is not None,
        },
    )


def load_tau2_retail(
    path: str | Path,
    *,
    limit: int | None = None,
    seed: int = 0,
) -> RetailTaskDataset:
    """A tau2 retail tasks JSON list (``tasks_train.json``, ``tasks.json``, ...)."""
    json_path = existing_file(path, "tau2 retail tasks JSON")
    tasks = read_json(json_path)
    if not isinstance(tasks, list):
        raise DatasetFormatError(json_path, "expected a JSON list of tasks")
    cases = [_task_case(json_path, index, task) for index, task in enumerate(tasks)]
    db_path = json_path.with_name("db.json")
    dataset = RetailTaskDataset(
        name="tau2_retail",
        cases=cases,
        source=DatasetSource(path=str(json_path), format="tau2-tasks-json"),
        metadata={"db_path": str(db_path) if db_path.is_file() else None},
    )
    return dataset.sample(limit, seed)
