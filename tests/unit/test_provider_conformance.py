"""The provider contract's runner (tierflow.model_tiers.conformance) at unit speed: a
conforming scripted provider passes, and a provider of a user's own that breaks a clause
is reported failing on exactly that clause."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage

from tierflow.model_tiers import FunctionProvider, ProviderCapabilities, TierSpec, register_provider
from tierflow.model_tiers.conformance import CASES, Fault, ProviderHarness, run_contract
from tierflow.model_tiers.providers import unregister_provider
from tierflow.model_tiers.testing import ScriptedChatModel, tool_call

SCRIPTS = "tests.integration.contract_scripts"
ALL_FAULTS: frozenset[Fault] = frozenset({"404", "401", "429", "500", "timeout"})


def scripted_harness() -> ProviderHarness:
    table = {"name": "t", "provider": "scripted", "model": "m", "options": {"function": f"{SCRIPTS}:reply"}}

    @contextmanager
    def fault_tier(fault: Fault) -> Iterator[Mapping[str, Any]]:
        yield {**table, "name": f"t-{fault}", "options": {"function": f"{SCRIPTS}:fault_{fault}"}}

    return ProviderHarness(name="scripted", tier=table, fault_tier=fault_tier, faults=ALL_FAULTS)


def test_a_conforming_provider_passes_every_case_it_declares() -> None:
    report = run_contract(scripted_harness())
    outcomes = {r.case: r.outcome for r in report.results}
    assert report.passed, report.summary()
    assert outcomes["logprobs"] == "skipped"  # the scripted kind declares none
    assert all(outcomes[c.name] == "passed" for c in CASES if c.name != "logprobs")
    assert "9/9 applicable cases passed" in report.summary()


def _always_calls(messages: list[BaseMessage], tools: Sequence[dict[str, Any]]) -> Any:
    if tools:
        return tool_call(tools[0]["function"]["name"], {"order_id": "A-1234"})
    return "Hello."


def _eager_caller(spec: TierSpec, env: Mapping[str, str]) -> BaseChatModel:
    """A provider whose model calls the first offered tool whatever it is asked."""
    return ScriptedChatModel(replies=_always_calls, model=spec.model)


@pytest.fixture
def eager_provider() -> Iterator[str]:
    register_provider("eager", FunctionProvider(_eager_caller, ProviderCapabilities(local=True, served=False)))
    yield "eager"
    unregister_provider("eager")


def test_a_provider_that_always_calls_fails_the_decline_clause_only(eager_provider: str) -> None:
    harness = ProviderHarness(name=eager_provider, tier={"name": "t", "provider": eager_provider, "model": "m"})
    report = run_contract(harness, [c for c in CASES if c.name in {"tool_call", "tool_decline", "usage"}])
    outcomes = {r.case: r.outcome for r in report.results}
    assert outcomes == {"tool_call": "passed", "tool_decline": "failed", "usage": "passed"}
    assert not report.passed
    assert "FAIL tool_decline: AssertionError: the model called ['lookup_order'] where no tool fits" in report.summary()


def test_faults_answered_as_successes_fail_every_error_clause() -> None:
    healthy = scripted_harness()

    @contextmanager
    def no_fault(fault: Fault) -> Iterator[Mapping[str, Any]]:
        yield {**healthy.tier, "name": f"t-{fault}"}

    harness = ProviderHarness(name="never-fails", tier=healthy.tier, fault_tier=no_fault, faults=ALL_FAULTS)
    report = run_contract(harness, [c for c in CASES if c.name.startswith("error_")])
    assert [r.outcome for r in report.results] == ["failed"] * 5
    assert all("was answered as a success" in r.detail for r in report.results)
