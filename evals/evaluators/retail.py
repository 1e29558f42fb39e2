"""tau2-bench retail task success: final database state, and what the agent told the user.

Upstream, a task passes when the database the agent's episode left behind hashes the same
as a fresh database on which the gold actions were replayed (any path to the same end
state passes), times the other checks in ``reward_basis``. Replaying and hashing belong to
the retail tools; this module only compares what it is given, so it takes the gold hash
as a callable and the episode's result as a ``RetailOutcome``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from tierflow.evals.datasets.tau2 import RetailTaskCase
from tierflow.model_tiers.errors import ConfigError

from .base import EvaluationResult, verdict

__all__ = ["RetailOutcome", "db_state_match", "communicate_info_check", "RetailTaskSuccess", "DETERMINISTIC_CHECKS"]

# The checks that need no LLM judge. NL_ASSERTION (judge) and ACTION (unused for retail) are not here.
DETERMINISTIC_CHECKS = frozenset({"DB", "COMMUNICATE"})


class RetailOutcome(BaseModel):
    """What one agent episode produced, as the runner reports it."""

    model_config = ConfigDict(frozen=True)

    db_hash: str | None
    agent_messages: list[str] = Field(default_factory=list)
    # False when the episode hit max steps or crashed: upstream scores such episodes 0.
    terminated_normally: bool = True


def db_state_match(expected_hash: str, actual_hash: str | None) -> EvaluationResult:
    """Pass when the episode's final database hash equals the gold-replay hash."""
    return verdict(
        "db_state_match",
        actual_hash is not None and actual_hash == expected_hash,
        "final database state differs from the gold replay"
        if actual_hash is not None
        else "the episode reported no final database state",
        expected_hash=expected_hash,
        actual_hash=actual_hash,
    )


def communicate_info_check(texts: Iterable[str], required: Sequence[str]) -> EvaluationResult:
    """Pass when every required string occurs in some text, as tau2 checks it: case-
    insensitive substring of the text with its commas removed ("$1,234" says "1234")."""
    haystacks = [text.lower().replace(",", "") for text in texts]
    missing = [info for info in required if not any(info.lower() in haystack for haystack in haystacks)]
    return verdict(
        "communicate_info",
        not missing,
        f"the agent never said: {missing}",
        required=list(required),
        missing=missing,
    )


@dataclass(frozen=True)
class RetailTaskSuccess:
    """Binary task reward: the product of the chosen checks.

    ``gold_db_hash(case)`` returns the hash of a fresh database after replaying the
    case's gold actions (supplied by the retail tools). ``checks`` defaults to the
    deterministic original tau-bench basis DB x COMMUNICATE; the tasks' own
    ``reward_basis`` asks for NL_ASSERTION, which needs an LLM judge this evaluator does
    not provide, so it is refused rather than silently counted as passed.
    """

    gold_db_hash: Callable[[RetailTaskCase], str]
    checks: tuple[str, ...] = ("DB", "COMMUNICATE")
    name: str = "retail_task_success"

    def __post_init__(self) -> None:
        unsupported = sorted(set(self.checks) - DETERMINISTIC_CHECKS)
        if unsupported or not self.checks:
            raise ConfigError(
                f"RetailTaskSuccess checks must be a non-empty subset of {sorted(DETERMINISTIC_CHECKS)}; "
                f"got {list(self.checks)} ({unsupported} need an LLM judge or do not apply to retail)"
            )

    def evaluate(self, output: RetailOutcome, case: RetailTaskCase) -> EvaluationResult:
        if not output.terminated_normally:
            return verdict(self.name, False, "the episode did not end normally (max steps or error)")
        parts: dict[str, EvaluationResult] = {}
        if "DB" in self.checks:
            parts["DB"] = db_state_match(self.gold_db_hash(case), output.db_hash)
        if "COMMUNICATE" in self.checks:
            parts["COMMUNICATE"] = communicate_info_check(output.agent_messages, case.expected.communicate_info)
        failed = [f"{check}: {part.reason}" for check, part in parts.items() if not part.passed]
        return verdict(
            self.name,
            not failed,
            "; ".join(failed),
            checks={check: part.model_dump() for check, part in parts.items()},
        )
