"""The provider contract: what every provider kind must do for tierflow, as one suite.

A provider passes when a tier of its kind, called through `TierRegistry` as every step
calls it, does what the escalation engine relies on:

* structured output: a reply validated into the requested schema;
* tools: a call of an offered tool when one fits, and a reply in text (no call) when none
  does, the model's own choice in both;
* usage: one ledger record per call, with the tier's prices applied to the counts;
* log-probabilities, where the kind declares them: the answer's confidence;
* errors by meaning: a missing model (HTTP 404) or a refused key (401) is a configuration
  error, never a fallback; a rate limit (429), a server error (5xx) or a timeout is a
  fallback (`TierUnreachable`), accounted when the request reached the server.

A case applies where the provider declares the capability (`ProviderCapabilities`, and
the tier's own ``capabilities``) and where the harness can produce the fault; otherwise
it is skipped with the reason. Run it against a provider of your own::

    from tierflow.model_tiers.conformance import ProviderHarness, run_contract

    harness = ProviderHarness(name="my_llm", tier={"name": "t", "provider": "my_llm", "model": "m-1"})
    report = run_contract(harness)
    print(report.summary())
    assert report.passed, report.summary()

or, in pytest, one test per case (`CASES`): ``case.skip_reason(harness)`` then
``case.check(harness)``.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.tools import BaseTool, tool
from pydantic import BaseModel

from tierflow.model_tiers.config import config_from_mapping
from tierflow.model_tiers.errors import ConfigError, TierMisconfigured, TierUnreachable
from tierflow.model_tiers.ledger import Usage, summarize
from tierflow.model_tiers.providers.catalog import ProviderCapabilities, get_provider
from tierflow.model_tiers.registry import ModelReply, TierRegistry
from tierflow.model_tiers.spec import ROLES, TierSpec

__all__ = [
    "Fault",
    "FAULTS",
    "ContractTriage",
    "lookup_order",
    "refund_payment",
    "ContractPrompts",
    "ProviderHarness",
    "ContractCase",
    "CASES",
    "CaseResult",
    "ContractReport",
    "run_contract",
]

# 404 / 401: the tier's own configuration is wrong. 429 / 500 / timeout: the endpoint is
# unavailable for now.
Fault = Literal["404", "401", "429", "500", "timeout"]
FAULTS: tuple[Fault, ...] = ("404", "401", "429", "500", "timeout")
_CONFIG_FAULTS: frozenset[str] = frozenset({"404", "401"})


class ContractTriage(BaseModel):
    """The default structured-output probe: a support ticket's label and urgency."""

    label: Literal["billing", "shipping", "account", "other"]
    urgent: bool


@tool
def lookup_order(order_id: str) -> str:
    """Look up the status of a customer order by its order id."""
    return order_id


@tool
def refund_payment(order_id: str, amount: float) -> str:
    """Refund an amount of money paid for an order."""
    return f"{order_id}:{amount}"


@dataclass(frozen=True)
class ContractPrompts:
    """What each case asks. The defaults suit a general chat model; a harness replaces
    them where its provider needs other input (a replay tier answers only the questions
    of its recording)."""

    schema: type[BaseModel] = ContractTriage
    structured: Sequence[BaseMessage] = (
        SystemMessage("Classify the support ticket."),
        HumanMessage("My parcel for order A-1234 has not moved for six days. Where is it?"),
    )
    text: Sequence[BaseMessage] = (HumanMessage("Say hello to the customer in one short sentence."),)
    tools: Sequence[BaseTool] = (lookup_order, refund_payment)
    # A request one offered tool fits, and one that none does.
    tool_call: Sequence[BaseMessage] = (HumanMessage("What is the status of order A-1234?"),)
    decline: Sequence[BaseMessage] = (HumanMessage("Translate 'good morning' into French."),)


FaultTier = Callable[[Fault], AbstractContextManager[Mapping[str, Any]]]


@dataclass
class ProviderHarness:
    """One provider under test: a healthy tier of its kind, and what the harness can do.

    `tier`: the tier's table, as in a tiers file. `reports_tokens`: the provider reports
    token counts (False: the ledger estimates them, `Usage.tokens_estimated`).
    `fault_tier(fault)`: a context in which a tier table fails that way (a server that
    answers HTTP 429, a timeout shorter than the reply...), for each fault in `faults`.
    `not_applicable`: case name -> why it does not apply to this provider beyond what
    its capabilities say (an in-process model has no API key to refuse).
    `check_usage`: further checks of the usage record (what a recording says it cost).
    `capabilities`: what the provider kind declares; by default, its registered ones.
    """

    name: str
    tier: Mapping[str, Any]
    prompts: ContractPrompts = field(default_factory=ContractPrompts)
    reports_tokens: bool = True
    fault_tier: FaultTier | None = None
    faults: frozenset[Fault] = frozenset()
    not_applicable: Mapping[str, str] = field(default_factory=dict)
    check_usage: Callable[[Usage, ModelReply], None] | None = None
    capabilities: ProviderCapabilities | None = None
    env: Mapping[str, str] | None = None
    _registry: TierRegistry | None = field(default=None, init=False, repr=False)

    def declared(self) -> ProviderCapabilities:
        return self.capabilities or get_provider(str(self.tier["provider"])).capabilities

    def registry(self, tier: Mapping[str, Any] | None = None) -> TierRegistry:
        """A registry whose one tier is `tier` (default: the harness's healthy tier, built once)."""
        if tier is None and self._registry is not None:
            return self._registry
        table = dict(self.tier if tier is None else tier)
        config = config_from_mapping({"tiers": [table], "roles": dict.fromkeys(ROLES, table["name"])}, source=f"harness {self.name}")
        registry = TierRegistry(config, env=self.env)
        if tier is None:
            self._registry = registry
        return registry

    def spec(self) -> TierSpec:
        return self.registry().spec(str(self.tier["name"]))

    def call(self, messages: Sequence[BaseMessage], **kwargs: Any) -> ModelReply:
        return self.registry().call(str(self.tier["name"]), list(messages), **kwargs)


# -- the cases ---------------------------------------------------------------------------


def _check_structured(harness: ProviderHarness) -> None:
    schema = harness.prompts.schema
    reply = harness.call(harness.prompts.structured, schema=schema)
    assert isinstance(reply.value, schema), f"expected a {schema.__name__}, got {reply.value!r}"
    assert isinstance(reply.message, AIMessage)
    assert reply.usage.error is None, reply.usage


def _tool_names(harness: ProviderHarness) -> dict[str, BaseTool]:
    return {t.name: t for t in harness.prompts.tools}


def _check_tool_call(harness: ProviderHarness) -> None:
    reply = harness.call(harness.prompts.tool_call, tools=list(harness.prompts.tools), tool_choice="auto")
    offered = _tool_names(harness)
    assert reply.value, f"the model answered without a tool call: {reply.message.content!r}"
    for call in reply.value:
        assert call["name"] in offered, f"a call of '{call['name']}', which was not offered ({sorted(offered)})"
        schema = offered[call["name"]].args_schema
        assert isinstance(schema, type) and issubclass(schema, BaseModel)
        schema.model_validate(call["args"])


def _check_decline(harness: ProviderHarness) -> None:
    reply = harness.call(harness.prompts.decline, tools=list(harness.prompts.tools), tool_choice="auto")
    assert reply.value == [], f"the model called {[c['name'] for c in reply.value]} where no tool fits"
    content = reply.message.content
    assert isinstance(content, str) and content.strip(), f"no call and no text either: {content!r}"


def _check_usage(harness: ProviderHarness) -> None:
    spec = harness.spec()
    reply = harness.call(harness.prompts.text)
    usage = reply.usage
    assert (usage.tier, usage.provider, usage.model) == (spec.name, spec.provider, spec.model_label), usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0, usage
    assert usage.tokens_estimated is not harness.reports_tokens, (
        f"tokens_estimated={usage.tokens_estimated}, but the harness says the provider "
        f"{'reports' if harness.reports_tokens else 'does not report'} token counts"
    )
    assert abs(usage.cost_usd - spec.cost(usage.input_tokens, usage.output_tokens)) < 1e-12, usage
    assert usage.latency_s >= 0 and usage.error is None, usage
    ledger = summarize([usage.model_dump()])
    [row] = ledger.per_tier
    assert (row.tier, row.calls, row.input_tokens, row.output_tokens) == (spec.name, 1, usage.input_tokens, usage.output_tokens)
    assert ledger.cost_usd == usage.cost_usd
    if harness.check_usage is not None:
        harness.check_usage(usage, reply)


def _check_logprobs(harness: ProviderHarness) -> None:
    reply = harness.call(harness.prompts.text)
    confidence = reply.usage.confidence
    assert confidence is not None, "no confidence: the provider's token log-probabilities did not reach the ledger"
    assert 0.0 < confidence <= 1.0, confidence


def _check_fault(fault: Fault) -> Callable[[ProviderHarness], None]:
    def check(harness: ProviderHarness) -> None:
        assert harness.fault_tier is not None
        with harness.fault_tier(fault) as table:
            registry = harness.registry(table)
            name = str(table["name"])
            try:
                registry.call(name, list(harness.prompts.text))
            except (ConfigError, TierUnreachable) as err:
                caught: Exception = err
            else:
                raise AssertionError(f"a {fault} fault was answered as a success")
            if fault in _CONFIG_FAULTS:
                assert isinstance(caught, ConfigError), f"expected a configuration error, got {caught!r}"
                if isinstance(caught, TierMisconfigured):
                    assert caught.status == int(fault), caught.status
                assert registry.cooldown_left(name) == 0, "a configuration error must not cool the tier down"
                return
            assert isinstance(caught, TierUnreachable), f"expected a fallback (TierUnreachable), got {caught!r}"
            usage = caught.usage
            assert isinstance(usage, Usage) and usage.error and usage.output_tokens == 0, (
                f"a request that reached the server is accounted: {usage!r}"
            )
            spec = registry.spec(name)
            if harness.declared().served and spec.cooldown_s > 0:
                assert registry.cooldown_left(name) > 0, "an unavailable server's tier cools down"

    return check


@dataclass(frozen=True)
class ContractCase:
    """One clause of the contract, and when it applies."""

    name: str
    description: str
    run: Callable[[ProviderHarness], None]
    applies: Callable[[ProviderHarness], str | None]

    def skip_reason(self, harness: ProviderHarness) -> str | None:
        """Why this case does not apply to `harness` (None: it applies)."""
        return harness.not_applicable.get(self.name) or self.applies(harness)

    def check(self, harness: ProviderHarness) -> None:
        """Run the case; raises AssertionError (or the provider's error) when it fails."""
        self.run(harness)


def _needs_structured(harness: ProviderHarness) -> str | None:
    if not harness.declared().json_schema:
        return "the provider declares no structured output"
    if harness.spec().capabilities.structured_output == "none":
        return 'the tier declares structured_output = "none"'
    return None


def _needs_tools(harness: ProviderHarness) -> str | None:
    if not harness.declared().tools:
        return "the provider declares no tool calls"
    if not harness.spec().capabilities.tools:
        return "the tier declares tools = false"
    return None


def _needs_logprobs(harness: ProviderHarness) -> str | None:
    if not harness.declared().logprobs:
        return "the provider declares no token log-probabilities"
    if not harness.spec().logprobs:
        return "the tier sets logprobs = false"
    return None


def _needs_fault(fault: Fault) -> Callable[[ProviderHarness], str | None]:
    def applies(harness: ProviderHarness) -> str | None:
        if harness.fault_tier is None or fault not in harness.faults:
            return f"the harness produces no {fault} fault for this provider"
        return None

    return applies


def _always(harness: ProviderHarness) -> str | None:
    return None


_FAULT_MEANING = {
    "404": "a missing model (HTTP 404) is a configuration error, not a fallback",
    "401": "a refused key (HTTP 401) is a configuration error, not a fallback",
    "429": "a rate limit (HTTP 429) falls back, accounted",
    "500": "a server error (HTTP 5xx) falls back, accounted",
    "timeout": "a timeout falls back, accounted",
}

CASES: tuple[ContractCase, ...] = (
    ContractCase("structured_output", "a reply validated into the requested schema", _check_structured, _needs_structured),
    ContractCase("tool_call", "a call of an offered tool, when one fits", _check_tool_call, _needs_tools),
    ContractCase("tool_decline", "a reply in text, no call, when no offered tool fits", _check_decline, _needs_tools),
    ContractCase("usage", "one ledger record per call, priced at the tier's rates", _check_usage, _always),
    ContractCase("logprobs", "the answer's confidence from token log-probabilities", _check_logprobs, _needs_logprobs),
    *(ContractCase(f"error_{fault}", _FAULT_MEANING[fault], _check_fault(fault), _needs_fault(fault)) for fault in FAULTS),
)


# -- running the suite outside pytest ------------------------------------------------------


@dataclass(frozen=True)
class CaseResult:
    case: str
    outcome: Literal["passed", "failed", "skipped"]
    detail: str = ""


@dataclass(frozen=True)
class ContractReport:
    provider: str
    results: tuple[CaseResult, ...]

    @property
    def passed(self) -> bool:
        return not any(r.outcome == "failed" for r in self.results)

    def summary(self) -> str:
        marks = {"passed": "ok  ", "failed": "FAIL", "skipped": "skip"}
        lines = [f"provider contract: {self.provider}"]
        for result in self.results:
            detail = f": {result.detail.strip().splitlines()[-1]}" if result.detail else ""
            lines.append(f"  {marks[result.outcome]} {result.case}{detail}")
        passed = sum(1 for r in self.results if r.outcome == "passed")
        applied = sum(1 for r in self.results if r.outcome != "skipped")
        lines.append(f"  {passed}/{applied} applicable cases passed")
        return "\n".join(lines)


def run_contract(harness: ProviderHarness, cases: Sequence[ContractCase] = CASES) -> ContractReport:
    """Every case against `harness`; a failing case is recorded with its traceback, and the
    others still run."""
    results: list[CaseResult] = []
    for case in cases:
        reason = case.skip_reason(harness)
        if reason is not None:
            results.append(CaseResult(case.name, "skipped", reason))
            continue
        try:
            case.check(harness)
        except Exception:  # a case's failure is the report's content, not the runner's end
            results.append(CaseResult(case.name, "failed", traceback.format_exc()))
        else:
            results.append(CaseResult(case.name, "passed"))
    return ContractReport(harness.name, tuple(results))
