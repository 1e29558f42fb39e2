"""The provider contract (tierflow.model_tiers.conformance) against every built-in provider.

* scripted: replies from tests/integration/contract_scripts.py, faults raised as httpx's errors;
* embedded: SmolLM2-135M in this process (llama-cpp-python);
* openai: ChatOpenAI against a real `python -m llama_cpp.server` over the same GGUF file;
* ollama: ChatOllama against the Ollama-protocol server (tests/servers/ollama_protocol.py);
* replay: RouteLLM's GSM8K CSV from the shared datasets, and the same answers as recorded
  outcomes (JSONL) with recorded token counts and confidence.

Faults of served providers come from the loopback fault server (tests/servers/openai_faults.py,
which speaks both OpenAI's and Ollama's chat endpoints), and a missing model on the Ollama
path from the Ollama-protocol server itself. One test per (provider, case); a case that does
not apply is skipped with the reason.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel

from tests.servers.openai_faults import fault_server
from tests.servers.process import ServerProcess
from tierflow.evals.datasets.recorded_convert import convert_routellm_gsm8k
from tierflow.model_tiers import ModelReply, Usage
from tierflow.model_tiers.conformance import CASES, FAULTS, ContractCase, ContractPrompts, Fault, ProviderHarness
from tierflow.model_tiers.providers.recorded import write_recorded
from tierflow.tools.datasets import dataset_file

PRICES = {"price_input_per_mtok": 0.5, "price_output_per_mtok": 1.5}
SCRIPTS = "tests.integration.contract_scripts"
# What the served tiers' fault twins wait for before they call it a timeout.
FAULT_TIMEOUT_S = 1.0

# llama_cpp.server produces a tool call only for a named tool, so the openai tier declares
# tool_choice = "named" and a free choice is asked in two calls (tool_selection.py). Asked
# which function serves a request no function fits ('Translate ... into French', 'What is
# the capital of France?', 'Hello!'), SmolLM2-135M names lookup_order every time at
# temperature 0 ("none" is not among its five most likely tokens there), so a decline by
# the model's own choice cannot be observed on this path with this model.
OPENAI_NO_DECLINE = (
    "llama_cpp.server calls only named tools, so a free choice is a selection step first; "
    "SmolLM2-135M selects the first function even where none fits (measured), so no decline can be observed here"
)


def _served_faults(protocol_path: str, table: Mapping[str, Any]) -> Callable[[Fault], AbstractContextManager[Mapping[str, Any]]]:
    """Fault twins of a served tier: the same tier pointed at the loopback fault server."""

    @contextmanager
    def fault_tier(fault: Fault) -> Iterator[Mapping[str, Any]]:
        model = f"contract-{fault}"
        with fault_server(**{model: fault}) as server:
            base = server.base_url if protocol_path == "/v1" else server.base_url.removesuffix("/v1")
            yield {**table, "name": f"{table['name']}-{fault}", "model": model, "base_url": base, "timeout_s": FAULT_TIMEOUT_S}

    return fault_tier


# -- scripted -------------------------------------------------------------------------------


def scripted_harness() -> ProviderHarness:
    table = {"name": "scripted", "provider": "scripted", "model": "contract-script", "options": {"function": f"{SCRIPTS}:reply"}, **PRICES}

    @contextmanager
    def fault_tier(fault: Fault) -> Iterator[Mapping[str, Any]]:
        yield {**table, "name": f"scripted-{fault}", "options": {"function": f"{SCRIPTS}:fault_{fault}"}}

    return ProviderHarness(name="scripted", tier=table, fault_tier=fault_tier, faults=frozenset({"404", "401", "429", "500", "timeout"}))


# -- embedded -------------------------------------------------------------------------------


def embedded_harness() -> ProviderHarness:
    table = {
        "name": "embedded", "provider": "embedded", "model": "smollm2-135m-instruct", "max_output_tokens": 64,
        "timeout_s": 120, "options": {"n_ctx": 2048}, "capabilities": {"context_window": 2048}, **PRICES,
    }

    @contextmanager
    def fault_tier(fault: Fault) -> Iterator[Mapping[str, Any]]:
        if fault == "404":  # the in-process twin of a missing model: no such model file
            yield {**table, "name": "embedded-missing", "model": "no-such-model"}
        else:  # a deadline the decode passes at its first token
            yield {**table, "name": "embedded-timeout", "timeout_s": 0.001}

    in_process = "an in-process model: no server to refuse a key, limit the rate or fail with a 5xx"
    return ProviderHarness(
        name="embedded", tier=table, fault_tier=fault_tier, faults=frozenset({"404", "timeout"}),
        not_applicable={"error_401": in_process, "error_429": in_process, "error_500": in_process},
    )


# -- openai (llama_cpp.server) ----------------------------------------------------------------


def openai_harness(server: ServerProcess) -> ProviderHarness:
    table = {
        "name": "openai", "provider": "openai", "model": "smollm2", "base_url": f"{server.url}/v1", "api_key_env": "",
        "timeout_s": 300, "max_output_tokens": 64, "cooldown_s": 5.0, **PRICES,
        "capabilities": {"tools": True, "structured_output": "function_calling", "tool_choice": "named", "context_window": 2048},
    }
    return ProviderHarness(
        name="openai", tier=table, fault_tier=_served_faults("/v1", table), faults=frozenset({"404", "401", "429", "500", "timeout"}),
        not_applicable={"tool_decline": OPENAI_NO_DECLINE},
    )


# -- ollama (the Ollama-protocol server) --------------------------------------------------------


def ollama_harness(server: ServerProcess, model: str) -> ProviderHarness:
    table = {
        "name": "ollama", "provider": "ollama", "model": model, "base_url": server.url, "timeout_s": 300,
        "max_output_tokens": 64, "cooldown_s": 5.0, **PRICES,
        "capabilities": {"tools": True, "structured_output": "json_schema", "context_window": 2048},
    }
    faulty = _served_faults("/api", table)

    @contextmanager
    def fault_tier(fault: Fault) -> Iterator[Mapping[str, Any]]:
        if fault == "404":  # the Ollama-protocol server itself: a model it does not serve
            yield {**table, "name": "ollama-missing", "model": "no-such-model:7b"}
            return
        with faulty(fault) as tier:
            yield tier

    return ProviderHarness(name="ollama", tier=table, fault_tier=fault_tier, faults=frozenset({"404", "401", "429", "500", "timeout"}))


# -- replay ---------------------------------------------------------------------------------------

MIXTRAL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
PARSER = "tierflow.agents.numbers:extract_final_number"
GSM8K = ("routellm_gsm8k", "gsm8k_responses_even.csv")
# A replay answers from a file: there is no request that a server could refuse or fail.
NO_REQUEST = {f"error_{fault}": "a replay reads a recording and sends no request: nothing to refuse or fail" for fault in FAULTS}


class MathSolution(BaseModel):
    solution: str
    final_answer: str


def _question_prompt(question: str) -> tuple[BaseMessage, ...]:
    return (SystemMessage("Solve the math word problem."), HumanMessage(f"Problem:\n<<<\n{question}\n>>>"))


def _first_recorded_row() -> dict[str, str]:
    with dataset_file(*GSM8K).open(encoding="utf-8", newline="") as handle:
        return next(csv.DictReader(handle))


def replay_csv_harness() -> ProviderHarness:
    row = _first_recorded_row()
    probe = _question_prompt(row["prompt"])
    table = {
        "name": "replay", "provider": "replay", "model": MIXTRAL, **PRICES,
        "options": {"recording": "/".join(GSM8K), "model": MIXTRAL, "final_number": PARSER},
    }

    def recorded_answer(usage: Usage, reply: ModelReply) -> None:
        assert reply.value == row[f"{MIXTRAL}_response"], "the reply is the recorded response of the question asked"

    prompts = ContractPrompts(schema=MathSolution, structured=probe, text=probe)
    return ProviderHarness(
        name="replay", tier=table, prompts=prompts, reports_tokens=False, check_usage=recorded_answer, not_applicable=NO_REQUEST
    )


def replay_recorded_harness(folder: Path) -> ProviderHarness:
    """Recorded outcomes (JSONL) of the same questions; the first case's Mixtral outcome
    carries the token counts and confidence a log of real traffic holds."""
    cases = convert_routellm_gsm8k(dataset_file(*GSM8K))[:3]
    first = cases[0]
    logged = first.outcomes[MIXTRAL].model_copy(update={"input_tokens": 212, "output_tokens": 96, "confidence": 0.82})
    cases[0] = first.model_copy(update={"outcomes": {**first.outcomes, MIXTRAL: logged}})
    path = folder / "gsm8k_recorded.jsonl"
    write_recorded(path, cases)
    probe = _question_prompt(first.input)
    table = {
        "name": "recorded", "provider": "replay", "model": MIXTRAL, **PRICES,
        "options": {"recording": str(path), "model": MIXTRAL, "final_number": PARSER},
    }

    def recorded_usage(usage: Usage, reply: ModelReply) -> None:
        assert (usage.input_tokens, usage.output_tokens, usage.confidence) == (212, 96, 0.82), usage
        assert reply.message.response_metadata["replay_case"] == first.id
        assert reply.value == logged.answer

    prompts = ContractPrompts(schema=MathSolution, structured=probe, text=probe)
    return ProviderHarness(
        name="replay-recorded", tier=table, prompts=prompts, reports_tokens=True, check_usage=recorded_usage, not_applicable=NO_REQUEST
    )


# -- the suite ------------------------------------------------------------------------------------

HARNESSES = ("scripted", "replay", "replay-recorded", "embedded", "openai", "ollama")


@pytest.fixture(scope="module")
def harnesses() -> dict[str, ProviderHarness]:
    """Each harness once per module: its registry (and model) is built on first use."""
    return {}


@pytest.fixture
def harness(request: pytest.FixtureRequest, harnesses: dict[str, ProviderHarness], tmp_path_factory: pytest.TempPathFactory) -> ProviderHarness:
    name: str = request.param
    if name not in harnesses:
        builders: dict[str, Callable[[], ProviderHarness]] = {
            "scripted": scripted_harness,
            "embedded": embedded_harness,
            "replay": replay_csv_harness,
            "replay-recorded": lambda: replay_recorded_harness(tmp_path_factory.mktemp("recorded")),
            # Servers start when their harness is first asked for, so a -k selection starts only its own.
            "openai": lambda: openai_harness(request.getfixturevalue("llama_cpp_server")),
            "ollama": lambda: ollama_harness(request.getfixturevalue("ollama_server"), request.getfixturevalue("ollama_model")),
        }
        harnesses[name] = builders[name]()
    return harnesses[name]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("harness", HARNESSES, indirect=True)
def test_provider_contract(harness: ProviderHarness, case: ContractCase) -> None:
    reason = case.skip_reason(harness)
    if reason is not None:
        pytest.skip(reason)
    case.check(harness)


def test_every_built_in_provider_has_a_harness() -> None:
    from tierflow.model_tiers.providers.builtin import BUILTIN_PROVIDERS

    covered = {"scripted", "embedded", "openai", "ollama", "replay"}
    assert set(BUILTIN_PROVIDERS) == covered, "a new built-in provider needs a harness here"
